//! `simpul serve`: load and validate everything, then serve until told to stop.
//!
//! Start-up is all-or-nothing: the registry and every schema are validated before the socket
//! opens, so a bad configuration never serves half a bus. Shutdown stops accepting, lets
//! requests in flight finish, then flushes the store's writer.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod activity;
mod http;
mod transport;
mod trust;

pub use http::{ConnOptions, serve as serve_connections};
pub use trust::ensure_dev_pki;

use crate::api::{self, ApiConfig, AppState};
use crate::core::audit::{CheckpointPolicy, Sealer};
use crate::core::node::Keys;
use crate::identity::MemberId;
use crate::pki::PkiError;
use crate::registry::{Registry, RegistryError};
use crate::store::{PgOptions, PgStore, SqliteStore, Store, StoreError, StoreOptions};
use crate::subjects::SubjectKey;
use crate::tls::{self, ServerTls, TlsError, TlsListener, TlsSettings};
use crate::transport::amqp::AmqpOptions;
use crate::trust::{KeySet, Signer, SignerCell};

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
    #[error(
        "--store {0}: not a store this bus knows (give postgres://USER@HOST:PORT/DB, or leave it out for the embedded store)"
    )]
    StoreUrl(String),
    #[error(
        "--amqp needs --store postgres://…: RabbitMQ carries what PostgreSQL holds (the embedded store needs no broker)"
    )]
    AmqpWithoutPostgres,
    #[error(transparent)]
    Amqp(#[from] crate::transport::amqp::AmqpError),
    #[error("signing key: {0}")]
    Signer(#[from] crate::trust::TrustError),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "--metrics-listen {0}: only a loopback address (the listener has no TLS and no authentication)"
    )]
    MetricsNotLoopback(SocketAddr),
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
    pub conn: ConnOptions,
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    pub store_busy_timeout: Duration,
    /// `postgres://…`: keep state in this PostgreSQL, shared with the other nodes that name
    /// it. `None`: the embedded store in `data`.
    pub store: Option<String>,
    /// How long settled messages stay (their status readable) in a PostgreSQL store.
    pub retention: Duration,
    /// How long past its `nextUpdate` the CRL is still trusted.
    pub crl_grace: Duration,
    /// RabbitMQ as the transport for members with `delivery = "amqp"` (needs `store`). The
    /// CA, certificate and key fields are filled from `certs` when left empty.
    pub amqp: Option<AmqpOptions>,
    /// When the audit chain gets a signed checkpoint.
    pub audit_checkpoint: CheckpointPolicy,
    /// A plain-HTTP listener for `/metrics` on a loopback address, for a local Prometheus.
    pub metrics_listen: Option<SocketAddr>,
}

/// `simpul serve`'s defaults, in one place for the CLI, the demo, the benchmark and tests.
impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            registry: "registry.toml".into(),
            certs: "certs".into(),
            data: "data".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            api: ApiConfig::default(),
            conn: ConnOptions::default(),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            store_busy_timeout: Duration::from_secs(2),
            store: None,
            retention: PgOptions::new("").retention,
            crl_grace: Duration::ZERO,
            amqp: None,
            audit_checkpoint: CheckpointPolicy::default(),
            metrics_listen: None,
        }
    }
}

/// Everything the server needs, built and validated; nothing is listening yet.
struct Prepared {
    pub state: Arc<AppState>,
    pub store: Arc<dyn Store>,
    pub tls: ServerTls,
    pub settings: TlsSettings,
    /// The transport, started once the listener runs.
    pub transport: Option<transport::Prepared>,
    pub sealer: Arc<Sealer>,
    /// Where the server certificate's earlier versions are kept (`receipt-keys/`).
    pub certs: PathBuf,
}

async fn prepare(opts: &ServeOptions) -> Result<Prepared, ServeError> {
    let registry = Arc::new(Registry::load(&opts.registry)?);
    ensure_dev_pki(&opts.certs, &registry)?;
    let settings = trust::tls_settings(opts, &registry);
    trust::warn_uncovered(&settings)?;
    let known = registry.clone();
    let tls = tls::server_config(
        &settings,
        Arc::new(move |m: &MemberId| known.member(m).is_some()),
    )?;
    if opts.amqp.is_some() && opts.store.is_none() {
        return Err(ServeError::AmqpWithoutPostgres);
    }
    let relayed = transport::relayed(&registry, opts.amqp.is_some());
    let signer = Signer::load(&settings.cert_file, &settings.key_file)?;
    signer.archive(&opts.certs)?;
    let signer = Arc::new(SignerCell::new(signer, &KeySet::archive(&opts.certs)?));
    let (store, pg) = open_store(opts, relayed.clone()).await?;
    let sealer = Arc::new(Sealer::new(
        store.clone(),
        signer.clone(),
        opts.audit_checkpoint,
    ));
    let keys = Keys {
        signer,
        subjects: Arc::new(SubjectKey::load_or_create(&opts.certs)?),
    };
    let state = AppState::new(registry.clone(), store.clone(), opts.api.clone(), keys);
    let transport = match (&opts.amqp, pg) {
        (Some(amqp), Some(pg)) => Some(transport::prepare(opts, amqp, &registry, relayed, pg)?),
        _ => None,
    };
    Ok(Prepared {
        state,
        store,
        tls,
        settings,
        transport,
        sealer,
        certs: opts.certs.clone(),
    })
}

/// The embedded store, or the PostgreSQL that `--store` names (also returned as itself, for
/// the transport's outbox). Deliveries to `relayed` members start in the outbox.
async fn open_store(
    opts: &ServeOptions,
    relayed: Vec<MemberId>,
) -> Result<(Arc<dyn Store>, Option<Arc<PgStore>>), ServeError> {
    Ok(match &opts.store {
        None => {
            let mut store_opts = StoreOptions::new(opts.data.join("simpul.db"));
            store_opts.busy_timeout = opts.store_busy_timeout;
            (Arc::new(SqliteStore::open(store_opts)?), None)
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let mut pg = PgOptions::new(url.clone());
            pg.retention = opts.retention;
            pg.relayed = relayed;
            tracing::info!(store = %crate::store::redact(url), "using PostgreSQL");
            let pg = Arc::new(PgStore::connect(pg).await?);
            (pg.clone(), Some(pg))
        }
        Some(other) => {
            return Err(ServeError::StoreUrl(crate::store::redact(other)));
        }
    })
}

/// A bus serving in the background: the one way a bus is started (the CLI, the demo, the
/// benchmark and tests all come through [`spawn`]).
pub struct RunningServer {
    /// The bound address (the real port when `listen` asked for port 0).
    pub addr: SocketAddr,
    closing: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, lets requests in flight finish, flushes the store, then returns.
    pub async fn stop(self) {
        self.closing.send_replace(true);
        let _ = self.task.await;
    }

    /// Runs until `shutdown` resolves, then stops as [`RunningServer::stop`] does.
    pub async fn stop_on(self, shutdown: impl Future<Output = ()>) {
        let RunningServer {
            closing, mut task, ..
        } = self;
        // The serving task ends by itself only if it failed; then nothing is left to stop.
        let ended = tokio::select! {
            _ = shutdown => false,
            _ = &mut task => true,
        };
        if !ended {
            closing.send_replace(true);
            let _ = task.await;
        }
    }
}

/// Validates everything, binds the listener and serves in a background task.
pub async fn spawn(opts: ServeOptions) -> Result<RunningServer, ServeError> {
    crate::telemetry::handle();
    let metrics = match opts.metrics_listen {
        Some(addr) if !addr.ip().is_loopback() => return Err(ServeError::MetricsNotLoopback(addr)),
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Listen { addr, source })?,
        ),
        None => None,
    };
    let p = prepare(&opts).await?;
    let listener = TlsListener::bind(opts.listen, &p.tls, &p.settings)
        .await
        .map_err(|source| ServeError::Listen {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, instance = %p.state.node.registry.instance, "serving");
    let closing = p.state.closing.clone();
    if let Some(l) = metrics {
        tracing::info!(addr = %l.local_addr()?, "metrics on plain HTTP (loopback)");
        tokio::spawn(trust::serve_metrics(l, p.state.clone()));
    }
    let task = tokio::spawn(run(p, listener, opts.conn));
    Ok(RunningServer {
        addr,
        closing,
        task,
    })
}

/// `simpul serve`: serves until `shutdown` resolves, then drains and flushes. Prints the bound
/// address on stdout (`simpul listening on https://…`) so scripts can use port 0.
pub async fn serve(
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let server = spawn(opts).await?;
    println!("simpul listening on https://{}", server.addr);
    server.stop_on(shutdown).await;
    Ok(())
}

/// Serves a prepared bus on `listener` until its state's `closing` turns true, then lets
/// requests in flight finish and flushes the store.
async fn run(p: Prepared, listener: TlsListener, conn: ConnOptions) {
    let verifier = p.tls.verifier.clone();
    let v = verifier.clone();
    p.state.add_readiness(Arc::new(move || v.crl_health()));
    let presence = p.state.node.presence.clone();
    p.state
        .add_degradation(Arc::new(move || presence.expiring()));
    let presence = p.state.node.presence.clone();
    p.state.gauges.add(Arc::new(move || {
        for (m, days) in presence.expiry_days() {
            crate::telemetry::certificate_expiry(&m, days);
        }
    }));
    let upkeep = tokio::spawn(crate::telemetry::upkeep());
    let ocsp = p.tls.ocsp.clone().map(|o| {
        let health = o.clone();
        p.state.add_degradation(Arc::new(move || health.health()));
        tokio::spawn(o.run())
    });
    if let Some(t) = p.transport {
        // The broker is given the first CRL (the development CA's).
        let crl = p
            .settings
            .crl_files
            .first()
            .map(|f| (f.clone(), verifier.reloads()));
        if let Err(e) = t.start(&p.state, crl) {
            tracing::error!(error = %e, "the AMQP transport did not start");
        }
    }
    let watcher = tokio::spawn(trust::watch_crl(verifier.clone()));
    let rotation = tokio::spawn(trust::watch_keys(
        p.tls.cert.clone(),
        p.state.node.signer.clone(),
        p.certs.clone(),
    ));
    let sealing = tokio::spawn(p.sealer.clone().run());
    let shutdown = p.state.closing.subscribe();
    http::serve(
        listener,
        api::app(p.state.clone()),
        conn,
        Some(verifier),
        p.state.node.presence.clone(),
        shutdown,
    )
    .await;
    watcher.abort();
    rotation.abort();
    upkeep.abort();
    if let Some(o) = ocsp {
        o.abort();
    }
    sealing.abort();
    tracing::info!("stopped serving; sealing the audit and flushing the store");
    if let Err(e) = p.sealer.flush().await {
        tracing::warn!(error = %e, "the audit's last records stay unsealed until the next start");
    }
    p.store.close().await;
}
