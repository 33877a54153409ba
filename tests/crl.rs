//! Revocation fails closed: a missing CRL stops the start, a stale one stops new handshakes
//! and makes the bus unready, with the reason, until it is refreshed.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;

#[test]
fn a_missing_development_crl_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let init = std::process::Command::new(bin())
        .current_dir(repo())
        .args(["certs", "init", "--dir"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(init.status.success());
    std::fs::remove_file(certs.join("crl.pem")).unwrap();
    let out = std::process::Command::new(bin())
        .current_dir(repo())
        .env_remove("SIMPUL_STORE") // the embedded store, whatever the pass
        .args(["serve", "--listen", "127.0.0.1:0", "--certs"])
        .arg(&certs)
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "the bus started without its CRL");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("crl.pem"), "{err}");
}

async fn readyz(c: &bus::client::Client) -> Option<bus::client::Answer> {
    c.request(Method::GET, "/readyz", None, None).await.ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_crl_refuses_new_handshakes_and_makes_the_bus_unready() {
    let bus = Bus::start(&[]);
    let open = bus.client(DUKCAPIL);
    assert_status(&readyz(&open).await.unwrap(), 200);
    let refresh = |hours: &str| bus.certs_command(&["crl-refresh", "--hours", hours]);
    // The CRL's nextUpdate is now: from here on it is stale.
    refresh("0");
    let unready = wait_until(Duration::from_secs(10), || async {
        readyz(&open).await.is_some_and(|a| a.status == 503)
    })
    .await;
    assert!(unready, "a stale CRL left the bus ready");
    let a = readyz(&open).await.unwrap();
    assert_eq!(a.problem(), Some("not-ready"));
    assert!(
        a.body["detail"].as_str().unwrap().contains("CRL"),
        "{:#}",
        a.body
    );
    // New connections are refused: nobody is let in on a CRL that may be missing revocations.
    assert!(readyz(&bus.client(PORTAL)).await.is_none());
    assert!(bus.wait_for_log("nextUpdate").await);
    refresh("168");
    let ready = wait_until(Duration::from_secs(10), || async {
        readyz(&bus.client(PORTAL))
            .await
            .is_some_and(|a| a.status == 200)
    })
    .await;
    assert!(ready, "a refreshed CRL did not bring the bus back");
}
