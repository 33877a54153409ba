//! OCSP against a real responder (`openssl ocsp -index … -port …`) signing for the bus's
//! development CA: revocation refuses a member and closes its connections, a responder outage
//! is ridden out on cached answers, and `require` refuses whoever has no answer, saying why.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::raw::RawConn;
use common::*;
use reqwest::Method;

/// A real OCSP responder for the development CA in `certs`, on a port of its own.
struct Responder {
    certs: PathBuf,
    port: u16,
    child: Option<Child>,
    generation: u64,
}

impl Responder {
    fn new(certs: PathBuf, port: u16) -> Responder {
        Responder {
            certs,
            port,
            child: None,
            generation: 0,
        }
    }

    fn url(port: u16) -> String {
        format!("http://127.0.0.1:{port}")
    }

    /// The CA database `openssl ocsp` reads: every member certificate, good unless its
    /// member is in `revoked`, and left out (so "unknown") if it is in `unknown`.
    fn write_index(&mut self, revoked: &[&str], unknown: &[&str]) {
        let mut index = String::new();
        for f in std::fs::read_dir(self.certs.join("members")).unwrap() {
            let path = f.unwrap().path();
            if path.extension().is_none_or(|e| e != "pem") {
                continue;
            }
            let der = bus::tls::load_certs(&path).unwrap().remove(0);
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            // OpenSSL's BN_bn2hex: upper case, no leading zero bytes.
            let serial: String = cert
                .raw_serial()
                .iter()
                .skip_while(|b| **b == 0)
                .map(|b| format!("{b:02X}"))
                .collect();
            let member = bus::identity::member_from_cert("simpul.dev", &der).unwrap();
            if unknown.contains(&member.as_str()) {
                continue;
            }
            let status = if revoked.contains(&member.as_str()) {
                "R\t301231000000Z\t261101000000Z"
            } else {
                "V\t301231000000Z\t"
            };
            index.push_str(&format!("{status}\t{serial}\tunknown\t/CN={serial}\n"));
        }
        // `openssl ocsp` re-reads its index when the file's mtime changes, to the second:
        // each rewrite gets a later one, so the change is seen whatever the clock says.
        self.generation += 1;
        let path = self.certs.join("ocsp-index.txt");
        std::fs::write(&path, index).unwrap();
        let mtime = std::time::SystemTime::now() + Duration::from_secs(10 * self.generation);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }

    /// Starts and waits until it takes connections.
    async fn start(&mut self) {
        let c = |f: &str| self.certs.join(f);
        let child = Command::new("openssl")
            .arg("ocsp")
            .arg("-index")
            .arg(c("ocsp-index.txt"))
            .args(["-port", &self.port.to_string()])
            .arg("-rsigner")
            .arg(c("ca.pem"))
            .arg("-rkey")
            .arg(c("ca.key"))
            .arg("-CA")
            .arg(c("ca.pem"))
            .args(["-nmin", "10"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(c("ocsp.log")).unwrap())
            .spawn()
            .expect("openssl ocsp");
        self.child = Some(child);
        // It says so once it listens. (A bare TCP probe would wedge it: OpenSSL 3.0's
        // responder waits for ever on a connection that closes without a request.)
        let log = c("ocsp.log");
        let up = wait_until(Duration::from_secs(10), || {
            let log = log.clone();
            async move {
                std::fs::read_to_string(log)
                    .is_ok_and(|l| l.contains("waiting for OCSP client connections"))
            }
        })
        .await;
        let port = self.port;
        let log = std::fs::read_to_string(c("ocsp.log")).unwrap_or_default();
        assert!(up, "the OCSP responder did not start on port {port}: {log}");
    }

    /// An outage: the responder stops answering (SIGSTOP), so asks time out, until
    /// [`Responder::resume`]. (Killing it would not do: it cannot bind its port again while
    /// the connections it closed are in TIME_WAIT.)
    fn pause(&self, on: bool) {
        let pid = self.child.as_ref().expect("a running responder").id();
        let sig = if on { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A bus whose registry sets `[trust]` to `trust`; the registry lives in `dir`.
fn bus_with_trust(dir: &Path, trust: &str) -> Bus {
    let text = std::fs::read_to_string(repo().join("registry.toml")).unwrap();
    let text = text.replacen(
        "schemas_dir = \"schemas\"\n",
        &format!(
            "schemas_dir = {:?}\n[trust]\n{trust}\n",
            repo().join("schemas")
        ),
        1,
    );
    let reg = dir.join("registry.toml");
    std::fs::write(&reg, text).unwrap();
    Bus::start_with_registry(&reg, &[])
}

/// A bus asking a responder (not started yet) every second under `policy`.
fn bus_and_responder(dir: &Path, policy: &str) -> (Bus, Responder) {
    let port = free_port();
    let trust = format!(
        "ocsp = {policy:?}\nocsp_responder = {:?}\nocsp_refresh = 1",
        Responder::url(port)
    );
    let bus = bus_with_trust(dir, &trust);
    let mut responder = Responder::new(bus.certs(), port);
    responder.write_index(&[], &[]);
    (bus, responder)
}

async fn healthz(bus: &Bus, member: &str) -> Option<bus::client::Answer> {
    // A new client each time: a new connection, so a new admission.
    bus.client(member)
        .request(Method::GET, "/healthz", None, None)
        .await
        .ok()
}

async fn readyz_text(bus: &Bus, member: &str) -> String {
    bus.get_text(member, "/readyz").await.1
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_revoked_at_the_responder_is_refused_and_its_connections_close() {
    let dir = tempfile::tempdir().unwrap();
    // `prefer`, the default: revoked is refused even where no answer would be let in.
    let (bus, mut responder) = bus_and_responder(dir.path(), "prefer");
    responder.start().await;
    let mut open = RawConn::open(&bus, PORTAL).await;
    assert!(
        open.get("/healthz").await.is_some(),
        "a good member refused"
    );
    assert_status(&healthz(&bus, DUKCAPIL).await.unwrap(), 200);

    responder.write_index(&[PORTAL], &[]);
    assert!(
        open.closed_within(Duration::from_secs(5)).await,
        "the revoked member's open connection was not closed"
    );
    assert!(
        healthz(&bus, PORTAL).await.is_none(),
        "a revoked member completed a new handshake"
    );
    assert_status(&healthz(&bus, DUKCAPIL).await.unwrap(), 200);
    assert!(bus.wait_for_log("OCSP: certificate revoked").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_responder_down_cached_answers_admit_and_require_refuses_the_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, mut responder) = bus_and_responder(dir.path(), "require");
    responder.start().await;
    assert_status(&healthz(&bus, PORTAL).await.unwrap(), 200);

    responder.pause(true);
    let noticed = wait_until(Duration::from_secs(15), || async {
        readyz_text(&bus, PORTAL).await.contains("OCSP responder")
    })
    .await;
    assert!(noticed, "/readyz does not report the responder outage");
    let ready = readyz_text(&bus, PORTAL).await;
    assert!(ready.starts_with("ready; degraded"), "{ready}");
    assert!(ready.contains("cached answers admit until"), "{ready}");
    // The cached good answer still admits new connections while the responder is down.
    assert_status(&healthz(&bus, PORTAL).await.unwrap(), 200);

    // A member with no answer at all is refused under `require`, with the reason.
    let refused = healthz(&bus, DUKCAPIL).await.unwrap();
    assert_status(&refused, 503);
    assert_eq!(refused.problem(), Some("certificate-status-unknown"));
    assert!(refused.retry_after.is_some());
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("GOV/dukcapil") && detail.contains("require"),
        "{detail}"
    );

    responder.pause(false);
    // The background refresh asks again every few seconds while it fails.
    let back = wait_until(Duration::from_secs(20), || async {
        healthz(&bus, DUKCAPIL)
            .await
            .is_some_and(|a| a.status == 200)
    })
    .await;
    assert!(
        back,
        "the member was not admitted once the responder answered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn require_without_any_responder_refuses_and_says_what_to_configure() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_with_trust(dir.path(), "ocsp = \"require\"");
    let a = healthz(&bus, PORTAL).await.unwrap();
    assert_status(&a, 503);
    assert_eq!(a.problem(), Some("certificate-status-unknown"));
    let detail = a.body["detail"].as_str().unwrap();
    assert!(detail.contains("ocsp_responder"), "{detail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_certificate_is_refused_under_require_and_admitted_under_prefer() {
    for (policy, code) in [("require", 503), ("prefer", 200)] {
        let dir = tempfile::tempdir().unwrap();
        let (mut bus, mut responder) = bus_and_responder(dir.path(), policy);
        // An index without the portal: the responder answers "unknown" for it.
        responder.write_index(&[], &[PORTAL]);
        responder.start().await;
        let a = healthz(&bus, PORTAL).await.unwrap();
        assert_status(&a, code);
        let said = bus.wait_for_log("does not know this certificate").await;
        assert!(said, "{policy}: {}", bus.logs());
    }
}
