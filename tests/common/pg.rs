//! The PostgreSQL the tests run against: the one `SIMPUL_STORE` names, or else the private one
//! `scripts/services start` starts (never a skip: if it cannot start, the test fails). Each
//! store gets a schema of its own, so every test starts empty. Shared by the end-to-end suite
//! and the store conformance suite (`bus/tests`).
#![allow(dead_code)]

use std::sync::OnceLock;

/// Whether this run is the end-to-end suite's PostgreSQL pass (`SIMPUL_TEST_BACKEND=postgres`,
/// as `scripts/test` sets it for its second pass).
pub fn end_to_end_on_postgres() -> bool {
    std::env::var("SIMPUL_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// The PostgreSQL server's URL.
pub fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("SIMPUL_STORE")
            && url.starts_with("postgres")
        {
            return url;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services");
        let script = std::path::Path::new(script);
        let script = if script.exists() {
            script.to_owned()
        } else {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services")
        };
        let out = std::process::Command::new(&script)
            .arg("start")
            .output()
            .expect("run scripts/services start");
        assert!(
            out.status.success(),
            "scripts/services start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("export SIMPUL_STORE="))
            .expect("scripts/services printed SIMPUL_STORE")
            .to_owned()
    })
}

/// A store URL for a new, empty schema (the bus creates it on first connect).
pub fn fresh_url(purpose: &str) -> String {
    let schema = format!("{purpose}_{}", uuid::Uuid::now_v7().simple());
    format!("{}?options=-csearch_path%3D{schema}", server_url())
}
