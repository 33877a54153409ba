//! A store written by the release before per-sender ids (schema version 1) keeps everything
//! after the upgrade. The fixture is made by `tests/fixtures/make-store-v1.sh`, whose comments
//! say what each message went through.

mod common;

use common::*;
use serde_json::json;
use uuid::Uuid;

fn id(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

const P1: &str = "0190c1de-0000-7000-8000-0000000000a1";
const P2: &str = "0190c1de-0000-7000-8000-0000000000a2";
const P3: &str = "0190c1de-0000-7000-8000-0000000000a3";
const P4: &str = "0190c1de-0000-7000-8000-0000000000a4";
const Q1: &str = "0190c1de-0000-7000-8000-0000000000b1";

fn permit_with(id: &str) -> serde_json::Value {
    let mut ev = permit();
    ev["id"] = json!(id);
    ev["data"]["pemohon"] = json!({ "nik": NIK2, "nama": "BUDI SANTOSO" });
    ev
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_of_the_previous_release_keeps_every_message() {
    let bus = Bus::start_seeded(&repo().join("tests/fixtures/store-v1"), &[]);
    let (biz, dpmptsp) = (bus.client(BIZ), bus.client(DPMPTSP));

    // Statuses: pending, leased, acked and dead-lettered with the reason.
    let status = |id: &'static str| {
        let biz = &biz;
        async move { biz.status(self::id(id)).await.unwrap().body }
    };
    assert_eq!(status(P1).await["status"], "accepted");
    assert_eq!(status(P2).await["status"], "delivered");
    assert_eq!(status(P3).await["status"], "acked");
    let dead = status(P4).await;
    assert_eq!(dead["status"], "dead_lettered");
    let reason = dead["deliveries"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("berkas tidak lengkap"), "{reason}");

    // The lease taken before the upgrade can still be acked.
    assert_status(&dpmptsp.ack(id(P2)).await.unwrap(), 200);
    assert_eq!(status(P2).await["status"], "acked");

    // The pending message is delivered (its id was sent in upper case; it is one id).
    let pulled = pull_now(&dpmptsp).await;
    let ids: Vec<Uuid> = leased_ids(&pulled);
    assert!(ids.contains(&id(P1)), "{:#}", pulled.body);

    // Idempotency answers: a retry of an acked message is a duplicate, not new and not 409,
    // whatever spelling of its id; the same id with other content is still 409.
    let retry = biz.send(&permit_with(&P3.to_uppercase())).await.unwrap();
    assert_status(&retry, 202);
    assert_eq!(retry.body["status"], "duplicate");
    let mut changed = permit_with(P3);
    changed["data"]["lokasi"] = json!("3273");
    assert_status(&biz.send(&changed).await.unwrap(), 409);

    // A retried query gets its stored reply.
    let ask = json!({"specversion":"1.0","id":Q1,"type":"siak.penduduk.verify",
        "data":{"nik":NIK2,"nama":"Budi Santoso","tanggal_lahir":"1985-08-22"}});
    let answer = dpmptsp.send(&ask).await.unwrap();
    assert_status(&answer, 200);
    assert_eq!(answer.body["data"]["status"], "aktif");

    // The feed keeps its cursors: the two deaths at 1 and 2, nothing skipped or repeated.
    let hr = bus.client(HR);
    let feed = hr.feed("siak.penduduk.meninggal", 0, 10).await.unwrap();
    let cursors: Vec<i64> = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cursor"].as_i64().unwrap())
        .collect();
    assert_eq!(cursors, [1, 2]);
    let after = hr.feed("siak.penduduk.meninggal", 1, 10).await.unwrap();
    assert_eq!(
        after.body["events"][0]["event"]["id"],
        "0190c1de-0000-7000-8000-0000000000e2"
    );
    // HR's inbox copies survived too.
    assert_eq!(leased_ids(&pull_now(&hr).await).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_of_a_newer_release_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("simpul.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    let out = std::process::Command::new(bin())
        .current_dir(repo())
        .env_remove("SIMPUL_STORE") // the embedded store, whatever the pass
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .arg("--certs")
        .arg(dir.path().join("certs"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("newer simpul") && err.contains("99"), "{err}");
}
