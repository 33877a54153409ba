//! `simpul serve`: load and validate everything, then serve until told to stop.
//!
//! Start-up is all-or-nothing: the registry and every schema are validated before the socket
//! opens, so a bad configuration never serves half a bus. Shutdown stops accepting, lets
//! requests in flight finish, then flushes the store's writer.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;

use crate::api::{self, ApiConfig, AppState};
use crate::identity::{MemberId, Peer};
use crate::pki::{DevCa, PkiError, Validity};
use crate::registry::{Registry, RegistryError};
use crate::store::{SqliteStore, Store, StoreError, StoreOptions};
use crate::tls::{self, TlsError, TlsListener, TlsSettings};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("development PKI: {0}")]
    Pki(#[from] PkiError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub registry: PathBuf,
    pub certs: PathBuf,
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub api: ApiConfig,
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    pub store_busy_timeout: Duration,
}

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

/// Everything the server needs, built and validated; nothing is listening yet.
pub struct Prepared {
    pub state: Arc<AppState>,
    pub store: Arc<SqliteStore>,
    pub tls: Arc<rustls::ServerConfig>,
    pub settings: TlsSettings,
}

pub fn prepare(opts: &ServeOptions) -> Result<Prepared, ServeError> {
    let registry = Arc::new(Registry::load(&opts.registry)?);
    ensure_dev_pki(&opts.certs, &registry)?;
    let trust = &registry.trust;
    let settings = TlsSettings {
        ca_files: if trust.ca.is_empty() {
            vec![opts.certs.join("ca.pem")]
        } else {
            trust.ca.clone()
        },
        crl_file: trust
            .crl
            .clone()
            .or_else(|| Some(opts.certs.join("crl.pem")).filter(|p| p.exists())),
        cert_file: opts.certs.join("server.pem"),
        key_file: opts.certs.join("server.key"),
        instance: registry.instance.clone(),
        handshake_timeout: opts.handshake_timeout,
        max_connections: opts.max_connections,
    };
    let known = registry.clone();
    let tls = tls::server_config(
        &settings,
        Arc::new(move |m: &MemberId| known.member(m).is_some()),
    )?;
    let mut store_opts = StoreOptions::new(opts.data.join("simpul.db"));
    store_opts.busy_timeout = opts.store_busy_timeout;
    let store = Arc::new(SqliteStore::open(store_opts)?);
    let state = AppState::new(registry, store.clone(), opts.api.clone());
    Ok(Prepared {
        state,
        store,
        tls,
        settings,
    })
}

fn make_service(state: Arc<AppState>) -> IntoMakeServiceWithConnectInfo<axum::Router, Peer> {
    api::app(state).into_make_service_with_connect_info::<Peer>()
}

/// Serves until `shutdown` resolves, then drains and flushes. Prints the bound address on
/// stdout (`simpul listening on https://…`) so scripts can use port 0.
pub async fn serve(
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let p = prepare(&opts)?;
    let listener = TlsListener::bind(opts.listen, p.tls.clone(), &p.settings)
        .await
        .map_err(|source| ServeError::Listen {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    println!("simpul listening on https://{addr}");
    tracing::info!(%addr, instance = %p.state.registry.instance, "serving");
    let state = p.state.clone();
    let shutdown = async move {
        shutdown.await;
        state.closing.send_replace(true);
    };
    axum::serve(listener, make_service(p.state.clone()))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("stopped accepting; flushing the store");
    p.store.close().await;
    Ok(())
}
