//! Real handshakes on 127.0.0.1 with certificates from the development CA; nothing mocked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::*;
use crate::identity::Peer;
use crate::pki::{self, DevCa, Validity};

const INSTANCE: &str = "simpul.test";

fn id(s: &str) -> MemberId {
    MemberId::parse(s).unwrap()
}

fn valid() -> MemberId {
    id("GOV/dukcapil")
}
fn revokable() -> MemberId {
    id("GOV/dpmptsp/sipanse")
}
fn expired() -> MemberId {
    id("COM/8120000123456")
}
/// Holds a valid certificate from our CA but is not in the (pretend) registry.
fn stranger() -> MemberId {
    id("ORG/stranger")
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    other_dir: PathBuf,
    ca: DevCa,
    addr: SocketAddr,
}

impl Fixture {
    async fn start(handshake_timeout: Duration, max_connections: usize) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let ca = DevCa::init(&dir, INSTANCE, &[valid(), revokable(), stranger()], false).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let past = Validity {
            not_before: now - time::Duration::days(10),
            not_after: now - time::Duration::days(1),
        };
        ca.issue(INSTANCE, &expired(), past).unwrap();
        let other_dir = tmp.path().join("other");
        DevCa::init(&other_dir, INSTANCE, &[valid()], false).unwrap();

        let settings = TlsSettings {
            ca_files: vec![dir.join(pki::CA_CERT)],
            crl_files: vec![dir.join(pki::CRL)],
            cert_file: dir.join(pki::SERVER_CERT),
            key_file: dir.join(pki::SERVER_KEY),
            instance: INSTANCE.into(),
            handshake_timeout,
            max_connections,
            crl_grace: std::time::Duration::ZERO,
            ocsp: Default::default(),
        };
        let cfg = server_config(&settings, Arc::new(|m: &MemberId| *m != stranger())).unwrap();
        let listener = TlsListener::bind("127.0.0.1:0".parse().unwrap(), &cfg, &settings)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/whoami",
            get(|peer: Peer| async move { peer.member.to_string() }),
        );
        tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
                .await
                .unwrap();
        });
        Fixture {
            _tmp: tmp,
            dir,
            other_dir,
            ca,
            addr,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/whoami", self.addr.port())
    }

    fn client_cfg(&self, dir: &Path, m: &MemberId) -> rustls::ClientConfig {
        let p = pki::member_paths(dir, m);
        client_config(&self.dir.join(pki::CA_CERT), &p.cert, &p.key).unwrap()
    }

    /// GET /whoami on a fresh connection; `Ok((status, version, body))` or the error text.
    async fn whoami(
        &self,
        mut cfg: rustls::ClientConfig,
        alpn: &[u8],
    ) -> Result<(u16, reqwest::Version, String), String> {
        cfg.alpn_protocols = vec![alpn.to_vec()];
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(cfg)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let resp = client
            .get(self.url())
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (status, version) = (resp.status().as_u16(), resp.version());
        let body = resp.text().await.map_err(|e| format!("{e:?}"))?;
        Ok((status, version, body))
    }
}

fn no_client_cert(dir: &Path) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(&dir.join(pki::CA_CERT)).unwrap() {
        roots.add(c).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[tokio::test]
async fn a_valid_member_is_identified_over_http1_and_h2() {
    let f = Fixture::start(Duration::from_secs(5), 64).await;
    let r = f
        .whoami(f.client_cfg(&f.dir, &valid()), b"http/1.1")
        .await
        .unwrap();
    assert_eq!(r, (200, reqwest::Version::HTTP_11, "GOV/dukcapil".into()));
    let r = f
        .whoami(f.client_cfg(&f.dir, &revokable()), b"h2")
        .await
        .unwrap();
    assert_eq!(
        r,
        (200, reqwest::Version::HTTP_2, "GOV/dpmptsp/sipanse".into())
    );
}

#[tokio::test]
async fn the_handshake_refuses_everyone_else() {
    let f = Fixture::start(Duration::from_secs(5), 64).await;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let cases = [
            ("no client certificate", no_client_cert(&f.dir)),
            ("another CA", f.client_cfg(&f.other_dir, &valid())),
            ("expired", f.client_cfg(&f.dir, &expired())),
            ("not a member", f.client_cfg(&f.dir, &stranger())),
        ];
        for (what, cfg) in cases {
            let r = f.whoami(cfg, alpn).await;
            assert!(
                r.is_err(),
                "{what} over {:?} got {r:?}",
                String::from_utf8_lossy(alpn)
            );
        }
    }
    // The server still works for a member after all those refusals.
    assert!(
        f.whoami(f.client_cfg(&f.dir, &valid()), b"h2")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn revocation_takes_effect_without_a_restart() {
    let f = Fixture::start(Duration::from_secs(5), 64).await;
    let cfg = || f.client_cfg(&f.dir, &revokable());
    assert!(f.whoami(cfg(), b"h2").await.is_ok());
    f.ca.revoke(&revokable()).unwrap();
    // The CRL is re-checked about once a second: poll until refused, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f.whoami(cfg(), b"h2").await {
            Err(_) => break,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Ok(r) => panic!("still accepted 10 s after revocation: {r:?}"),
        }
    }
    assert!(f.whoami(cfg(), b"http/1.1").await.is_err());
    // Other members are unaffected.
    assert!(
        f.whoami(f.client_cfg(&f.dir, &valid()), b"h2")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_silent_client_neither_blocks_others_nor_stays_forever() {
    let timeout = Duration::from_millis(1500);
    let f = Fixture::start(timeout, 64).await;
    let mut idle = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    let started = Instant::now();
    let r = f
        .whoami(f.client_cfg(&f.dir, &valid()), b"h2")
        .await
        .unwrap();
    assert_eq!(r.0, 200);
    assert!(
        started.elapsed() < timeout,
        "served only after {:?}",
        started.elapsed()
    );
    // The server closes the idle socket once the handshake timeout passes.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .expect("idle connection was never dropped");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(started.elapsed() >= timeout.mul_f32(0.9));
}

#[tokio::test]
async fn a_closed_connection_frees_its_slot() {
    let f = Fixture::start(Duration::from_secs(5), 1).await;
    // Each `whoami` builds and drops its own client, closing the connection.
    for _ in 0..3 {
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            f.whoami(f.client_cfg(&f.dir, &valid()), b"h2"),
        )
        .await
        .expect("the single connection slot was never released");
        assert_eq!(r.unwrap().0, 200);
    }
}

async fn tool(name: &str) -> bool {
    let ok = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok()
        || Command::new(name).arg("version").output().await.is_ok();
    if !ok {
        eprintln!("{name} not installed; skipping");
    }
    ok
}

async fn s_client(f: &Fixture, args: &[&str], m: &MemberId) -> (bool, String) {
    let p = pki::member_paths(&f.dir, m);
    let out = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(f.addr.to_string())
        .arg("-CAfile")
        .arg(f.dir.join(pki::CA_CERT))
        .arg("-cert")
        .arg(&p.cert)
        .arg("-key")
        .arg(&p.key)
        .arg("-verify_return_error")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_offered() {
    let f = Fixture::start(Duration::from_secs(5), 64).await;
    if !tool("openssl").await {
        return;
    }
    let (ok, out) = s_client(&f, &["-tls1_3", "-brief"], &valid()).await;
    assert!(ok && out.contains("TLSv1.3"), "{out}");
    let (ok, out) = s_client(&f, &["-tls1_2", "-brief"], &valid()).await;
    assert!(ok && out.contains("TLSv1.2"), "{out}");
    // SECLEVEL=0 so the refusal is the server's, not the local openssl policy's.
    let (ok, out) = s_client(
        &f,
        &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-brief"],
        &valid(),
    )
    .await;
    assert!(!ok && !out.contains("Protocol version: TLSv1.1"), "{out}");
}

#[tokio::test]
async fn curl_works_with_the_pem_files_as_written() {
    let f = Fixture::start(Duration::from_secs(5), 64).await;
    if !tool("curl").await {
        return;
    }
    let curl = |m: MemberId, extra: &'static [&'static str]| {
        let p = pki::member_paths(&f.dir, &m);
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "10", "--cacert"])
            .arg(f.dir.join(pki::CA_CERT))
            .arg("--cert")
            .arg(&p.cert)
            .arg("--key")
            .arg(&p.key)
            .args(extra)
            .arg(f.url());
        c
    };
    for extra in [&["--http1.1"][..], &["--http2"][..]] {
        let out = curl(valid(), extra).output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "GOV/dukcapil");
    }
    // Also by name: the server certificate covers `localhost`.
    let p = pki::member_paths(&f.dir, &valid());
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(f.dir.join(pki::CA_CERT))
        .arg("--cert")
        .arg(&p.cert)
        .arg("--key")
        .arg(&p.key)
        .arg(format!("https://localhost:{}/whoami", f.addr.port()))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = curl(stranger(), &[]).output().await.unwrap();
    assert!(
        !out.status.success(),
        "a non-member got {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
