//! Test harness: runs the real `simpul` binary with real certificates in a temp dir.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub mod amqp;
pub mod pg;
pub mod process;
pub mod raw;

use bus::client::{Answer, Client};
use bus::identity::MemberId;
use serde_json::{Value, json};
use uuid::Uuid;

pub const DUKCAPIL: &str = "GOV/dukcapil";
pub const DPMPTSP: &str = "GOV/dpmptsp";
pub const HR: &str = "GOV/bkpsdm/hr";
pub const EABSEN: &str = "GOV/bkpsdm/eabsen";
pub const PORTAL: &str = "GOV/portal";
pub const BIZ: &str = "COM/8120000123456";
pub const BIZ2: &str = "COM/9120000654321";

/// Valid sample NIKs (real district codes, real dates). Logs must never contain them.
pub const NIK: &str = "3204054501900003"; // Kab. Bandung, female, 05-01-1990
pub const NIK2: &str = "3273012208850001"; // Kota Bandung, male, 22-08-1985

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_simpul")
}

/// Waits for `cond` to hold, checking every 50 ms, for at most `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct Bus {
    pub dir: tempfile::TempDir,
    /// The PKI, shared by every node of one bus.
    certs: PathBuf,
    /// `--store`: the PostgreSQL schema of this bus on the PostgreSQL pass, else the
    /// embedded store in `data()`.
    pub store: Option<String>,
    pub base: String,
    pub registry: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    log_reader: Option<std::thread::JoinHandle<()>>,
    logs: Arc<Mutex<String>>,
    /// Directories that must live as long as the bus (its registry, say).
    keep: Vec<tempfile::TempDir>,
}

impl Bus {
    /// Starts a bus on the repo's example registry with a fresh PKI and data dir.
    pub fn start(extra: &[&str]) -> Bus {
        Bus::start_with_registry(&repo().join("registry.toml"), extra)
    }

    /// Starts a bus whose data dir first holds a copy of the files in `seed` (a store written
    /// by an earlier release, say).
    pub fn start_seeded(seed: &Path, extra: &[&str]) -> Bus {
        Bus::start_inner(&repo().join("registry.toml"), extra, Some(seed))
    }

    pub fn start_with_registry(registry: &Path, extra: &[&str]) -> Bus {
        Bus::start_inner(registry, extra, None)
    }

    /// Starts a bus on the embedded store whatever the pass: for tests of the embedded store
    /// itself (its file locks, its migrations).
    pub fn start_embedded(extra: &[&str]) -> Bus {
        let mut bus = Bus::unstarted(&repo().join("registry.toml"), extra, None);
        bus.spawn();
        bus
    }

    /// Starts a bus on a PostgreSQL schema of its own, whatever the pass.
    pub fn start_on_postgres(extra: &[&str]) -> Bus {
        Bus::start_on(pg::fresh_url("e2e"), extra)
    }

    /// Starts a bus on the store `url` names.
    pub fn start_on(url: String, extra: &[&str]) -> Bus {
        let mut bus = Bus::unstarted(&repo().join("registry.toml"), extra, None);
        bus.store = Some(url);
        bus.spawn();
        bus
    }

    /// Another node of the same bus: the same registry, PKI, flags and PostgreSQL store, its
    /// own process and port.
    pub fn another_node(&self) -> Bus {
        assert!(self.store.is_some(), "nodes share a PostgreSQL store");
        let mut node = Bus::unstarted(&self.registry, &[], None);
        node.args = self.args.clone();
        node.certs = self.certs.clone();
        node.store = self.store.clone();
        node.spawn();
        node
    }

    fn start_inner(registry: &Path, extra: &[&str], seed: Option<&Path>) -> Bus {
        let mut bus = Bus::unstarted(registry, extra, seed);
        if seed.is_none() && pg::end_to_end_on_postgres() {
            bus.store = Some(pg::fresh_url("e2e"));
        }
        bus.spawn();
        bus
    }

    /// Starts a bus on a PostgreSQL schema of its own with RabbitMQ (`broker`, in `vhost`) as
    /// the transport for `amqp_members`, and waits until it relays (it has synced the broker).
    /// Its PKI is a copy of the broker's, so the broker trusts its members; `extra` flags
    /// follow.
    pub async fn relaying(
        broker: &amqp::Broker,
        vhost: &str,
        amqp_members: &[&str],
        extra: &[&str],
    ) -> Bus {
        let mut bus = Bus::start_with_amqp(broker, vhost, amqp_members, extra);
        if !bus
            .wait_for_log_within("relays the outbox", Duration::from_secs(30))
            .await
        {
            panic!("the bus never started relaying: {}", bus.logs());
        }
        bus
    }

    fn start_with_amqp(
        broker: &amqp::Broker,
        vhost: &str,
        amqp_members: &[&str],
        extra: &[&str],
    ) -> Bus {
        let tmp = tempfile::tempdir().expect("tempdir");
        let registry = tmp.path().join("registry.toml");
        let mut text = std::fs::read_to_string(repo().join("registry.toml"))
            .unwrap()
            .replace(
                "schemas_dir = \"schemas\"",
                &format!("schemas_dir = {:?}", repo().join("schemas")),
            );
        for m in amqp_members {
            let line = format!("id = \"{m}\"\n");
            assert!(text.contains(&line), "{m} is not in registry.toml");
            text = text.replace(&line, &format!("{line}delivery = \"amqp\"\n"));
        }
        std::fs::write(&registry, text).unwrap();
        let mut bus = Bus::unstarted(&registry, extra, None);
        bus::pki::copy_authority(&broker.pki, &bus.certs).expect("copy the broker's PKI");
        bus.args.extend([
            "--amqp".to_owned(),
            format!("{}/{vhost}", broker.base),
            "--amqp-management".to_owned(),
            broker.management.clone(),
        ]);
        bus.store = Some(pg::fresh_url("amqp"));
        bus.keep.push(tmp);
        bus.spawn();
        bus
    }

    fn unstarted(registry: &Path, extra: &[&str], seed: Option<&Path>) -> Bus {
        let dir = tempfile::tempdir().expect("tempdir");
        let bus = Bus {
            certs: dir.path().join("certs"),
            store: None,
            dir,
            base: String::new(),
            registry: registry.to_owned(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            log_reader: None,
            logs: Arc::default(),
            keep: Vec::new(),
        };
        if let Some(seed) = seed {
            std::fs::create_dir_all(bus.data()).expect("data dir");
            for f in std::fs::read_dir(seed).expect("seed dir") {
                let f = f.expect("seed entry").path();
                std::fs::copy(&f, bus.data().join(f.file_name().unwrap())).expect("copy seed");
            }
        }
        bus
    }

    pub fn certs(&self) -> PathBuf {
        self.certs.clone()
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(bin());
        cmd.arg("serve");
        match &self.store {
            Some(url) => cmd.args(["--store", url]),
            None => cmd.env_remove("SIMPUL_STORE"),
        };
        // The transport only where a test asks for it, by flags.
        for v in ["SIMPUL_AMQP", "SIMPUL_AMQP_MANAGEMENT", "SIMPUL_AMQP_CRL"] {
            cmd.env_remove(v);
        }
        let mut child = cmd
            .arg("--registry")
            .arg(&self.registry)
            .arg("--certs")
            .arg(self.certs())
            .arg("--data")
            .arg(self.data())
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.args)
            .env("SIMPUL_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn simpul serve");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("simpul listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let logs = self.logs.clone();
        self.log_reader = Some(std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = logs.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        }));
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => self.base = addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                self.reap();
                panic!("bus did not start: {}", self.logs.lock().unwrap());
            }
        }
        self.child = Some(child);
    }

    fn reap(&mut self) {
        if let Some(h) = self.log_reader.take() {
            let _ = h.join();
        }
    }

    /// Sends `signal` (`HUP`, say) to the running bus.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running bus").id();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// SIGKILL: no shutdown, no flush. What was acknowledged must survive this.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.reap();
    }

    /// SIGTERM and wait for a clean exit; returns the exit status success.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let ok = c.wait().map(|s| s.success()).unwrap_or(false);
        self.reap();
        ok
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Everything the bus logged (stops the bus to collect it all).
    pub fn logs(&mut self) -> String {
        self.kill9();
        self.logs.lock().unwrap().clone()
    }

    /// What the running bus has logged so far.
    pub fn logged(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until the running bus has logged a line containing `text`.
    pub async fn wait_for_log(&self, text: &str) -> bool {
        self.wait_for_log_within(text, Duration::from_secs(10))
            .await
    }

    pub async fn wait_for_log_within(&self, text: &str, limit: Duration) -> bool {
        wait_until(limit, || async { self.logs.lock().unwrap().contains(text) }).await
    }

    pub fn client(&self, member: &str) -> Client {
        Client::for_member(&self.base, &self.certs(), &MemberId::parse(member).unwrap())
            .expect("client")
    }

    /// `GET path` as `member` on a new connection: the status and the body as text (for
    /// `/readyz` and `/metrics`, which are not JSON).
    pub async fn get_text(&self, member: &str, path: &str) -> (u16, String) {
        let c = self.client(member);
        let res = c.http().get(c.url(path)).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// A client presenting a certificate issued outside the dev PKI layout (expired, foreign…).
    pub fn client_with(&self, paths: &bus::pki::IssuedPaths) -> Client {
        Client::new(
            &self.base,
            &self.certs().join("ca.pem"),
            &paths.cert,
            &paths.key,
        )
        .expect("client")
    }

    /// Runs `simpul certs <args> --dir <this bus's certs>`, checks that it succeeded, and
    /// returns what it printed.
    pub fn certs_command(&self, args: &[&str]) -> std::process::Output {
        let out = self
            .simpul()
            .arg("certs")
            .args(args)
            .arg("--dir")
            .arg(self.certs())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `simpul certs export <member> --p12 <out>` with `password` (SIMPUL_P12_PASSWORD).
    pub fn export_p12(&self, member: &str, out: &Path, password: &str) -> std::process::Output {
        self.simpul()
            .args(["certs", "export", member, "--p12"])
            .arg(out)
            .arg("--dir")
            .arg(self.certs())
            .env("SIMPUL_P12_PASSWORD", password)
            .output()
            .unwrap()
    }

    pub fn simpul(&self) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(repo());
        c
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn event(type_: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": Uuid::now_v7().to_string(),
        "type": type_,
        "data": data,
    })
}

pub fn death(nik: &str) -> Value {
    event(
        "siak.penduduk.meninggal",
        json!({ "nik": nik, "nama": "SITI AMINAH", "tanggal_meninggal": "2026-11-20" }),
    )
}

pub fn permit() -> Value {
    event(
        "sipanse.izin.permohonan",
        json!({
            "nib": "8120000123456",
            "npwp": "013121660091000",
            "pemohon": { "nik": NIK2, "nama": "BUDI SANTOSO" },
            "jenis_izin": "Izin Usaha Mikro Kecil",
            "kbli": ["47111"],
            "kbli_versi": "2020",
            "lokasi": "3204"
        }),
    )
}

pub fn id_of(ev: &Value) -> Uuid {
    Uuid::parse_str(ev["id"].as_str().unwrap()).unwrap()
}

/// The ids of the messages in an inbox answer.
pub fn leased_ids(a: &Answer) -> Vec<Uuid> {
    a.body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|x| Uuid::parse_str(x["event"]["id"].as_str().unwrap()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[track_caller]
pub fn assert_status(a: &Answer, code: u16) {
    assert_eq!(a.status.as_u16(), code, "unexpected answer: {:#}", a.body);
}

/// Sends `ev` from `c` in the background (a query that waits for its provider, say).
pub fn send_in_background(c: &Client, ev: &Value) -> tokio::task::JoinHandle<Answer> {
    let (c, ev) = (c.clone(), ev.clone());
    tokio::spawn(async move { c.send(&ev).await.unwrap() })
}

/// Leases what is in `c`'s inbox right now: up to 10 messages, no waiting, a 30 s lease.
pub async fn pull_now(c: &Client) -> Answer {
    c.pull(10, Duration::ZERO, Duration::from_secs(30))
        .await
        .unwrap()
}

/// A `siak.penduduk.verify` query, to Dukcapil.
pub fn verify_request() -> Value {
    event(
        "siak.penduduk.verify",
        json!({ "nik": NIK2, "nama": "BUDI SANTOSO", "tanggal_lahir": "1985-08-22" }),
    )
}

pub fn verify_response() -> Value {
    json!({
        "status": "aktif",
        "hasil": {
            "nama": { "hasil": "sesuai", "skor": 0.97, "ambang": 0.85 },
            "tanggal_lahir": { "hasil": "sesuai" }
        },
        "diperiksa_pada": "2026-11-23T10:00:00Z"
    })
}

/// Plays the provider: takes one query from its inbox and replies with `reply`.
pub async fn provide_once(dukcapil: Client, reply: Value) -> Answer {
    let got = dukcapil
        .pull(1, Duration::from_secs(20), Duration::from_secs(30))
        .await
        .unwrap();
    let ids = leased_ids(&got);
    assert_eq!(ids.len(), 1, "provider got no query: {:#}", got.body);
    dukcapil.reply(ids[0], &reply).await.unwrap()
}

/// Leases everything in `c`'s inbox until it is empty: every id, in the order leased.
pub async fn pull_all(c: &Client) -> Vec<Uuid> {
    let mut all = Vec::new();
    loop {
        let got = c
            .pull(100, Duration::ZERO, Duration::from_secs(60))
            .await
            .unwrap();
        let ids = leased_ids(&got);
        if ids.is_empty() {
            return all;
        }
        all.extend(ids);
    }
}
