//! What runs inside the server processes that [`crate::server`] starts.
//!
//! The echo ceiling is the bus minus the bus: the same rustls configuration
//! (`bus::tls::server_config`: TLS 1.2/1.3, aws-lc-rs, client certificate required and checked
//! against the CA and CRL, no session resumption), the same `TlsListener`, the same axum/hyper
//! server with the verified `Peer` attached to every connection, and the same request. It reads
//! the whole body and answers 202 with a body like the bus's, and does nothing else. Whatever
//! rate it reaches is what TLS + HTTP alone cost on this machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bus::api::ApiConfig;
use bus::server::ServeOptions;
use bus::tls::{TlsListener, TlsSettings};

const LOCALHOST_ANY_PORT: &str = "127.0.0.1:0";

/// Runs the bus exactly as `simpul serve` does with its default limits.
pub fn bus(
    registry: PathBuf,
    certs: PathBuf,
    data: PathBuf,
    max_body: usize,
    store: Option<String>,
    amqp: Option<(String, String)>,
) -> anyhow::Result<()> {
    let opts = ServeOptions {
        registry,
        certs,
        data,
        listen: LOCALHOST_ANY_PORT.parse()?,
        api: ApiConfig {
            max_body,
            ..ApiConfig::default()
        },
        store,
        amqp: amqp.map(|(url, management)| bus::transport::amqp::AmqpOptions {
            url,
            management,
            ca: PathBuf::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            crl_copy: None,
        }),
        // Otherwise `simpul serve`'s defaults.
        ..ServeOptions::default()
    };
    let rt = tokio::runtime::Runtime::new()?;
    // The parent kills this process when done; there is nothing to flush that matters.
    rt.block_on(bus::server::serve(opts, std::future::pending()))?;
    Ok(())
}

/// Runs the no-op echo server until killed.
pub fn echo(certs: &Path, instance: &str) -> anyhow::Result<()> {
    let settings = TlsSettings {
        ca_files: vec![certs.join("ca.pem")],
        crl_files: Some(certs.join("crl.pem"))
            .filter(|p| p.exists())
            .into_iter()
            .collect(),
        cert_file: certs.join("server.pem"),
        key_file: certs.join("server.key"),
        instance: instance.to_owned(),
        handshake_timeout: Duration::from_secs(10),
        max_connections: 10_000,
        crl_grace: Duration::ZERO,
        ocsp: Default::default(),
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        // Everyone with a certificate from the CA counts as a member: the echo has no registry.
        let tls = bus::tls::server_config(&settings, Arc::new(|_| true))?;
        let addr: SocketAddr = LOCALHOST_ANY_PORT.parse()?;
        let listener = TlsListener::bind(addr, &tls, &settings).await?;
        println!("simpul listening on https://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/v1/messages", post(echo_handler))
            .route("/readyz", get(|| async { "ready" }));
        // The bus's own connection handling (timer, lifetimes, revocation), so the ceiling
        // pays what the bus pays.
        let (_never, shutdown) = tokio::sync::watch::channel(false);
        let conn = bus::server::ConnOptions::default();
        let presence = Default::default();
        bus::server::serve_connections(listener, app, conn, Some(tls.verifier), presence, shutdown)
            .await;
        anyhow::Ok(())
    })
}

/// Reads the body (as the bus must) and answers like an accepted message.
async fn echo_handler(body: Body) -> impl IntoResponse {
    let ok = axum::body::to_bytes(body, usize::MAX).await.is_ok();
    let status = if ok {
        StatusCode::ACCEPTED
    } else {
        StatusCode::BAD_REQUEST
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"id":"00000000-0000-7000-8000-000000000000","status":"accepted","warnings":[]}"#,
    )
}
