//! W3C Trace Context travels with a message: an incoming `traceparent` header (or the
//! CloudEvents extension) is kept, logged with the accept, and delivered to the consumer; and
//! `--log-format json` writes one JSON object per line.

mod common;

use common::*;
use serde_json::Value;

const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const OTHER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

async fn send_traced(c: &bus::client::Client, ev: &Value, traceparent: &str) -> (u16, Value) {
    let res = c
        .http()
        .post(c.url("/v1/messages"))
        .header("content-type", "application/cloudevents+json")
        .header("traceparent", traceparent)
        .body(ev.to_string())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_traceparent_header_is_kept_logged_and_delivered() {
    let bus = Bus::start(&["--log-format", "json"]);
    let dukcapil = bus.client(DUKCAPIL);
    let ev = death(NIK);
    let (code, body) = send_traced(&dukcapil, &ev, TRACE).await;
    assert_eq!(code, 202, "{body}");
    // A retry under another trace is the same message, not a conflict.
    let (code, body) = send_traced(&dukcapil, &ev, OTHER).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["status"], "duplicate");
    // An event's own traceparent wins over the header.
    let mut own = death(NIK);
    own["traceparent"] = OTHER.into();
    assert_eq!(send_traced(&dukcapil, &own, TRACE).await.0, 202);

    let got = pull_now(&bus.client(HR)).await;
    let events: Vec<&Value> = got.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["event"])
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["id"], ev["id"]);
    assert_eq!(events[0]["traceparent"], TRACE);
    assert_eq!(events[1]["traceparent"], OTHER);

    assert!(
        bus.wait_for_log(TRACE).await,
        "the accept was not logged with its trace"
    );
    let logs = bus.logged();
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
    }
    let accepted = logs
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["message"] == "accepted" && v["traceparent"] == TRACE)
        .expect("an accept line with the traceparent field");
    assert_eq!(accepted["member"], DUKCAPIL);
}

#[tokio::test]
async fn a_malformed_traceparent_extension_is_refused_and_a_bad_header_ignored() {
    let bus = Bus::start(&[]);
    let c = bus.client(DUKCAPIL);
    let mut ev = death(NIK);
    ev["traceparent"] = "00-xyz".into();
    let a = c.send(&ev).await.unwrap();
    assert_status(&a, 400);
    assert_eq!(a.body["errors"][0]["pointer"], "/traceparent");
    // A header that is not a traceparent starts no trace and stops nothing.
    let (code, _) = send_traced(&c, &death(NIK), "garbage").await;
    assert_eq!(code, 202);
    let got = pull_now(&bus.client(HR)).await;
    assert!(
        got.body["messages"][0]["event"]
            .get("traceparent")
            .is_none()
    );
}
