//! Limits are fair: memory is reserved before a body is read, waiting queries hold no write
//! slot and are withdrawn when nobody waits, long polls and queries are capped per member,
//! and each member has its own rate.

mod common;

use std::time::Duration;

use common::raw::RawConn;
use common::*;
use serde_json::{Value, json};

fn verify_request() -> Value {
    event(
        "siak.penduduk.verify",
        json!({ "nik": NIK2, "nama": "BUDI SANTOSO", "tanggal_lahir": "1985-08-22" }),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn body_memory_is_reserved_before_it_is_read() {
    let bus = Bus::start(&["--max-body", "4096", "--max-buffered", "4096"]);
    // A slow sender announces 4000 bytes and sends none: the budget is taken up front.
    let mut slow = RawConn::open(&bus, BIZ).await;
    slow.write(
        b"POST /v1/messages HTTP/1.1\r\nhost: localhost\r\n\
          content-type: application/cloudevents+json\r\ncontent-length: 4000\r\n\r\n",
    )
    .await;
    let c = bus.client(DUKCAPIL);
    let refused = wait_until(Duration::from_secs(5), || async {
        let a = c.send(&death(NIK)).await.unwrap();
        a.status == 503
    })
    .await;
    assert!(refused, "the budget was not reserved");
    let a = c.send(&death(NIK)).await.unwrap();
    assert_status(&a, 503);
    assert_eq!(a.problem(), Some("overloaded"));
    assert!(a.retry_after.is_some());
    // When the slow sender goes away, its reservation comes back.
    drop(slow);
    let back = wait_until(Duration::from_secs(5), || async {
        c.send(&death(NIK)).await.unwrap().status == 202
    })
    .await;
    assert!(back, "the reservation was not returned");
}

/// Sends a query in the background; returns once the bus has stored it.
async fn ask_in_background(
    bus: &Bus,
    member: &str,
    ev: Value,
) -> tokio::task::JoinHandle<bus::client::Answer> {
    let id = id_of(&ev);
    let task = send_in_background(&bus.client(member), &ev);
    let status = bus.client(member);
    let stored = wait_until(Duration::from_secs(10), || async {
        status.status(id).await.unwrap().status == 200
    })
    .await;
    assert!(stored, "query not stored");
    task
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_query_holds_no_write_slot() {
    let bus = Bus::start(&["--max-inflight", "1", "--query-timeout", "20"]);
    let waiting = ask_in_background(&bus, HR, verify_request()).await;
    // The only write slot is free again although the query still waits for its provider.
    let a = bus.client(BIZ).send(&permit()).await.unwrap();
    assert_status(&a, 202);
    assert!(!waiting.is_finished());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timed_out_query_is_withdrawn_and_a_retry_asks_again() {
    let bus = Bus::start(&["--query-timeout", "3"]);
    let ev = verify_request();
    let hr = bus.client(HR);
    assert_status(&hr.send(&ev).await.unwrap(), 504);
    // Nobody waits any more: the provider does not get it, and cannot answer it.
    let dukcapil = bus.client(DUKCAPIL);
    assert!(leased_ids(&pull_now(&dukcapil).await).is_empty());
    let reply = json!({"status": "aktif", "hasil": {}});
    assert_status(&dukcapil.reply(id_of(&ev), &reply).await.unwrap(), 409);
    let s = hr.status(id_of(&ev)).await.unwrap();
    assert_eq!(s.body["status"], "dead_lettered");
    let reason = s.body["deliveries"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("stopped waiting"), "{reason}");
    // The requester's retry puts it back before the provider, who answers this time.
    let retry = send_in_background(&hr, &ev);
    let got = dukcapil
        .pull(1, Duration::from_secs(5), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(leased_ids(&got), [id_of(&ev)]);
    assert_status(&dukcapil.reply(id_of(&ev), &reply).await.unwrap(), 200);
    let a = retry.await.unwrap();
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["status"], "aktif");
}

#[tokio::test(flavor = "multi_thread")]
async fn long_polls_are_capped_per_member() {
    let bus = Bus::start(&["--max-long-polls", "1"]);
    let hr = bus.client(HR);
    let parked = {
        let hr = hr.clone();
        tokio::spawn(async move {
            hr.pull(1, Duration::from_secs(10), Duration::from_secs(30))
                .await
                .unwrap()
        })
    };
    assert!(bus.wait_for_log("waiting for messages").await);
    let a = hr
        .pull(1, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap();
    assert_status(&a, 429);
    assert_eq!(a.problem(), Some("concurrency-limit"));
    assert!(a.retry_after.is_some());
    // A pull that does not wait is not capped, and other members have their own slots.
    assert_status(&pull_now(&hr).await, 200);
    let other = bus
        .client(DPMPTSP)
        .pull(1, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap();
    assert_status(&other, 200);
    // The parked poll is woken by a message and answers normally.
    assert_status(&bus.client(DUKCAPIL).send(&death(NIK)).await.unwrap(), 202);
    assert_status(&parked.await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_are_capped_per_member() {
    let bus = Bus::start(&["--max-queries", "1", "--query-timeout", "20"]);
    let _waiting = ask_in_background(&bus, HR, verify_request()).await;
    let a = bus.client(HR).send(&verify_request()).await.unwrap();
    assert_status(&a, 429);
    assert_eq!(a.problem(), Some("concurrency-limit"));
    // Another member may still ask.
    let _other = ask_in_background(&bus, DPMPTSP, verify_request()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_member_has_its_own_rate() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("registry.toml"))
        .unwrap()
        .replace(
            "schemas_dir = \"schemas\"",
            &format!("schemas_dir = {:?}", repo().join("schemas")),
        )
        .replace(
            "name = \"CV Contoh Usaha Mandiri\"",
            "name = \"CV Contoh Usaha Mandiri\"\nrate = \"1/min\"\nburst = 2",
        );
    let registry = dir.path().join("registry.toml");
    std::fs::write(&registry, text).unwrap();
    let bus = Bus::start_with_registry(&registry, &[]);
    let biz = bus.client(BIZ);
    for left in ["1", "0"] {
        let a = biz.send(&permit()).await.unwrap();
        assert_status(&a, 202);
        assert_eq!(a.headers["ratelimit-policy"], "\"member\";q=2;w=120");
        let rl = a.headers["ratelimit"].to_str().unwrap();
        assert!(rl.starts_with(&format!("\"member\";r={left};t=")), "{rl}");
    }
    let a = biz.send(&permit()).await.unwrap();
    assert_status(&a, 429);
    assert_eq!(a.problem(), Some("rate-limited"));
    let after: u64 = a.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=60).contains(&after), "{after}");
    assert!(a.headers["ratelimit"].to_str().unwrap().contains("r=0"));
    // Another business is not limited by this one's bucket.
    assert_status(&bus.client(BIZ2).send(&permit()).await.unwrap(), 202);
    // The refusal is counted for the operator, under the member that was limited.
    let (_, text) = bus.get_text("GOV/diskominfo", "/metrics").await;
    let series = format!("simpul_rate_limited_total{{member=\"{BIZ}\"}} 1");
    assert!(text.lines().any(|l| l == series), "{text}");
    let other = format!("simpul_rate_limited_total{{member=\"{BIZ2}\"}}");
    assert!(!text.contains(&other), "{text}");
}
