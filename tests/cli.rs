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
[[member]]
id = "GOV/a"
name = "A"
[[member]]
id = "GOV/a"
name = "A again"
[[member]]
id = "XYZ/b"
name = "bad class"
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
