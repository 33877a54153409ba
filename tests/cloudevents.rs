//! The official CloudEvents Python SDK, as an agency developer would use it: binary mode
//! (`ce-*` headers, the data as the body) is accepted like structured mode, a retry in the
//! other mode is the same message, errors name the headers, and delivered events parse.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

#[test]
fn the_python_sdk_sends_in_both_modes_and_parses_what_is_delivered() {
    let bus = Bus::start(&[]);
    let out = Command::new("python3")
        .arg(repo().join("tests/fixtures/cloudevents_sdk.py"))
        .arg(format!(
            "https://{}",
            bus.base.trim_start_matches("https://")
        ))
        .arg(bus.certs())
        .arg(NIK)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["binary_content_type"], "application/json", "{r}");
    assert_eq!(r["binary"], 202, "{r}");
    assert_eq!(r["binary_status"], "accepted", "{r}");
    assert_eq!(r["binary_second"], 202, "{r}");
    // The same event again in structured mode: the same message, not a conflict.
    assert_eq!(r["structured_retry"], 202, "{r}");
    assert_eq!(r["structured_retry_status"], "duplicate", "{r}");
    assert_eq!(r["bad_id"], 400, "{r}");
    assert_eq!(r["bad_id_pointers"], serde_json::json!(["ce-id"]), "{r}");
    // HR got each event once, and the SDK parses them.
    assert_eq!(r["delivered"], r["sent"], "{r}");
    assert_eq!(
        r["delivered_types"],
        serde_json::json!(["siak.penduduk.meninggal"])
    );
    assert_eq!(r["delivered_nik_ok"], true, "{r}");
}

#[tokio::test]
async fn binary_mode_without_a_content_type_is_json_and_other_data_is_refused() {
    let bus = Bus::start(&[]);
    let c = bus.client(DUKCAPIL);
    // The SDK leaves Content-Type out when `datacontenttype` is not set: JSON is implied.
    let data = death(NIK)["data"].to_string();
    let res = c
        .http()
        .post(c.url("/v1/messages"))
        .header("ce-specversion", "1.0")
        .header("ce-id", uuid::Uuid::now_v7().to_string())
        .header("ce-type", "siak.penduduk.meninggal")
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let res = c
        .http()
        .post(c.url("/v1/messages"))
        .header("ce-specversion", "1.0")
        .header("ce-id", uuid::Uuid::now_v7().to_string())
        .header("ce-type", "siak.penduduk.meninggal")
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 415);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "urn:simpul:problem:unsupported-media-type");
    assert!(
        body["detail"].as_str().unwrap().contains("binary mode"),
        "{body}"
    );
}
