//! The offline tools: `simpul check`, `simpul check --format`, `simpul registry check`.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::{Value, json};

fn simpul(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(bin())
        .current_dir(repo())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn check_format_reports_one_line_per_value_in_order() {
    let input = format!("{NIK}\n3204053102900003\n3204050101900000\n{NIK2}\n");
    let out = simpul(&["check", "--format", "nik"], &input);
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out);
    let valid: Vec<bool> = lines
        .iter()
        .map(|l| l["valid"].as_bool().unwrap())
        .collect();
    assert_eq!(valid, [true, false, false, true]);
    assert!(!lines[1]["reasons"].as_array().unwrap().is_empty());
    assert_eq!(lines[0]["value"], NIK);

    let out = simpul(&["check", "--format", "npwp"], "013121660091000\n");
    assert_eq!(out.status.code(), Some(0));
    let out = simpul(&["check", "--format", "npwp"], "013121670091000\n");
    assert_eq!(out.status.code(), Some(1));
    let out = simpul(&["check", "--format", "nip"], "199009132025242014\n");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn check_format_keeps_the_exact_line_content() {
    // A trailing space or a CR is part of the value; the format accepts digits only.
    let out = simpul(
        &["check", "--format", "nib"],
        "8120000123456 \r\n8120000123456\n",
    );
    let valid: Vec<bool> = json_lines(&out)
        .iter()
        .map(|l| l["valid"].as_bool().unwrap())
        .collect();
    assert_eq!(valid, [false, true]);
}

#[test]
fn check_payload_agrees_with_the_bus() {
    let good = json!({ "nik": NIK, "nama": "SITI AMINAH", "tanggal_meninggal": "2026-11-20" });
    let out = simpul(
        &["check", "siak.penduduk.meninggal", "-"],
        &good.to_string(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let bad = json!({ "nik": "3204053102900003", "tanggal_meninggal": "2026-02-30" });
    let out = simpul(&["check", "siak.penduduk.meninggal"], &bad.to_string());
    assert_eq!(out.status.code(), Some(1));
    let problem: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(problem["status"], 422);
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert!(
        pointers.contains(&"/nik")
            && pointers.contains(&"/nama")
            && pointers.contains(&"/tanggal_meninggal"),
        "{pointers:?}"
    );
    // The invalid NIK is never echoed back.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("3204053102900003"));

    // A whole CloudEvent is checked too, envelope included.
    let ev = death(NIK);
    let out = simpul(&["check", "siak.penduduk.meninggal"], &ev.to_string());
    assert_eq!(out.status.code(), Some(0));
    let out = simpul(&["check", "siak.tidak.ada"], &good.to_string());
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn registry_check_reports_every_error_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("schemas")).unwrap();
    std::fs::write(
        dir.path().join("schemas/ok.v1.json"),
        r#"{"type":"object"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("schemas/broken.v1.json"), r#"{"type": 12}"#).unwrap();
    std::fs::write(
        dir.path().join("schemas/typo.v1.json"),
        r#"{"type":"string","format":"nikk"}"#,
    )
    .unwrap();
    let reg = r#"
instance = "test"
[limits]
rate = "fast"
[trust]
ca = ["nope.pem"]
[[member]]
id = "GOV/a"
name = "A"
burst = 5
[[member]]
id = "GOV/a"
name = "A again"
rate = "0/s"
[[member]]
id = "XYZ/b"
name = "bad class"
[[member]]
id = "GOV/c"
name = "served over AMQP"
delivery = "amqp"
[[type]]
name = "t.two"
kind = "query"
schema = "ok.v1"
response_schema = "ok.v1"
producers = ["GOV/a"]
provider = "GOV/c"
[[type]]
name = "t.one"
kind = "event"
schema = "missing.v1"
producers = ["GOV/ghost"]
consumers = ["GOV/a"]
[[type]]
name = "t.one"
kind = "query"
schema = "ok.v1"
producers = ["GOV/a"]
"#;
    let path = dir.path().join("registry.toml");
    std::fs::write(&path, reg).unwrap();
    let out = simpul(&["registry", "check", path.to_str().unwrap()], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "broken.v1.json",
        "typo.v1.json",
        "listed twice",
        "XYZ/b",
        "missing.v1",
        "GOV/ghost",
        "defined twice",
        "needs a provider",
        "limits: rate \"fast\"",
        "burst is set without a rate",
        "rate \"0/s\"",
        "provider GOV/c has delivery = \"amqp\"; queries are answered over HTTPS",
    ] {
        assert!(
            err.contains(expected),
            "{expected:?} not reported in:\n{err}"
        );
    }

    let out = simpul(&["registry", "check", "registry.toml"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_trust_section_replaces_the_development_ca() {
    // Bus 1 creates a dev PKI; bus 2's registry trusts only that CA, from its [trust] section.
    let dev = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("registry.toml")).unwrap();
    let trust = format!(
        "[trust]\nca = [{:?}]\ncrl = {:?}\n",
        dev.certs().join("ca.pem"),
        dev.certs().join("crl.pem")
    );
    let text = text.replace(
        "schemas_dir = \"schemas\"\n",
        &format!("schemas_dir = {:?}\n{trust}", repo().join("schemas")),
    );
    let reg = dir.path().join("registry.toml");
    std::fs::write(&reg, text).unwrap();
    // Bus 2 has its own certs dir holding only the server certificate from bus 1's PKI.
    let own = dir.path().join("certs");
    std::fs::create_dir(&own).unwrap();
    for f in ["server.pem", "server.key"] {
        std::fs::copy(dev.certs().join(f), own.join(f)).unwrap();
    }
    let out = simpul(&["registry", "check", reg.to_str().unwrap()], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = Command::new(bin())
        .env_remove("SIMPUL_STORE") // the embedded store, whatever the pass
        .args(["serve", "--listen", "127.0.0.1:0", "--registry"])
        .arg(&reg)
        .arg("--certs")
        .arg(&own)
        .arg("--data")
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("simpul listening on ")
        .unwrap()
        .to_owned();
    // No development CA was created in bus 2's certs dir, and bus 1's members get in.
    assert!(!own.join("ca.pem").exists());
    let c = bus::client::Client::for_member(
        &base,
        &dev.certs(),
        &bus::identity::MemberId::parse(PORTAL).unwrap(),
    )
    .unwrap();
    let a = c
        .request(reqwest::Method::GET, "/healthz", None, None)
        .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_status(&a.unwrap(), 200);
}

/// `simpul check` applies the bus's envelope rules to a whole event: `dataschema`, `to`,
/// attribute types, and (with `--as`) the producer ACL; an event it passes, the bus accepts.
#[tokio::test(flavor = "multi_thread")]
async fn check_applies_the_same_envelope_rules_as_the_bus() {
    let bus = Bus::start(&[]);
    let dukcapil = bus.client(DUKCAPIL);
    let mut cases = Vec::new();
    let mut ev = death(NIK);
    ev["dataschema"] = json!("sipanse.izin.permohonan.v1");
    cases.push((ev, "/dataschema"));
    let mut ev = death(NIK);
    ev["to"] = json!("GOV/dpmptsp");
    cases.push((ev, "/to"));
    let mut ev = death(NIK);
    ev["subject"] = json!({ "a": 1 });
    cases.push((ev, "/subject"));
    for (ev, pointer) in cases {
        let out = simpul(&["check", "siak.penduduk.meninggal"], &ev.to_string());
        assert_eq!(out.status.code(), Some(1), "check passed {pointer}");
        let problem: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(problem["errors"][0]["pointer"], pointer);
        let a = dukcapil.send(&ev).await.unwrap();
        assert_status(&a, 400);
        assert_eq!(a.pointers(), [pointer]);
    }
    // The producer ACL, when the sender is named.
    let out = simpul(
        &["check", "siak.penduduk.meninggal", "--as", PORTAL],
        &death(NIK).to_string(),
    );
    assert_eq!(out.status.code(), Some(1));
    let problem: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(problem["status"], 403);
    let mut ev = death(NIK);
    ev["id"] = json!(format!("{{{}}}", ev["id"].as_str().unwrap().to_uppercase()));
    let out = simpul(
        &["check", "siak.penduduk.meninggal", "--as", DUKCAPIL],
        &ev.to_string(),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_status(&dukcapil.send(&ev).await.unwrap(), 202);
}

/// A registry that is not there: one message naming the path and what to do.
#[test]
fn a_missing_registry_is_named_with_the_fix() {
    for cmd in [&["demo"][..], &["registry", "check"][..]] {
        let mut args = cmd.to_vec();
        if cmd[0] == "demo" {
            args.extend(["--registry", "/nonexistent/registry.toml"]);
        } else {
            args.push("/nonexistent/registry.toml");
        }
        let out = simpul(&args, "");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("/nonexistent/registry.toml does not exist"),
            "{err}"
        );
        assert!(err.contains("--registry FILE or SIMPUL_REGISTRY"), "{err}");
        assert_eq!(
            err.matches("does not exist").count(),
            1,
            "said twice:\n{err}"
        );
    }
}
