//! What re-checking a member's certificate costs, for the choice between re-checking the peer
//! on every request and re-checking each open connection only when the CRL changes (what the
//! bus does, see `bus::server::http`). One check is the chain verification, the CRL lookup and
//! the membership test that a handshake does.

use std::sync::Arc;
use std::time::Instant;

use bus::identity::MemberId;
use bus::pki::DevCa;
use bus::tls::TlsSettings;
use serde_json::json;

pub fn run(iterations: u32) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let member = MemberId::parse("GOV/portal")?;
    DevCa::init(
        dir.path(),
        "simpul.dev",
        std::slice::from_ref(&member),
        false,
    )?;
    let settings = TlsSettings {
        ca_files: vec![dir.path().join("ca.pem")],
        crl_files: vec![dir.path().join("crl.pem")],
        cert_file: dir.path().join("server.pem"),
        key_file: dir.path().join("server.key"),
        instance: "simpul.dev".into(),
        handshake_timeout: std::time::Duration::from_secs(10),
        max_connections: 1,
        crl_grace: std::time::Duration::ZERO,
        ocsp: Default::default(),
    };
    let tls = bus::tls::server_config(&settings, Arc::new(|_| true))?;
    let cert = dir
        .path()
        .join("members")
        .join(format!("{}.pem", member.file_stem()));
    let chain = bus::tls::load_certs(&cert)?;
    anyhow::ensure!(
        tls.verifier.still_valid(&chain),
        "the member's chain does not verify"
    );
    let started = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(tls.verifier.still_valid(&chain));
    }
    let per_check_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations.max(1));
    println!(
        "{}",
        json!({ "scenario": "recheck", "iterations": iterations, "per_check_us": per_check_us })
    );
    Ok(())
}
