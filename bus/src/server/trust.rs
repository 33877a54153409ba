//! Start-up and upkeep of the bus's trust material: the development PKI on first run, the TLS
//! settings from the registry's `[trust]`, what no revocation source covers, and the watchers
//! that rotate keys and reload CRLs without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::ServeOptions;
use crate::identity::MemberId;
use crate::pki::{DevCa, PkiError, Validity};
use crate::registry::Registry;
use crate::tls::rotation::ServerCert;
use crate::tls::{self, MemberVerifier, TlsError, TlsSettings};
use crate::trust::{Signer, SignerCell};

/// Creates the development PKI on first run, and a certificate for any registry member that
/// has none yet, so `simpul serve` works from a fresh clone with no flags.
pub fn ensure_dev_pki(certs: &Path, registry: &Registry) -> Result<(), PkiError> {
    if !registry.trust.ca.is_empty() {
        return Ok(()); // a real CA is configured: the bus issues nothing itself
    }
    let mut members: Vec<MemberId> = registry.members().map(|m| m.id.clone()).collect();
    members.sort();
    if !certs.join("ca.pem").exists() {
        tracing::info!(dir = %certs.display(), "creating the development PKI");
        DevCa::init(certs, &registry.instance, &members, false)?;
        return Ok(());
    }
    if !certs.join("ca.key").exists() {
        return Ok(()); // a real CA: certificates are issued elsewhere
    }
    let ca = DevCa::load(certs)?;
    for m in members {
        let cert = certs.join("members").join(format!("{}.pem", m.file_stem()));
        if !cert.exists() {
            tracing::info!(member = %m, "issuing a development certificate");
            ca.issue(&registry.instance, &m, Validity::days(365))?;
        }
    }
    Ok(())
}

/// Says at start which certificates no revocation source covers: failing closed on them is
/// right, but the operator must learn why before a member calls.
pub(super) fn warn_uncovered(settings: &TlsSettings) -> Result<(), TlsError> {
    use tls::ocsp::OcspPolicy;
    let policy = settings.ocsp.policy;
    if settings.crl_files.is_empty() {
        if policy == OcspPolicy::Off {
            tracing::warn!(
                "no CRL configured for the trusted CA(s) and OCSP is off: revoked \
                 certificates are not refused"
            );
        }
        return Ok(());
    }
    if policy == OcspPolicy::Require {
        return Ok(()); // every certificate needs a current OCSP answer anyway
    }
    for ca in tls::crl::uncovered(&settings.ca_files, &settings.crl_files)? {
        tracing::warn!(
            "no configured CRL is issued by the CA {ca}: member certificates it issues are \
             refused (revocation status unknown); add its CRL to [trust] crl, or leave it to \
             OCSP with [trust] ocsp = \"require\""
        );
    }
    Ok(())
}

/// The TLS settings from the registry's `[trust]`, or the development PKI in `--certs`.
pub(super) fn tls_settings(opts: &ServeOptions, registry: &Registry) -> TlsSettings {
    let trust = &registry.trust;
    TlsSettings {
        ca_files: if trust.ca.is_empty() {
            vec![opts.certs.join("ca.pem")]
        } else {
            trust.ca.clone()
        },
        // The development CA's CRL must be there: without it revocation would silently be off.
        crl_files: match (trust.crl.is_empty(), trust.ca.is_empty()) {
            (false, _) => trust.crl.clone(),
            (true, true) => vec![opts.certs.join(crate::pki::CRL)],
            (true, false) => Vec::new(),
        },
        cert_file: opts.certs.join("server.pem"),
        key_file: opts.certs.join("server.key"),
        instance: registry.instance.clone(),
        handshake_timeout: opts.handshake_timeout,
        max_connections: opts.max_connections,
        crl_grace: opts.crl_grace,
        ocsp: tls::ocsp::OcspSettings {
            policy: trust.ocsp,
            responder: trust.ocsp_responder.clone(),
            refresh: trust.ocsp_refresh.map_or(
                tls::ocsp::OcspSettings::default().refresh,
                Duration::from_secs,
            ),
            ..Default::default()
        },
    }
}

/// Replaces the server certificate and key, which also sign receipts and checkpoints, on
/// SIGHUP or when their files change (looked at every second): new handshakes present the new
/// certificate and new receipts name its `kid`, while earlier receipts keep verifying by theirs.
pub(super) async fn watch_keys(cert: Arc<ServerCert>, signer: Arc<SignerCell>, certs: PathBuf) {
    let stamp =
        |files: [&PathBuf; 2]| files.map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok());
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut seen = stamp(cert.files());
    loop {
        let hangup = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        let asked = tokio::select! {
            _ = tick.tick() => false,
            _ = hangup => true,
        };
        let now = stamp(cert.files());
        if !asked && now == seen {
            continue;
        }
        seen = now;
        match cert.reload() {
            Ok(false) if asked => tracing::info!("SIGHUP: the server certificate is unchanged"),
            Ok(false) => {}
            Ok(true) => {
                let [c, k] = cert.files();
                match Signer::load(c, k).and_then(|s| s.archive(&certs).map(|()| s)) {
                    Ok(s) => {
                        tracing::info!(kid = %s.kid, "server certificate and receipt key rotated");
                        signer.replace(s);
                    }
                    Err(e) => tracing::error!(error = %e, "rotated TLS, but not the receipt key"),
                }
            }
            // One file written and not yet the other: the next look sees both.
            Err(e) => {
                tracing::warn!(error = %e, "server certificate not reloaded; keeping the current one")
            }
        }
    }
}

/// Looks at the CRL every second, so a revocation reaches open connections within seconds
/// even when no one connects; logs an error every minute while the CRL is stale.
pub(super) async fn watch_crl(verifier: Arc<MemberVerifier>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_alarm: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        verifier.refresh();
        match verifier.crl_health() {
            Ok(()) => last_alarm = None,
            Err(why) => {
                if last_alarm.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::error!("{why}; new connections are refused and /readyz is false");
                    last_alarm = Some(tokio::time::Instant::now());
                }
            }
        }
    }
}

/// `--metrics-listen`: `/metrics` in plain HTTP for a Prometheus on the same machine (the
/// address was checked to be loopback); runs until the process ends.
pub(super) async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: crate::api::SharedState,
) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { crate::api::metrics_text(&state).await }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics listener stopped");
    }
}
