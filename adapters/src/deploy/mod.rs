//! `simpul adapter run`: one agency's adapter as a long-running process next to its system,
//! from one configuration file ([`config`]).
//!
//! It opens the outbox and id key in the state directory, links to the bus (moving to the next
//! configured node when one fails), starts the agency's native side (for e-absen, the terminals'
//! push endpoint on the LAN), serves its inbox through [`crate::runner`], and answers
//! `GET /healthz` on a loopback port with the outbox backlog, the last forward and the last
//! error. On stop (SIGTERM, Ctrl-C) it lets the work in hand finish and forwards the outbox.

pub mod config;
pub mod simulate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::routing::get;
use serde_json::json;
use tokio::sync::watch;

use crate::agency::{AdapterError, Agency};
use crate::eabsen::{EabsenAdapter, EabsenConfig, iclock};
use crate::hr::HrReader;
use crate::link::Link;
use crate::portal::Portal;
use crate::runner::{self, InboxHandler};
use crate::siak::simulator::SiakSimulator;
use crate::siak::webservice::SiakWebService;
use crate::siak::{SiakAdapter, SiakConfig, SiakSystem};
use crate::sipanse::api::SipanseApi;
use crate::sipanse::simulator::SipanseSimulator;
use crate::sipanse::{SipanseAdapter, SipanseSystem};
use crate::trace::Trace;
use config::{AgencyKind, Config, Native};

/// Runs the configured adapter until `stop` turns true. Returns once the outbox was forwarded
/// (or could not be, the backlog staying for the next start).
pub async fn run(cfg: Config, stop: watch::Receiver<bool>) -> Result<(), AdapterError> {
    std::fs::create_dir_all(&cfg.state_dir)
        .map_err(|e| AdapterError::Native(format!("state_dir {}: {e}", cfg.state_dir.display())))?;
    match (cfg.agency, &cfg.native) {
        (AgencyKind::Siak, native) => {
            let system: Arc<dyn SiakSystem> = match native {
                Native::Simulator(db) => {
                    Arc::new(SiakSimulator::open_seeded(&parent_made(db)?).map_err(|e| {
                        failed(format_args!("SIAK simulator {}: {e}", db.display()))
                    })?)
                }
                Native::Remote(r) => {
                    Arc::new(SiakWebService::new(&r.url, r.account.clone(), &r.ip_user)?)
                }
                _ => return Err(mismatch()),
            };
            let a = SiakAdapter::new(SiakConfig::default(), system, link::<SiakAdapter>(&cfg)?);
            serve(Arc::new(a), &cfg, stop, None).await
        }
        (AgencyKind::Sipanse, native) => {
            let system: Arc<dyn SipanseSystem> = match native {
                Native::Simulator(db) => {
                    Arc::new(SipanseSimulator::open(&parent_made(db)?).map_err(|e| {
                        failed(format_args!("SIPANSE simulator {}: {e}", db.display()))
                    })?)
                }
                Native::Remote(r) => Arc::new(SipanseApi::new(&r.url, r.account.clone())?),
                _ => return Err(mismatch()),
            };
            let a = SipanseAdapter::new(system, link::<SipanseAdapter>(&cfg)?);
            serve(Arc::new(a), &cfg, stop, None).await
        }
        (AgencyKind::Eabsen, Native::Eabsen(side)) => {
            let config = EabsenConfig {
                offset: side.offset,
            };
            let a = Arc::new(EabsenAdapter::new(config, link::<EabsenAdapter>(&cfg)?)?);
            for (pin, nip, unit) in &side.pegawai {
                a.set_pegawai(pin, nip, unit)?;
            }
            let devices = side.devices.iter().cloned().collect();
            let lan = (side.listen, iclock::router(a.clone(), devices), "terminals");
            serve(a, &cfg, stop, Some(lan)).await
        }
        (AgencyKind::Portal, Native::Portal(addr)) => {
            let p = Arc::new(Portal::new(link::<Portal>(&cfg)?)?);
            let intake = (
                *addr,
                crate::portal::intake(p.clone()),
                "portal application",
            );
            serve(p, &cfg, stop, Some(intake)).await
        }
        (AgencyKind::Hr, Native::None) => {
            let hr = HrReader::new(link::<HrReader>(&cfg)?)?;
            serve(Arc::new(hr), &cfg, stop, None).await
        }
        _ => Err(mismatch()),
    }
}

fn failed(e: std::fmt::Arguments) -> AdapterError {
    AdapterError::Native(e.to_string())
}

fn mismatch() -> AdapterError {
    AdapterError::Protocol("the configuration's native side is not this agency's".into())
}

/// `db`, once its directory exists.
fn parent_made(db: &Path) -> Result<PathBuf, AdapterError> {
    if let Some(dir) = db.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| failed(format_args!("simulator {}: {e}", dir.display())))?;
    }
    Ok(db.to_owned())
}

/// The link for agency `A`: its outbox and id key in the state directory, a client per node.
fn link<A: Agency>(cfg: &Config) -> Result<Link, AdapterError> {
    let outbox = cfg
        .state_dir
        .join(format!("{}.db", A::MEMBER.replace('/', "_")));
    let clients = cfg
        .bus
        .iter()
        .map(|b| bus::client::Client::new(b, &cfg.ca, &cfg.cert, &cfg.key))
        .collect::<Result<Vec<_>, _>>()?;
    Link::with_clients(A::MEMBER, clients, &outbox, Trace::quiet())
}

/// Serves `a` (and its LAN side, if any) and its health endpoint until `stop`.
async fn serve<A: InboxHandler>(
    a: Arc<A>,
    cfg: &Config,
    stop: watch::Receiver<bool>,
    native: Option<(SocketAddr, axum::Router, &str)>,
) -> Result<(), AdapterError> {
    let mut tasks = Vec::new();
    let bound = |addr: SocketAddr, what: &str| {
        let what = what.to_owned();
        async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| AdapterError::Native(format!("{what} {addr}: {e}")))
        }
    };
    // The bound addresses go to stdout, so scripts (and tests) can configure port 0.
    let local = |l: &tokio::net::TcpListener| {
        l.local_addr()
            .map_err(|e| AdapterError::Native(e.to_string()))
    };
    let health = bound(cfg.health, "health").await?;
    println!("health on http://{}/healthz", local(&health)?);
    tasks.push(tokio::spawn(until(
        health,
        health_router(a.clone()),
        stop.clone(),
    )));
    if let Some((addr, router, who)) = native {
        let listener = bound(addr, who).await?;
        println!("{who} on http://{}/", local(&listener)?);
        tasks.push(tokio::spawn(until(listener, router, stop.clone())));
    }
    tracing::info!(adapter = A::NAME, member = A::MEMBER, bus = ?cfg.bus, state = %cfg.state_dir.display(), "adapter running");
    runner::run(a, stop).await;
    for t in tasks {
        let _ = t.await;
    }
    tracing::info!(adapter = A::NAME, "adapter stopped");
    Ok(())
}

/// Serves `router` on `listener` until `stop`, letting requests in hand finish.
pub async fn until(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "listener failed");
    }
}

fn health_router<A: InboxHandler>(a: Arc<A>) -> axum::Router {
    axum::Router::new().route(
        "/healthz",
        get(move || {
            let a = a.clone();
            async move {
                let link = a.link();
                let outbox = link.outbox.health().ok();
                Json(json!({
                    "adapter": A::NAME,
                    "member": A::MEMBER,
                    "bus": link.bus(),
                    "outbox": outbox,
                    "last_error": link.last_error().map(|(at, error)| json!({ "at": at, "error": error })),
                }))
            }
        }),
    )
}
