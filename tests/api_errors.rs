//! Every error class of `POST /v1/messages`, answered as RFC 9457 problem+json.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn accepts_a_valid_event_and_answers_with_id_and_warnings() {
    let bus = Bus::start(&[]);
    let dukcapil = bus.client(DUKCAPIL);
    let mut ev = death(NIK);
    // NIK says 05-01-1990, female; the payload says otherwise: a warning, not an error.
    ev["data"]["tanggal_lahir"] = json!("1990-02-05");
    ev["data"]["jenis_kelamin"] = json!("L");
    let a = dukcapil.send(&ev).await.unwrap();
    assert_status(&a, 202);
    assert_eq!(a.body["id"], ev["id"]);
    assert_eq!(a.body["status"], "accepted");
    let warned: Vec<&str> = a.body["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(warned, ["/data/tanggal_lahir", "/data/jenis_kelamin"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_and_envelopes_get_400_naming_every_field() {
    let bus = Bus::start(&[]);
    let c = bus.client(DUKCAPIL);
    let a = c
        .request(
            Method::POST,
            "/v1/messages",
            Some("application/cloudevents+json"),
            Some(b"{not json".to_vec()),
        )
        .await
        .unwrap();
    assert_status(&a, 400);
    assert_eq!(a.problem(), Some("malformed"));

    let ev = json!({ "specversion": "0.3", "id": "not-a-uuid", "data": 5, "time": "yesterday" });
    let a = c.send(&ev).await.unwrap();
    assert_status(&a, 400);
    let mut p = a.pointers();
    p.sort();
    assert_eq!(p, ["/data", "/id", "/specversion", "/time", "/type"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_errors_get_422_with_every_failing_field_and_nothing_is_stored() {
    let bus = Bus::start(&[]);
    let c = bus.client(DUKCAPIL);
    let ev = event(
        "siak.penduduk.meninggal",
        json!({
            "nik": "3204053102900003",       // 31 February
            "no_kk": "9999010101010001",     // unknown region
            "tanggal_meninggal": "20-11-2026", // not a date
            "jenis_kelamin": "X",
            "extra": true
        }),
    );
    let a = c.send(&ev).await.unwrap();
    assert_status(&a, 422);
    assert_eq!(a.problem(), Some("schema-validation"));
    assert_eq!(a.body["type"], "urn:simpul:problem:schema-validation");
    let p = a.pointers();
    for field in [
        "/data/nik",
        "/data/no_kk",
        "/data/tanggal_meninggal",
        "/data/jenis_kelamin",
        "/data/nama",
    ] {
        assert!(p.contains(&field), "{field} missing from {p:?}");
    }
    // Nothing stored: the sender cannot see it and HR's inbox is empty.
    let s = c.status(id_of(&ev)).await.unwrap();
    assert_status(&s, 404);
    let inbox = pull_now(&bus.client(HR)).await;
    assert!(leased_ids(&inbox).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_type_is_404_and_wrong_content_type_is_415() {
    let bus = Bus::start(&[]);
    let c = bus.client(DUKCAPIL);
    let a = c.send(&event("siak.tidak.ada", json!({}))).await.unwrap();
    assert_status(&a, 404);
    assert_eq!(a.problem(), Some("unknown-type"));

    let body = serde_json::to_vec(&death(NIK)).unwrap();
    let a = c
        .request(Method::POST, "/v1/messages", Some("text/plain"), Some(body))
        .await
        .unwrap();
    assert_status(&a, 415);
    assert_eq!(a.problem(), Some("unsupported-media-type"));
    assert_eq!(a.status.as_u16(), a.body["status"].as_u64().unwrap() as u16);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_get_413() {
    let bus = Bus::start(&["--max-body", "4096"]);
    let c = bus.client(DUKCAPIL);
    let mut ev = death(NIK);
    ev["data"]["tempat_meninggal"] = json!("x".repeat(5000));
    let a = c.send(&ev).await.unwrap();
    assert_status(&a, 413);
    assert_eq!(a.problem(), Some("too-large"));
}

#[tokio::test(flavor = "multi_thread")]
async fn same_id_same_content_gets_the_original_answer_and_different_content_409() {
    let bus = Bus::start(&[]);
    let c = bus.client(DUKCAPIL);
    let ev = death(NIK);
    let first = c.send(&ev).await.unwrap();
    assert_status(&first, 202);
    let again = c.send(&ev).await.unwrap();
    assert_status(&again, 202);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["warnings"], first.body["warnings"]);

    let mut changed = ev.clone();
    changed["data"]["nama"] = json!("NAMA LAIN");
    let a = c.send(&changed).await.unwrap();
    assert_status(&a, 409);
    assert_eq!(a.problem(), Some("conflict"));

    // Delivered once only.
    let hr = bus.client(HR);
    let got = pull_now(&hr).await;
    assert_eq!(leased_ids(&got), [id_of(&ev)]);
    assert_eq!(
        got.body["messages"][0]["event"]["data"]["nama"],
        "SITI AMINAH"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_store_answers_503_with_retry_after_then_recovers() {
    // The embedded store's own lock; a PostgreSQL outage is tests/postgres.rs's.
    let bus = Bus::start_embedded(&["--store-busy-timeout-ms", "200"]);
    let c = bus.client(DUKCAPIL);
    assert_status(&c.send(&death(NIK)).await.unwrap(), 202);

    // Another process holds the write lock, as a backup tool or a stuck writer would.
    let db = rusqlite::Connection::open(bus.data().join("simpul.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let a = c.send(&death(NIK)).await.unwrap();
    assert_status(&a, 503);
    assert_eq!(a.problem(), Some("store-unavailable"));
    assert!(a.retry_after.is_some(), "503 must carry Retry-After");
    // Readiness tells the truth: the last write failed, and says why.
    let r = c.request(Method::GET, "/readyz", None, None).await.unwrap();
    assert_status(&r, 503);
    assert_eq!(r.problem(), Some("not-ready"));
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("last write failed")
    );
    assert_status(
        &c.request(Method::GET, "/healthz", None, None)
            .await
            .unwrap(),
        200,
    );
    db.execute_batch("ROLLBACK").unwrap();

    let a = c.send(&death(NIK)).await.unwrap();
    assert_status(&a, 202);
    let r = c.request(Method::GET, "/readyz", None, None).await.unwrap();
    assert_status(&r, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_is_all_or_nothing() {
    let bus = Bus::start(&[]);
    let c = bus.client(DUKCAPIL);
    let good = death(NIK);
    let mut bad = death(NIK2);
    bad["data"]["nik"] = json!("3204050101900000"); // serial 0000
    let a = c.send_batch(&[good.clone(), bad]).await.unwrap();
    assert_status(&a, 422);
    assert_eq!(a.pointers(), ["/1/data/nik"]);
    assert_status(&c.status(id_of(&good)).await.unwrap(), 404);

    let second = death(NIK2);
    let a = c.send_batch(&[good.clone(), second.clone()]).await.unwrap();
    assert_status(&a, 202);
    assert_eq!(a.body["results"].as_array().unwrap().len(), 2);
    let hr = bus.client(HR);
    let got = pull_now(&hr).await;
    assert_eq!(leased_ids(&got), [id_of(&good), id_of(&second)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_endpoints_and_ids_are_problem_404s() {
    let bus = Bus::start(&[]);
    let c = bus.client(DUKCAPIL);
    let a = c
        .request(Method::GET, "/v1/nothing", None, None)
        .await
        .unwrap();
    assert_status(&a, 404);
    assert_eq!(a.problem(), Some("not-found"));
    let a = c
        .request(Method::GET, "/v1/messages/xyz", None, None)
        .await
        .unwrap();
    assert_status(&a, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_writes_in_flight_get_503_overloaded_with_retry_after() {
    let bus = Bus::start_embedded(&["--max-inflight", "1", "--store-busy-timeout-ms", "10000"]);
    let c = bus.client(DUKCAPIL);
    // Hold the store's write lock so the one permitted write waits inside the store.
    let db = rusqlite::Connection::open(bus.data().join("simpul.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (tx, mut answers) = tokio::sync::mpsc::channel(3);
    for _ in 0..3 {
        let (c, tx) = (c.clone(), tx.clone());
        tokio::spawn(async move { tx.send(c.send(&death(NIK)).await.unwrap()).await });
    }
    let next = std::time::Duration::from_secs(8);
    // The two that find the slot taken are answered at once, while the lock is still held.
    for _ in 0..2 {
        let a = tokio::time::timeout(next, answers.recv())
            .await
            .unwrap()
            .unwrap();
        assert_status(&a, 503);
        assert_eq!(a.problem(), Some("overloaded"));
        assert!(a.retry_after.is_some(), "503 must carry Retry-After");
    }
    db.execute_batch("ROLLBACK").unwrap();
    // The one holding the slot completes once the lock is gone.
    let a = tokio::time::timeout(next, answers.recv())
        .await
        .unwrap()
        .unwrap();
    assert_status(&a, 202);
}

/// One id, one spelling: braces, `urn:uuid:`, upper case and no hyphens are the same id, and
/// a retry that leaves out `time`/`source` or fills them in is the same message.
#[tokio::test(flavor = "multi_thread")]
async fn an_id_in_any_spelling_is_one_message() {
    let bus = Bus::start(&[]);
    let c = bus.client(DUKCAPIL);
    let ev = death(NIK);
    let id = ev["id"].as_str().unwrap().to_owned();
    let first = c.send(&ev).await.unwrap();
    assert_status(&first, 202);
    assert_eq!(first.body["status"], "accepted");
    for spelling in [
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
        id.to_uppercase(),
        id.replace('-', ""),
    ] {
        let mut retry = ev.clone();
        retry["id"] = json!(spelling);
        retry["source"] = json!(DUKCAPIL);
        retry["time"] = json!("2026-11-30T10:00:00Z");
        let a = c.send(&retry).await.unwrap();
        assert_status(&a, 202);
        assert_eq!(a.body["status"], "duplicate", "{spelling}");
        assert_eq!(a.body["id"], json!(id));
    }
    let got = pull_now(&bus.client(HR)).await;
    assert_eq!(leased_ids(&got), [id_of(&ev)]);
    assert_eq!(got.body["messages"][0]["event"]["id"], json!(id));
}

/// CloudEvents attribute types are enforced: what is stored is delivered to every consumer.
#[tokio::test(flavor = "multi_thread")]
async fn attribute_types_are_checked_and_null_means_absent() {
    let bus = Bus::start(&[]);
    let c = bus.client(DUKCAPIL);
    let mut ev = death(NIK);
    ev["subject"] = json!({ "a": 1 });
    ev["datacontenttype"] = json!(7);
    ev["Ext_Bad"] = json!("x");
    ev["nested"] = json!({ "deep": true });
    let a = c.send(&ev).await.unwrap();
    assert_status(&a, 400);
    let mut p = a.pointers();
    p.sort();
    assert_eq!(p, ["/Ext_Bad", "/datacontenttype", "/nested", "/subject"]);
    assert_status(&c.status(id_of(&ev)).await.unwrap(), 404);
    let mut ok = death(NIK);
    ok["subject"] = Value::Null;
    ok["traceparent"] = json!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    ok["priority"] = json!(3);
    assert_status(&c.send(&ok).await.unwrap(), 202);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_content_encoding_is_415() {
    let bus = Bus::start(&[]);
    let c = bus.client(DUKCAPIL);
    let body = serde_json::to_vec(&death(NIK)).unwrap();
    let resp = c
        .http()
        .post(c.url("/v1/messages"))
        .header("content-type", "application/cloudevents+json")
        .header("content-encoding", "br")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
}

#[tokio::test(flavor = "multi_thread")]
async fn query_values_out_of_range_are_400_naming_the_parameter() {
    let bus = Bus::start(&[]);
    let c = bus.client(HR);
    for (path, name) in [
        ("/v1/inbox?max=0", "max"),
        ("/v1/inbox?max=101", "max"),
        ("/v1/inbox?lease=0", "lease"),
        ("/v1/inbox?lease=3601", "lease"),
        ("/v1/inbox?wait=31", "wait"),
        ("/v1/feeds/siak.penduduk.meninggal?limit=0", "limit"),
        ("/v1/feeds/siak.penduduk.meninggal?limit=1001", "limit"),
        ("/v1/feeds/siak.penduduk.meninggal?after=-1", "after"),
    ] {
        let a = c.request(Method::GET, path, None, None).await.unwrap();
        assert_status(&a, 400);
        assert_eq!(a.problem(), Some("malformed"));
        assert_eq!(a.pointers(), [format!("/query/{name}").as_str()], "{path}");
    }
}

/// axum's own rejections answer in the problem catalogue too, never `text/plain`.
#[tokio::test(flavor = "multi_thread")]
async fn every_rejection_is_problem_json() {
    let bus = Bus::start(&["--max-body", "1024"]);
    let c = bus.client(DUKCAPIL);
    let big = vec![b'x'; 4096];
    for (method, path, ct, body, status) in [
        (Method::GET, "/v1/messages/%FF%FE", None, None, 400),
        (Method::GET, "/v1/inbox?max=abc", None, None, 400),
        (
            Method::POST,
            "/v1/inbox/ack",
            Some("application/json"),
            Some(b"{\"ids\":".to_vec()),
            400,
        ),
        (
            Method::POST,
            "/v1/queries/0190c1de-0000-7000-8000-000000000001/reply",
            Some("application/json"),
            Some(big.clone()),
            404,
        ),
        (
            Method::POST,
            "/v1/inbox/ack",
            Some("application/json"),
            Some(big),
            413,
        ),
        (Method::PUT, "/v1/messages", None, None, 405),
    ] {
        let resp = c
            .http()
            .request(method.clone(), c.url(path))
            .header("content-type", ct.unwrap_or("application/json"))
            .body(body.unwrap_or_default())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
        let p: Value = resp.json().await.unwrap();
        assert!(
            p["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:simpul:problem:")
        );
    }
}
