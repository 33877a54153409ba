//! The audit log end to end: every action of a flow lands in the chain, `simpul audit verify`
//! finds it intact, and each kind of tampering with the store is detected and named. Runs on
//! the embedded store and, in the PostgreSQL pass, on PostgreSQL.

mod common;

use std::process::Output;

use common::*;
use serde_json::{Value, json};

/// A bus that ran a small flow and stopped cleanly: its chain is sealed and checkpointed.
/// (Tests run on the multi-threaded runtime: the clients must answer the bus's GOAWAY while
/// the test waits for the process to exit.)
/// The records, in order: accept, lease, ack, status read, feed read, reject.
async fn flow() -> Bus {
    let mut bus = Bus::start(&[]);
    let (dukcapil, hr, dpmptsp) = (bus.client(DUKCAPIL), bus.client(HR), bus.client(DPMPTSP));
    let ev = death(NIK);
    assert_status(&dukcapil.send(&ev).await.unwrap(), 202);
    let got = pull_now(&hr).await;
    assert_eq!(leased_ids(&got), [id_of(&ev)]);
    assert_status(&hr.ack(id_of(&ev)).await.unwrap(), 200);
    assert_status(&dukcapil.status(id_of(&ev)).await.unwrap(), 200);
    let feed = dpmptsp
        .feed("siak.penduduk.meninggal", 0, 10)
        .await
        .unwrap();
    assert_status(&feed, 200);
    let mut bad = death("1234");
    bad["data"]["nik"] = json!("1234");
    assert_status(&dukcapil.send(&bad).await.unwrap(), 422);
    assert!(bus.terminate(), "the bus stops cleanly");
    bus
}

fn audit(bus: &Bus, args: &[&str]) -> Output {
    let mut c = bus.simpul();
    c.arg("audit").args(args);
    match &bus.store {
        Some(url) => c.args(["--store", url]),
        None => c.arg("--data").arg(bus.data()),
    };
    c.env_remove("SIMPUL_STORE").output().unwrap()
}

fn verify(bus: &Bus) -> (i32, String) {
    let certs = bus.certs();
    let out = audit(bus, &["verify", "--certs", certs.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{text}{err}"))
}

/// Runs SQL against the bus's store, as an attacker with database access would.
async fn sql(bus: &Bus, statements: &[&str]) {
    match &bus.store {
        None => {
            let c = rusqlite::Connection::open(bus.data().join("simpul.db")).unwrap();
            for s in statements {
                c.execute_batch(s).unwrap();
            }
        }
        Some(url) => {
            let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            for s in statements {
                c.batch_execute(s).await.unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_action_is_recorded_in_an_intact_signed_chain() {
    let bus = flow().await;
    let (code, out) = verify(&bus);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("audit chain intact: 6 records, 1 checkpoints"),
        "{out}"
    );

    let export = audit(
        &bus,
        &["export", "--from", "2000-01-01", "--to", "2999-12-31"],
    );
    assert!(export.status.success());
    let lines: Vec<Value> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = lines.iter().filter_map(|l| l["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "accept",
            "lease",
            "ack",
            "status_read",
            "feed_read",
            "reject"
        ]
    );
    let actors: Vec<&str> = lines.iter().filter_map(|l| l["actor"].as_str()).collect();
    assert_eq!(actors, [DUKCAPIL, HR, HR, DUKCAPIL, DPMPTSP, DUKCAPIL]);
    assert_eq!(lines[0]["counterpart"], json!(format!("{HR},{DPMPTSP}")));
    assert_eq!(lines[0]["digest"].as_str().map(str::len), Some(64));
    assert_eq!(lines[5]["detail"], json!("message: schema-validation"));
    assert!(
        lines[6]["checkpoint"]["count"] == json!(6),
        "{:?}",
        lines[6]
    );
    let text = lines.iter().map(Value::to_string).collect::<Vec<_>>();
    assert!(
        !text.join("\n").contains(NIK),
        "no payload in the audit, no NIK"
    );

    // The export verifies on its own, with the bus's certificate only.
    let file = bus.dir.path().join("export.jsonl");
    std::fs::write(&file, text.join("\n")).unwrap();
    let cert = bus.certs().join("server.pem");
    let out = bus
        .simpul()
        .args(["audit", "verify", "--file"])
        .arg(&file)
        .arg("--keys")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut forged = text.clone();
    forged[2] = forged[2].replace(HR, DPMPTSP);
    std::fs::write(&file, forged.join("\n")).unwrap();
    let out = bus
        .simpul()
        .args(["audit", "verify", "--file"])
        .arg(&file)
        .arg("--keys")
        .arg(&cert)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("record 3: its content"));
}

async fn tampered(statements: &[&str]) -> String {
    let bus = flow().await;
    assert_eq!(verify(&bus).0, 0);
    sql(&bus, statements).await;
    let (code, out) = verify(&bus);
    assert_eq!(code, 1, "tampering went unnoticed: {out}");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_record_is_named() {
    let out = tampered(&["UPDATE audit SET actor = 'GOV/portal' WHERE pos = 3"]).await;
    assert!(
        out.contains("broken at record 3: its content does not match"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_record_is_named() {
    let out = tampered(&["DELETE FROM audit WHERE pos = 4"]).await;
    assert!(out.contains("broken at record 4: missing"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_tail_is_named() {
    let out = tampered(&["DELETE FROM audit WHERE pos >= 5"]).await;
    assert!(out.contains("broken at record 5: missing"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inserted_record_is_named() {
    let out = tampered(&[
        "UPDATE audit SET pos = -pos - 1 WHERE pos >= 3",
        "UPDATE audit SET pos = -pos WHERE pos < 0",
        "INSERT INTO audit(at, actor, action, pos, prev, hash)
         SELECT at, 'GOV/portal', 'status_read', 3, prev, hash FROM audit WHERE pos = 2",
    ])
    .await;
    assert!(out.contains("broken at record 3"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn swapped_records_are_named() {
    let out = tampered(&[
        "UPDATE audit SET pos = -1 WHERE pos = 2",
        "UPDATE audit SET pos = 2 WHERE pos = 3",
        "UPDATE audit SET pos = 3 WHERE pos = -1",
    ])
    .await;
    assert!(out.contains("broken at record 2"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_checkpoint_is_named() {
    let out = tampered(&["UPDATE audit_checkpoints SET at = at + 1"]).await;
    assert!(
        out.contains("record 6: checkpoint over 6 records: its fields differ"),
        "{out}"
    );
}

/// A rewritten chain, every hash recomputed by the attacker, still disagrees with the signed
/// checkpoint: the rewrite is caught at the checkpoint.
#[tokio::test(flavor = "multi_thread")]
async fn a_recomputed_chain_fails_its_checkpoint() {
    let bus = flow().await;
    let export = audit(
        &bus,
        &["export", "--from", "2000-01-01", "--to", "2999-12-31"],
    );
    let mut records: Vec<bus::audit::Record> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| bus::audit::Record::from_json(&serde_json::from_str(l).unwrap()))
        .collect();
    records[1].entry.actor = PORTAL.into();
    let mut prev = records[0].hash;
    let mut statements = Vec::new();
    for r in &mut records[1..] {
        *r = bus::audit::Record::seal(r.entry.clone(), r.pos, prev);
        prev = r.hash;
    }
    // The same statements on both stores: hex into the blob columns.
    let (prefix, suffix) = match bus.store {
        None => ("x'", "'"),
        Some(_) => ("'\\x", "'::bytea"),
    };
    for r in &records[1..] {
        statements.push(format!(
            "UPDATE audit SET actor = '{}', prev = {prefix}{}{suffix}, hash = {prefix}{}{suffix} \
             WHERE pos = {}",
            r.entry.actor,
            hex::encode(r.prev),
            hex::encode(r.hash),
            r.pos
        ));
    }
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    sql(&bus, &statements).await;
    let (code, out) = verify(&bus);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("differs from the signed checkpoint"), "{out}");
}
