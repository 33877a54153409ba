//! The README's curl walk-through, run as written against a real bus.

mod common;

use std::process::Command;

use common::*;

/// The first ```sh block after the "Walk-through with curl" heading.
fn walk_through() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## Walk-through with curl")
        .nth(1)
        .expect("walk-through section");
    let block = section.split("```sh\n").nth(1).expect("sh block");
    block.split("```").next().unwrap().to_owned()
}

#[test]
fn the_readme_walk_through_works_as_written() {
    let bus = Bus::start(&[]);
    let script = walk_through()
        .replace("https://127.0.0.1:8443", &bus.base)
        .replace("certs/", &format!("{}/", bus.certs().display()));
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&script)
        .current_dir(repo())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(answers.len(), 5, "{stdout}");
    assert_eq!(answers[0]["status"], "accepted");
    let id = answers[0]["id"].as_str().unwrap();
    assert_eq!(answers[1]["messages"][0]["event"]["id"], id);
    assert_eq!(answers[2]["state"], "acked");
    assert_eq!(answers[3]["status"], "acked");
    assert_eq!(answers[4]["status"], 422);
    let pointers: Vec<&str> = answers[4]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    for p in [
        "/data/nib",
        "/data/npwp",
        "/data/kbli/0",
        "/data/pemohon",
        "/data/jenis_izin",
    ] {
        assert!(pointers.contains(&p), "{p} not in {pointers:?}");
    }
}
