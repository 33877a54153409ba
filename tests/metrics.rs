//! `/metrics`: after a known scenario every counter holds the right value, the queue gauges
//! say what is waiting, no label holds a personal identifier, only operators may read it over
//! mTLS, and the plain listener is loopback only.

mod common;

use common::*;
use reqwest::Method;

const OPERATOR: &str = "GOV/diskominfo";
const DPMPTSP: &str = "GOV/dpmptsp";

/// The value of the series `name` whose labels include every `labels` pair.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (series, v) = rest.rsplit_once(' ')?;
        if !(series.is_empty() || series.starts_with('{')) {
            return None; // a longer name with this one as its prefix
        }
        let all = labels
            .iter()
            .all(|(k, val)| series.contains(&format!("{k}=\"{val}\"")));
        all.then(|| v.parse().ok()).flatten()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_known_scenario_shows_in_every_metric() {
    let bus = Bus::start(&["--metrics-listen", "127.0.0.1:0"]);
    let dukcapil = bus.client(DUKCAPIL);
    for _ in 0..3 {
        assert_status(&dukcapil.send(&death(NIK)).await.unwrap(), 202);
    }
    // One refused by its schema.
    let mut bad = death(NIK);
    bad["data"]["tanggal_meninggal"] = "kemarin".into();
    assert_status(&dukcapil.send(&bad).await.unwrap(), 422);
    // HR leases the three, acks two and nacks one; DPMPTSP leaves its copies waiting.
    let hr = bus.client(HR);
    let ids = leased_ids(&pull_now(&hr).await);
    assert_eq!(ids.len(), 3);
    assert_status(&hr.ack(ids[0]).await.unwrap(), 200);
    assert_status(&hr.ack(ids[1]).await.unwrap(), 200);
    assert_status(&hr.nack(ids[2], "tidak dikenal").await.unwrap(), 200);
    // One query, answered.
    let asked = send_in_background(&bus.client(PORTAL), &verify_request());
    provide_once(dukcapil.clone(), verify_response()).await;
    assert_status(&asked.await.unwrap(), 200);
    // A handshake with a certificate from a CA the bus does not trust.
    let foreign = tempfile::tempdir().unwrap();
    let stranger = bus::identity::MemberId::parse(PORTAL).unwrap();
    bus::pki::DevCa::init(
        foreign.path(),
        "simpul.dev",
        std::slice::from_ref(&stranger),
        false,
    )
    .unwrap();
    let paths = bus::pki::member_paths(foreign.path(), &stranger);
    let refused = bus
        .client_with(&paths)
        .request(Method::GET, "/healthz", None, None)
        .await;
    assert!(refused.is_err());

    let (code, text) = bus.get_text(OPERATOR, "/metrics").await;
    assert_eq!(code, 200, "{text}");
    let death_type = ("type", "siak.penduduk.meninggal");
    let from = ("sender", DUKCAPIL);
    let at = |name, labels: &[(&str, &str)]| value(&text, name, labels);
    assert_eq!(
        at("simpul_messages_accepted_total", &[death_type, from]),
        Some(3.0)
    );
    assert_eq!(
        at(
            "simpul_messages_rejected_total",
            &[death_type, from, ("problem", "schema-validation")]
        ),
        Some(1.0)
    );
    assert_eq!(at("simpul_accept_seconds_count", &[]), Some(3.0));
    let hr_ = ("recipient", HR);
    assert_eq!(at("simpul_leases_total", &[hr_]), Some(3.0));
    assert_eq!(at("simpul_acks_total", &[hr_]), Some(2.0));
    assert_eq!(at("simpul_nacks_total", &[hr_]), Some(1.0));
    assert_eq!(
        at("simpul_dead_letters_total", &[hr_, ("reason", "nacked")]),
        Some(1.0)
    );
    assert_eq!(at("simpul_queue_depth", &[hr_]), Some(0.0));
    assert_eq!(
        at("simpul_queue_depth", &[("recipient", DPMPTSP)]),
        Some(3.0)
    );
    assert!(at("simpul_queue_oldest_seconds", &[("recipient", DPMPTSP)]).is_some());
    let verify = ("type", "siak.penduduk.verify");
    assert_eq!(
        at("simpul_queries_total", &[verify, ("outcome", "answered")]),
        Some(1.0)
    );
    assert_eq!(at("simpul_query_seconds_count", &[verify]), Some(1.0));
    if bus.store.is_none() {
        // The embedded store's group commits (PostgreSQL commits its own).
        assert!(at("simpul_store_commit_seconds_count", &[]).is_some_and(|n| n >= 5.0));
        assert!(at("simpul_store_group_commit_size_count", &[]).is_some_and(|n| n >= 5.0));
    }
    assert!(
        at(
            "simpul_tls_handshake_failures_total",
            &[("reason", "unknown_issuer")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // This scrape's own connection is open.
    assert!(at("simpul_open_connections", &[]).is_some_and(|n| n >= 1.0));
    let days = at(
        "simpul_member_certificate_expiry_days",
        &[("member", OPERATOR)],
    )
    .unwrap();
    assert!((360.0..366.0).contains(&days), "{days}");
    // No label or value names a person.
    assert!(!text.contains(NIK) && !text.contains(NIK2), "{text}");

    // The same text on the plain loopback listener, for a local Prometheus.
    assert!(bus.wait_for_log("metrics on plain HTTP").await);
    let addr = bus
        .logged()
        .lines()
        .find(|l| l.contains("metrics on plain HTTP"))
        .and_then(|l| l.split("addr=").nth(1))
        .map(|a| a.split_whitespace().next().unwrap().to_owned())
        .unwrap();
    let plain = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(plain.status().as_u16(), 200);
    let plain = plain.text().await.unwrap();
    assert!(plain.contains("simpul_messages_accepted_total"), "{plain}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_operators_read_metrics() {
    let bus = Bus::start(&[]);
    let c = bus.client(PORTAL);
    let a = c
        .request(Method::GET, "/metrics", None, None)
        .await
        .unwrap();
    assert_status(&a, 403);
    assert_eq!(a.problem(), Some("forbidden"));
    assert_eq!(bus.get_text(OPERATOR, "/metrics").await.0, 200);
}

#[test]
fn the_plain_metrics_listener_is_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin())
        .current_dir(repo())
        .env_remove("SIMPUL_STORE")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "0.0.0.0:0",
        ])
        .arg("--certs")
        .arg(dir.path().join("certs"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
}
