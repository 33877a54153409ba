//! Signed receipts and sender signatures: every 202, batch item and query answer carries a
//! receipt that `simpul receipt verify` and the README's Python example accept for the event
//! as stored and refuse after any change; a sender's own signature is checked, kept and
//! delivered.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bus::pki::member_paths;
use bus::trust::{SigningKey, canonical, kid_of};
use common::*;
use serde_json::{Value, json};

/// The event as the bus stored it: what the sender sent, with its `source` and `time` as the
/// 202 answered them.
fn as_stored(sent: &Value, answer: &Value) -> Value {
    let mut ev = sent.clone();
    ev["source"] = answer["source"].clone();
    ev["time"] = answer["time"].clone();
    ev
}

/// Saves `GET /v1/receipts/keys` to a file, as a verifier would.
async fn saved_keys(bus: &Bus, dir: &Path) -> PathBuf {
    let keys = bus
        .client(DPMPTSP)
        .request(reqwest::Method::GET, "/v1/receipts/keys", None, None)
        .await
        .unwrap();
    assert_status(&keys, 200);
    let k = &keys.body["keys"][0];
    assert!(k["x5c"][0].is_string() && k["kid"].is_string(), "{k}");
    let path = dir.join("keys.json");
    std::fs::write(&path, keys.body.to_string()).unwrap();
    path
}

fn verify(bus: &Bus, receipt: &str, event: &Value, keys: &Path) -> (bool, String) {
    let file = bus
        .dir
        .path()
        .join(format!("event-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, event.to_string()).unwrap();
    let out = bus
        .simpul()
        .args(["receipt", "verify", "--receipt", receipt, "--event"])
        .arg(&file)
        .arg("--keys")
        .arg(keys)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) => (true, text),
        Some(1) => (false, text),
        other => panic!("receipt verify failed to run ({other:?}): {text}"),
    }
}

/// The README's Python verifier, as written.
fn python_verifier() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("### Verifying a receipt in Python")
        .nth(1)
        .expect("the README's Python section");
    let block = section.split("```python\n").nth(1).expect("python block");
    block.split("```").next().unwrap().to_owned()
}

fn python_accepts(dir: &Path, keys: &Path, event: &Value, receipt: &str) -> bool {
    let script = dir.join("verify_receipt.py");
    std::fs::write(&script, python_verifier()).unwrap();
    let ev = dir.join("event-py.json");
    std::fs::write(&ev, event.to_string()).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .arg(keys)
        .arg(&ev)
        .arg(receipt)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        assert!(stdout.contains("receipt valid"), "{stdout}");
    }
    out.status.success()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receipt_verifies_for_the_event_as_stored_and_nothing_else() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let keys = saved_keys(&bus, dir.path()).await;
    let ev = death(NIK);
    let answer = bus.client(DUKCAPIL).send(&ev).await.unwrap();
    assert_status(&answer, 202);
    let receipt = answer.body["receipt"].as_str().unwrap().to_owned();
    assert_eq!(receipt.split('.').nth(1), Some(""), "payload detached");
    let stored = as_stored(&ev, &answer.body);

    let (ok, out) = verify(&bus, &receipt, &stored, &keys);
    assert!(ok, "{out}");
    assert!(python_accepts(dir.path(), &keys, &stored, &receipt));

    // One byte of the event changed: refused by both.
    let mut changed = stored.clone();
    changed["data"]["nama"] = json!("SITI AMINAi");
    let (ok, out) = verify(&bus, &receipt, &changed, &keys);
    assert!(!ok && out.contains("does not match"), "{out}");
    assert!(!python_accepts(dir.path(), &keys, &changed, &receipt));

    // The recipient holds the very bytes the receipt signs.
    let got = pull_now(&bus.client(HR)).await;
    let delivered = got.body["messages"][0]["event"].clone();
    assert_eq!(canonical(&delivered), canonical(&stored));
    assert!(verify(&bus, &receipt, &delivered, &keys).0);

    // A retry gets the receipt of what was stored the first time, even with another `time`.
    let mut retry = ev.clone();
    retry["time"] = json!("2026-11-30T12:00:00Z");
    let again = bus.client(DUKCAPIL).send(&retry).await.unwrap();
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.body["time"], answer.body["time"]);
    let receipt2 = again.body["receipt"].as_str().unwrap();
    assert!(verify(&bus, receipt2, &stored, &keys).0);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_items_and_query_answers_carry_receipts() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let keys = saved_keys(&bus, dir.path()).await;
    let events = [death(NIK), death(NIK2)];
    let answer = bus.client(DUKCAPIL).send_batch(&events).await.unwrap();
    assert_status(&answer, 202);
    for (ev, item) in events
        .iter()
        .zip(answer.body["results"].as_array().unwrap())
    {
        let receipt = item["receipt"].as_str().unwrap();
        assert!(
            verify(&bus, receipt, &as_stored(ev, item), &keys).0,
            "{item}"
        );
    }
    let first = answer.body["results"][0]["receipt"].as_str().unwrap();
    assert!(
        !verify(
            &bus,
            first,
            &as_stored(&events[1], &answer.body["results"][1]),
            &keys
        )
        .0
    );

    let provider = tokio::spawn(provide_once(bus.client(DUKCAPIL), verify_response()));
    let asked = bus.client(HR).send(&verify_request()).await.unwrap();
    assert_status(&asked, 200);
    provider.await.unwrap();
    let receipt = asked.body["receipt"].as_str().unwrap();
    assert!(verify(&bus, receipt, &asked.body["data"], &keys).0);
    let mut changed = asked.body["data"].clone();
    changed["status"] = json!("mati");
    assert!(!verify(&bus, receipt, &changed, &keys).0);
}

/// Signs `ev` as `member` would: a detached compact JWS over the RFC 8785 form of the event
/// as stored, by the member's own key.
fn signed_by(bus: &Bus, member: &str, mut ev: Value) -> Value {
    let paths = member_paths(
        &bus.certs(),
        &bus::identity::MemberId::parse(member).unwrap(),
    );
    ev["source"] = json!(member);
    ev["time"] = json!("2026-11-30T10:00:00Z");
    let cert = bus::tls::load_certs(&paths.cert).unwrap().remove(0);
    let pem = std::fs::read(&paths.key).unwrap();
    use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
    let key =
        SigningKey::from_der(PrivateKeyDer::from_pem_slice(&pem).unwrap().secret_der()).unwrap();
    let sig = key.jws(&kid_of(&cert), 1_796_000_000, &canonical(&ev), true);
    ev["signature"] = json!(sig);
    ev
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sender_signature_is_checked_kept_and_delivered() {
    let bus = Bus::start(&[]);
    let dukcapil = bus.client(DUKCAPIL);
    let ev = signed_by(&bus, DUKCAPIL, death(NIK));
    assert_status(&dukcapil.send(&ev).await.unwrap(), 202);
    let got = pull_now(&bus.client(HR)).await;
    let delivered = &got.body["messages"][0]["event"];
    assert_eq!(
        delivered["signature"], ev["signature"],
        "delivered as signed"
    );

    // The recipient proves who sent what: the signature verifies with the sender's
    // certificate, over the delivered event without its signature.
    let paths = member_paths(
        &bus.certs(),
        &bus::identity::MemberId::parse(DUKCAPIL).unwrap(),
    );
    let mut unsigned = delivered.clone();
    unsigned.as_object_mut().unwrap().remove("signature");
    let mut keys = bus::trust::KeySet::default();
    keys.add_cert(&bus::tls::load_certs(&paths.cert).unwrap()[0])
        .unwrap();
    let parsed = bus::trust::jws::parse(delivered["signature"].as_str().unwrap()).unwrap();
    parsed
        .verify(&keys.keys, Some(&canonical(&unsigned)))
        .unwrap();

    // Changed after signing: 422, naming the signature.
    let mut tampered = signed_by(&bus, DUKCAPIL, death(NIK2));
    tampered["data"]["nama"] = json!("SOMEONE ELSE");
    let answer = dukcapil.send(&tampered).await.unwrap();
    assert_status(&answer, 422);
    assert_eq!(answer.problem(), Some("signature-invalid"));
    assert_eq!(answer.pointers(), ["/signature"]);
    assert!(
        answer.body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("does not match")
    );

    // Signed with another member's key: 422 too, nothing stored.
    let foreign = signed_by(&bus, HR, death(NIK2));
    let mut foreign = foreign;
    foreign["source"] = json!(DUKCAPIL);
    let answer = dukcapil.send(&foreign).await.unwrap();
    assert_status(&answer, 422);
    assert!(
        answer.body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("certificate"),
        "{}",
        answer.body
    );
    assert_status(&dukcapil.status(id_of(&foreign)).await.unwrap(), 404);
}
