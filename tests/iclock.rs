//! e-absen's ZKTeco push endpoint, driven with the requests a terminal sends (ADMS "iclock"
//! protocol): handshake, ATTLOG upload, command poll, command result. Punches reach the
//! attendance feed exactly once, across a device's retries and an adapter restart; unknown
//! devices are refused; unreadable lines are set aside and counted.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use adapters::eabsen::iclock::{self, Devices};
use adapters::eabsen::simulator::PEGAWAI;
use adapters::eabsen::{EabsenAdapter, EabsenConfig};
use adapters::link::Link;
use adapters::trace::Trace;
use common::*;
use tokio::sync::watch;

const SN: &str = "CKJD201960001";

/// Three punches as a terminal uploads them (PIN, time, status, verify, workcode and two
/// reserved fields), and one line a damaged terminal might send.
const ATTLOG: &str = "1\t2026-12-07 07:01:02\t0\t1\t0\t0\t0\n\
                      2\t2026-12-07 07:15:40\t0\t15\t0\t0\t0\n\
                      23\t2026-12-07 07:31:00\t0\t1\t0\t0\t0\n\
                      105\t2026-13-07 07:31:00\t0\t1\t0\t0\t0\n";

/// The adapter and its LAN endpoint on a free port; stops when dropped.
struct Terminal {
    adapter: Arc<EabsenAdapter>,
    base: String,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Terminal {
    async fn start(bus: &Bus, outbox: &Path) -> Terminal {
        let link = Link::open(&bus.base, &bus.certs(), EABSEN, outbox, Trace::quiet()).unwrap();
        let adapter = Arc::new(EabsenAdapter::new(EabsenConfig::default(), link).unwrap());
        for (pin, nip, unit, _) in PEGAWAI {
            adapter.set_pegawai(pin, nip, unit).unwrap();
        }
        let devices = Devices::from([(SN.to_owned(), "DISKOMINFO".to_owned())]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = watch::channel(false);
        let app = iclock::router(adapter.clone(), devices);
        let tasks = vec![
            tokio::spawn(adapters::deploy::until(listener, app, rx.clone())),
            tokio::spawn(adapters::runner::run(adapter.clone(), rx)),
        ];
        Terminal {
            adapter,
            base,
            stop,
            tasks,
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        for t in self.tasks {
            t.await.unwrap();
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str, body: &str) -> (u16, String) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("content-type", "text/plain")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// The attendance events HR can read from the feed.
async fn feed(bus: &Bus) -> Vec<serde_json::Value> {
    let (status, text) = bus
        .get_text(HR, "/v1/feeds/eabsen.kehadiran.tercatat?after=0&limit=1000")
        .await;
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["events"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn punches_pushed_by_a_terminal_reach_the_feed_once() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("eabsen.db");
    let t = Terminal::start(&bus, &outbox).await;

    // The handshake, before any upload: start from the beginning.
    let path = format!("/iclock/cdata?SN={SN}&options=all&pushver=2.4.1&language=69");
    let (status, options) = t.get(&path).await;
    assert_eq!(status, 200);
    assert!(
        options.starts_with(&format!("GET OPTION FROM: {SN}\r\n")),
        "{options}"
    );
    assert!(options.contains("ATTLOGStamp=None\r\n") && options.contains("TimeZone=7\r\n"));

    let upload = format!("/iclock/cdata?SN={SN}&table=ATTLOG&Stamp=9999");
    assert_eq!(t.post(&upload, ATTLOG).await, (200, "OK: 4".to_owned()));
    assert!(
        wait_until(Duration::from_secs(20), || async {
            feed(&bus).await.len() == 3
        })
        .await,
        "the punches did not reach the feed"
    );
    // The unreadable line is set aside with why, and counted.
    let set_aside = t.adapter.link.outbox.rejected().unwrap();
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    assert!(set_aside[0].1.contains("time"), "{set_aside:?}");
    assert_eq!(t.adapter.link.outbox.health().unwrap().rejected, 1);

    // The answer was lost: the terminal sends the same lines again. The next handshake
    // resumes after the stamp.
    assert_eq!(t.post(&upload, ATTLOG).await, (200, "OK: 4".to_owned()));
    assert!(t.get(&path).await.1.contains("ATTLOGStamp=9999\r\n"));
    assert_eq!(
        t.get(&format!("/iclock/getrequest?SN={SN}")).await,
        (200, "OK".into())
    );
    let result = "ID=1&Return=0&CMD=INFO";
    let cmd = format!("/iclock/devicecmd?SN={SN}");
    assert_eq!(t.post(&cmd, result).await, (200, "OK".into()));
    t.stop().await;

    // The adapter restarts on its outbox; the terminal sends everything once more.
    let t = Terminal::start(&bus, &outbox).await;
    assert_eq!(t.post(&upload, ATTLOG).await, (200, "OK: 4".to_owned()));
    let adapter = t.adapter.clone();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            adapter.link.outbox.health().unwrap().backlog == 0
        })
        .await
    );
    let events = feed(&bus).await;
    assert_eq!(events.len(), 3, "a punch arrived twice: {events:?}");
    let nips: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["data"]["nip"].as_str().unwrap())
        .collect();
    assert_eq!(nips, [PEGAWAI[0].1, PEGAWAI[1].1, PEGAWAI[2].1]);
    assert_eq!(
        events[0]["event"]["data"]["waktu"],
        "2026-12-07T07:01:02+07:00"
    );
    assert_eq!(events[0]["event"]["data"]["perangkat"], SN);

    // A terminal nobody admitted.
    let (status, why) = t
        .post("/iclock/cdata?SN=UNKNOWN1&table=ATTLOG&Stamp=1", ATTLOG)
        .await;
    assert_eq!(status, 403);
    assert!(why.contains("\"UNKNOWN1\" is not admitted"), "{why}");
    t.stop().await;
    assert_eq!(feed(&bus).await.len(), 3);
}
