//! Smoke runs of every scenario: seconds long, tiny load. They check only that the benchmark
//! runs and reports its JSON lines, so it cannot rot; the figures themselves are not tested
//! (a debug build on a shared CI machine says nothing about performance).

use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

/// One scenario at a time, as the benchmark is meant to run. Side by side, one scenario's disk
/// writes (the backlog fill) once stalled another's store for longer than its one-second
/// window, which then counted nothing.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `simpul-bench run --scenario NAME` with a tiny load plus `extra`; returns its lines.
fn run(scenario: &str, extra: &[&str]) -> Vec<Value> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_simpul-bench"))
        .args(["run", "--scenario", scenario])
        .args(["--duration", "1", "--warmup", "0.5", "--connections", "2"])
        .args(extra)
        .output()
        .expect("run simpul-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "simpul-bench {scenario} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "{scenario}: no result lines");
    for l in &lines {
        for key in [
            "scenario",
            "msgs_per_s",
            "p50_ms",
            "p99_ms",
            "echo_msgs_per_s",
            "ratio_to_echo",
        ] {
            assert!(l.get(key).is_some(), "{scenario}: no {key} in {l}");
        }
    }
    lines
}

/// A throughput scenario must have served something without errors. The warm-up keeps the
/// first commits of a fresh store (slow on a loaded machine) out of the short window.
fn assert_served(lines: &[Value]) {
    for l in lines {
        assert!(l["msgs_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{l}");
        assert!(l["echo_msgs_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{l}");
        assert_eq!(l["errors"], 0, "{l}");
    }
}

#[test]
fn accept_over_http1_and_h2_at_max_and_fixed_rate() {
    let l = run("accept", &[]);
    assert_eq!(l[0]["scenario"], "accept");
    assert_served(&l);
    let l = run(
        "accept",
        &["--proto", "h2", "--streams", "2", "--rate", "50"],
    );
    assert_eq!(l[0]["scenario"], "accept@50");
    assert_served(&l);
}

#[test]
fn end_to_end_and_query() {
    assert_served(&run("e2e", &["--consumers", "1"]));
    let l = run("query", &["--rates", "20", "--consumers", "1"]);
    assert_eq!(l[0]["scenario"], "query@20");
    assert_served(&l);
}

#[test]
fn batch_sweep_and_payloads() {
    assert_served(&run("batch", &["--batch", "5"]));
    assert_eq!(run("sweep", &["--rates", "20,40"]).len(), 2);
    assert_served(&run("payload", &["--sizes", "256,16384"]));
}

#[test]
fn growth_backlog_and_cold_start() {
    let l = run("growth", &["--members", "3,30"]);
    assert_eq!(l.len(), 2);
    assert!(l[1]["ratio_to_baseline"].as_f64().is_some(), "{}", l[1]);
    let l = run("backlog", &["--backlog", "1000"]);
    assert_eq!(l[0]["backlog"], 1000);
    assert!(l[0]["rss_mib"].as_f64().unwrap_or(0.0) > 0.0);
    let l = run("coldstart", &["--schemas", "5"]);
    assert!(l[0]["ready_ms"].as_f64().unwrap_or(0.0) > 0.0);
}

/// The private services' exports (`scripts/services start` prints them), as flags.
fn services() -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services");
    let out = Command::new(script)
        .arg("start")
        .output()
        .expect("scripts/services");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_owned()
    };
    vec![
        "--store".into(),
        get("SIMPUL_STORE"),
        "--amqp".into(),
        get("SIMPUL_AMQP"),
        "--amqp-management".into(),
        get("SIMPUL_AMQP_MANAGEMENT"),
        "--amqp-certs".into(),
        get("SIMPUL_AMQP_CERTS"),
    ]
}

#[test]
fn the_peer_and_amqp_end_to_end() {
    let flags = services();
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["--windows", "100", "--channels", "1"]);
    let lines = run("peer", &args);
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["peer-rabbitmq", "accept", "accept", "batch-100"]);
    assert!(
        lines[0]["msgs_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{}",
        lines[0]
    );
    assert_served(&lines[1..]);
    for l in &lines[1..] {
        assert!(l["ratio_to_peer"].as_f64().is_some(), "{l}");
    }
    let lines = run("amqp-e2e", &args);
    assert_eq!(lines[0]["scenario"], "amqp-e2e");
    assert_served(&lines);
}

#[test]
fn scale_out_on_postgres() {
    let flags = services();
    let lines = run("scaleout", &[&flags[0], &flags[1], "--nodes", "2"]);
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["store-ceiling", "scaleout-accept-2n", "scaleout-e2e-2n"]
    );
    assert!(
        lines[0]["msgs_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{}",
        lines[0]
    );
    assert_served(&lines[1..]);
}
