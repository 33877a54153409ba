//! Identity comes from the verified certificate only; the ACL decides the rest.

mod common;

use std::time::Duration;

use bus::client::Client;
use bus::identity::MemberId;
use bus::pki::{DevCa, Validity};
use common::*;
use serde_json::json;

/// True if a request with this client reaches the HTTP layer at all.
async fn reaches_http(c: &Client) -> bool {
    c.request(reqwest::Method::GET, "/v1/schemas", None, None)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_member_certificate_is_accepted() {
    let bus = Bus::start(&[]);
    let a = bus
        .client(PORTAL)
        .request(reqwest::Method::GET, "/v1/schemas", None, None)
        .await
        .unwrap();
    assert_status(&a, 200);
    assert!(a.body["schemas"].as_array().unwrap().len() >= 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_client_certificate_is_refused_at_the_handshake() {
    let bus = Bus::start(&[]);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(bus.certs().join("ca.pem")).unwrap())
        .unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let r = http.get(format!("{}/healthz", bus.base)).send().await;
    assert!(
        r.is_err(),
        "a connection without a client certificate must fail: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_another_ca_is_refused() {
    let bus = Bus::start(&[]);
    let other = tempfile::tempdir().unwrap();
    let portal = MemberId::parse(PORTAL).unwrap();
    DevCa::init(
        other.path(),
        "simpul.dev",
        std::slice::from_ref(&portal),
        false,
    )
    .unwrap();
    let stem = portal.file_stem();
    let c = Client::new(
        &bus.base,
        &bus.certs().join("ca.pem"),
        &other.path().join(format!("members/{stem}.pem")),
        &other.path().join(format!("members/{stem}.key")),
    )
    .unwrap();
    assert!(!reaches_http(&c).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_certificate_is_refused() {
    let bus = Bus::start(&[]);
    let ca = DevCa::load(&bus.certs()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let paths = ca
        .issue(
            "simpul.dev",
            &MemberId::parse(PORTAL).unwrap(),
            Validity {
                not_before: now - time::Duration::days(30),
                not_after: now - time::Duration::days(1),
            },
        )
        .unwrap();
    assert!(!reaches_http(&bus.client_with(&paths)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_for_a_non_member_is_refused() {
    let bus = Bus::start(&[]);
    let ca = DevCa::load(&bus.certs()).unwrap();
    let stranger = MemberId::parse("GOV/bukan-anggota").unwrap();
    let paths = ca
        .issue("simpul.dev", &stranger, Validity::days(30))
        .unwrap();
    assert!(!reaches_http(&bus.client_with(&paths)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_certificate_is_refused_without_a_restart() {
    let bus = Bus::start(&[]);
    let portal = bus.client(PORTAL);
    assert!(reaches_http(&portal).await);
    bus.certs_command(&["revoke", PORTAL]);
    // A fresh client each time: a revoked member must not get a new connection.
    let refused = wait_until(Duration::from_secs(10), || async {
        !reaches_http(&bus.client(PORTAL)).await
    })
    .await;
    assert!(refused, "revoked certificate still accepted");
    // Others are unaffected.
    assert!(reaches_http(&bus.client(DUKCAPIL)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_cannot_send_as_another_member() {
    let bus = Bus::start(&[]);
    let portal = bus.client(PORTAL);
    let mut ev = death(NIK);
    ev["source"] = json!(DUKCAPIL);
    let a = portal.send(&ev).await.unwrap();
    assert_status(&a, 400);
    assert_eq!(a.pointers(), ["/source"]);
    // Even with a matching source, the portal may not produce deaths.
    ev["source"] = json!(PORTAL);
    let a = portal.send(&ev).await.unwrap();
    assert_status(&a, 403);
    assert_eq!(a.problem(), Some("forbidden"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bus_fills_source_from_the_certificate() {
    let bus = Bus::start(&[]);
    let ev = death(NIK);
    assert_status(&bus.client(DUKCAPIL).send(&ev).await.unwrap(), 202);
    let got = bus
        .client(HR)
        .pull(1, Duration::ZERO, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(got.body["messages"][0]["event"]["source"], DUKCAPIL);
    assert!(got.body["messages"][0]["event"]["time"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_cannot_read_or_settle_another_members_inbox() {
    let bus = Bus::start(&[]);
    let ev = permit();
    assert_status(&bus.client(BIZ).send(&ev).await.unwrap(), 202);
    // The inbox is chosen by certificate: the second business sees nothing, whatever it asks.
    let biz2 = bus.client(BIZ2);
    let a = biz2
        .request(
            reqwest::Method::GET,
            "/v1/inbox?member=GOV/dpmptsp",
            None,
            None,
        )
        .await
        .unwrap();
    // Unknown parameters are refused outright, naming the parameter; nothing is leased.
    assert_status(&a, 400);
    assert!(a.body["detail"].as_str().unwrap().contains("member"));
    assert!(leased_ids(&a).is_empty());
    let dpmptsp = bus.client(DPMPTSP);
    let got = pull_now(&dpmptsp).await;
    assert_eq!(leased_ids(&got), [id_of(&ev)]);
    assert_status(&biz2.ack(id_of(&ev)).await.unwrap(), 404);
    assert_status(&biz2.nack(id_of(&ev), "mine now").await.unwrap(), 404);
    // Only the sender sees the status.
    assert_status(&biz2.status(id_of(&ev)).await.unwrap(), 404);
    assert_status(&bus.client(BIZ).status(id_of(&ev)).await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_go_only_to_permitted_recipients() {
    let bus = Bus::start(&[]);
    let dpmptsp = bus.client(DPMPTSP);
    let mut notice = event(
        "sipanse.izin.status",
        json!({ "permohonan_id": uuid::Uuid::now_v7().to_string(), "status": "diterima" }),
    );
    notice["to"] = json!(HR); // not a business: not a permitted consumer
    assert_status(&dpmptsp.send(&notice).await.unwrap(), 403);
    notice["to"] = json!(BIZ);
    assert_status(&dpmptsp.send(&notice).await.unwrap(), 202);
    let biz2 = pull_now(&bus.client(BIZ2)).await;
    assert!(leased_ids(&biz2).is_empty());
    let biz = pull_now(&bus.client(BIZ)).await;
    assert_eq!(leased_ids(&biz), [id_of(&notice)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn feeds_are_readable_only_by_their_consumers_and_producers() {
    let bus = Bus::start(&[]);
    let a = bus
        .client(PORTAL)
        .feed("siak.penduduk.meninggal", 0, 10)
        .await
        .unwrap();
    assert_status(&a, 403);
    let a = bus
        .client(HR)
        .feed("siak.penduduk.meninggal", 0, 10)
        .await
        .unwrap();
    assert_status(&a, 200);
}

/// Ids belong to their sender: another member's earlier use of an id neither blocks nor
/// reveals mine, and its status is not mine to read.
#[tokio::test(flavor = "multi_thread")]
async fn ids_belong_to_their_sender() {
    let bus = Bus::start(&[]);
    let (biz, biz2) = (bus.client(BIZ), bus.client(BIZ2));
    let theirs = permit();
    let mut squatted = theirs.clone();
    squatted["data"]["nib"] = serde_json::json!("9120000654321");
    // The other business stores a message under the id first, with other content.
    assert_status(&biz2.send(&squatted).await.unwrap(), 202);
    let mine = biz.send(&theirs).await.unwrap();
    assert_status(&mine, 202);
    assert_eq!(mine.body["status"], "accepted");
    // Each sees only its own message under that id.
    let s = biz.status(id_of(&theirs)).await.unwrap();
    assert_eq!(s.body["source"], BIZ);
    assert_status(
        &bus.client(PORTAL).status(id_of(&theirs)).await.unwrap(),
        404,
    );
    // A batch that reuses another member's id is accepted, revealing nothing.
    let mut batch_ev = permit();
    batch_ev["id"] = theirs["id"].clone();
    batch_ev["data"]["nib"] = serde_json::json!("9120000654321");
    let dup = biz2.send_batch(&[permit(), batch_ev]).await.unwrap();
    assert_status(&dup, 202);
    assert_eq!(dup.body["results"][1]["status"], "duplicate");
}
