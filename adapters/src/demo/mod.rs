//! `simpul demo`: the bus, the three adapters with their simulators, the portal, a business
//! and HR, all in one process over real mTLS, running the four flows and printing a trace.
//!
//! Nothing is faked between the parts: every hop goes through the bus's HTTP API with the
//! member's own development certificate. Only the agency systems are simulators.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::api::ApiConfig;
use bus::client::Client;
use bus::identity::MemberId;
use bus::server::{RunningServer, ServeOptions};
use serde_json::Value;
use tokio::sync::watch;

use crate::agency::{AdapterError, Agency, Declared};
use crate::eabsen::simulator::{EabsenSimulator, PEGAWAI};
use crate::eabsen::{EabsenAdapter, EabsenConfig};
use crate::hr::HrReader;
use crate::link::Link;
use crate::portal::Portal;
use crate::siak::simulator::SiakSimulator;
use crate::siak::{SiakAdapter, SiakConfig, SiakSystem};
use crate::sipanse::simulator::SipanseSimulator;
use crate::sipanse::{SipanseAdapter, SipanseSystem};
use crate::trace::Trace;

mod flows;
pub use flows::slawe_requests;
pub mod example;
use flows::{g2b, g2c, g2e, g2g};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("bus: {0}")]
    Serve(#[from] bus::server::ServeError),
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("simulator: {0}")]
    Simulator(String),
    #[error("{0} did not happen within {1:?}")]
    Timeout(&'static str, Duration),
}

pub const BIZ: &str = "COM/8120000123456";

/// What the demo established, for its test to check.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub verify_status: String,
    pub duplicate_status: String,
    pub get_fields_for_dpmptsp: Vec<String>,
    pub hr_deaths: usize,
    pub permit_statuses: Vec<String>,
    pub permit_number: Option<String>,
    pub late_withdrawal: Value,
    /// Each service's statuses as the portal received them.
    pub portal_statuses: std::collections::BTreeMap<String, Vec<String>>,
    /// What SIAK recorded for the mobile registration van's booking.
    pub dukling_booking: Value,
    pub attendance_first_import: usize,
    pub attendance_reimport_new: usize,
    pub hr_feed_events: usize,
    pub recap: Value,
}

/// A running in-process bus.
pub struct RunningBus {
    pub base: String,
    pub certs: PathBuf,
    server: RunningServer,
}

impl RunningBus {
    /// Starts the bus on `registry` with a fresh dev PKI under `dir`, on a free port.
    pub async fn start(registry: &Path, dir: &Path) -> Result<RunningBus, DemoError> {
        let opts = ServeOptions {
            registry: registry.to_owned(),
            certs: dir.join("certs"),
            data: dir.join("data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api: ApiConfig {
                query_timeout: Duration::from_secs(15),
                ..ApiConfig::default()
            },
            max_connections: 1000,
            ..ServeOptions::default()
        };
        let certs = opts.certs.clone();
        let server = bus::server::spawn(opts).await?;
        Ok(RunningBus {
            base: format!("https://{}", server.addr),
            certs,
            server,
        })
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// Polls `f` every 50 ms until it yields `Some`, for at most `limit`.
pub async fn until<T, F, Fut>(what: &'static str, limit: Duration, mut f: F) -> Result<T, DemoError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, AdapterError>>,
{
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() >= end {
            return Err(DemoError::Timeout(what, limit));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const LIMIT: Duration = Duration::from_secs(20);

fn link(bus: &RunningBus, dir: &Path, member: &str, trace: &Trace) -> Result<Link, AdapterError> {
    let file = dir.join(format!("{}.db", member.replace('/', "_")));
    Link::open(&bus.base, &bus.certs, member, &file, trace.clone())
}

fn sim<E: std::fmt::Display>(e: E) -> DemoError {
    DemoError::Simulator(e.to_string())
}

/// Runs the whole demo in `dir` (certificates, bus store, simulator and adapter databases).
pub async fn run(registry: &Path, dir: &Path, trace: Trace) -> Result<Summary, DemoError> {
    let bus = RunningBus::start(registry, dir).await?;
    trace.note(&format!(
        "bus listening on {} (mTLS, dev PKI in {})",
        bus.base,
        bus.certs.display()
    ));
    let result = flows(&bus, dir, &trace).await;
    bus.stop().await;
    result
}

async fn flows(bus: &RunningBus, dir: &Path, trace: &Trace) -> Result<Summary, DemoError> {
    let mut s = Summary::default();
    let (stop_tx, stop_rx) = watch::channel(false);

    let siak_sim = Arc::new(SiakSimulator::open_seeded(&dir.join("sim-siak.db")).map_err(sim)?);
    let siak = Arc::new(SiakAdapter::new(
        SiakConfig::default(),
        siak_sim.clone() as Arc<dyn SiakSystem>,
        link(bus, dir, SiakAdapter::MEMBER, trace)?,
    ));
    let sipanse_sim = Arc::new(SipanseSimulator::open(&dir.join("sim-sipanse.db")).map_err(sim)?);
    let sipanse = Arc::new(SipanseAdapter::new(
        sipanse_sim.clone() as Arc<dyn SipanseSystem>,
        link(bus, dir, SipanseAdapter::MEMBER, trace)?,
    ));
    let eabsen = Arc::new(EabsenAdapter::new(
        EabsenConfig::default(),
        link(bus, dir, EabsenAdapter::MEMBER, trace)?,
    )?);
    for (pin, nip, unit, _) in PEGAWAI {
        eabsen.set_pegawai(pin, nip, unit)?;
    }
    let device =
        EabsenSimulator::open(&dir.join("sim-device.db"), "1", "CQZ7231160002").map_err(sim)?;
    let hr = HrReader::new(link(bus, dir, HrReader::MEMBER, trace)?)?;
    let portal = Portal::new(link(bus, dir, Portal::MEMBER, trace)?)?;
    let biz = Client::for_member(&bus.base, &bus.certs, &MemberId::parse(BIZ).map_err(sim)?)
        .map_err(AdapterError::from)?;
    let tasks = vec![
        tokio::spawn(crate::runner::run(siak.clone(), stop_rx.clone())),
        tokio::spawn(crate::runner::run(sipanse.clone(), stop_rx.clone())),
        tokio::spawn(crate::runner::run(eabsen.clone(), stop_rx.clone())),
    ];
    let running: Vec<String> = [
        Declared::of::<SiakAdapter>(),
        Declared::of::<SipanseAdapter>(),
        Declared::of::<EabsenAdapter>(),
    ]
    .iter()
    .map(|a| format!("{} ({})", a.name, a.member))
    .collect();
    trace.note(&format!("adapters running: {}", running.join(", ")));

    let r = async {
        g2g(&mut s, &siak_sim, &hr, &sipanse.link, trace).await?;
        g2b(&mut s, &sipanse_sim, &biz, trace).await?;
        g2c(&mut s, &siak_sim, &portal, trace).await?;
        g2e(&mut s, &device, &eabsen, &hr, trace).await?;
        for (name, h) in [
            (SiakAdapter::NAME, siak.link.outbox.health()),
            (SipanseAdapter::NAME, sipanse.link.outbox.health()),
            (EabsenAdapter::NAME, eabsen.link.outbox.health()),
            (Portal::NAME, portal.link.outbox.health()),
        ] {
            let h = h.map_err(AdapterError::from)?;
            trace.note(&format!(
                "outbox {name:<8} backlog {} rejected {} last forward {}",
                h.backlog,
                h.rejected,
                h.last_forward_at.as_deref().unwrap_or("never")
            ));
        }
        Ok::<_, DemoError>(())
    }
    .await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    r.map(|()| s)
}

/// Runs the demo in `dir`, or in a fresh temporary directory removed afterwards, with the
/// registry at `registry` or, without one, the built-in example ([`example`]).
pub async fn run_in(
    registry: Option<&Path>,
    dir: Option<&Path>,
    trace: Trace,
) -> Result<Summary, DemoError> {
    let tmp;
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path()
        }
    };
    let registry = match registry {
        Some(r) => r.to_owned(),
        None => {
            trace
                .note("no registry named and none here: the built-in example registry and schemas");
            example::write(dir)?
        }
    };
    run(&registry, dir, trace).await
}
