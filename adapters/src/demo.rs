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
use bus::identity::{MemberId, Peer};
use bus::server::{ServeOptions, prepare};
use bus::store::Store;
use bus::tls::TlsListener;
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

use crate::agency::{AdapterError, Agency, envelope};
use crate::eabsen::simulator::{EabsenSimulator, PEGAWAI};
use crate::eabsen::{EabsenAdapter, EabsenConfig};
use crate::hr::HrReader;
use crate::link::{Link, expect};
use crate::portal::Portal;
use crate::siak::simulator::{SiakSimulator, seed};
use crate::siak::{SiakAdapter, SiakConfig, SiakSystem};
use crate::sipanse::simulator::SipanseSimulator;
use crate::sipanse::{SipanseAdapter, SipanseSystem};
use crate::trace::Trace;

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
    pub portal_statuses: Vec<String>,
    pub attendance_first_import: usize,
    pub attendance_reimport_new: usize,
    pub hr_feed_events: usize,
    pub recap: Value,
}

/// A running in-process bus.
pub struct RunningBus {
    pub base: String,
    pub certs: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
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
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1000,
            store_busy_timeout: Duration::from_secs(2),
        };
        std::fs::create_dir_all(&opts.data)?;
        let p = prepare(&opts)?;
        let listener = TlsListener::bind(opts.listen, p.tls.clone(), &p.settings).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = bus::api::app(p.state.clone()).into_make_service_with_connect_info::<Peer>();
        let store = p.store.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            store.close().await;
        });
        Ok(RunningBus {
            base: format!("https://{addr}"),
            certs: opts.certs,
            stop: Some(tx),
            task,
        })
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
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
        tokio::spawn(siak.clone().run(stop_rx.clone())),
        tokio::spawn(sipanse.clone().run(stop_rx.clone())),
        tokio::spawn(eabsen.clone().run(stop_rx.clone())),
    ];
    trace.note(
        "adapters running: SIAK (GOV/dukcapil), SIPANSE (GOV/dpmptsp), e-absen (GOV/bkpsdm/eabsen)",
    );

    let r = async {
        g2g(&mut s, &siak_sim, &hr, &sipanse.link, trace).await?;
        g2b(&mut s, &sipanse_sim, &biz, trace).await?;
        g2c(&mut s, &siak_sim, &portal, trace).await?;
        g2e(&mut s, &device, &eabsen, &hr, trace).await?;
        for (name, h) in [
            ("SIAK", siak.link.outbox.health()),
            ("SIPANSE", sipanse.link.outbox.health()),
            ("e-absen", eabsen.link.outbox.health()),
            ("portal", portal.link.outbox.health()),
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

async fn g2g(
    s: &mut Summary,
    siak_sim: &SiakSimulator,
    hr: &HrReader,
    dpmptsp: &Link,
    trace: &Trace,
) -> Result<(), DemoError> {
    trace.note("\n== G2G: agencies ask Dukcapil, and are told about deaths ==");
    let a = hr
        .link
        .ask(
            "siak.penduduk.verify",
            json!({ "nik": seed::AHMAD, "nama": "Ahmad Hidayat", "tanggal_lahir": "1978-03-12" }),
        )
        .await?;
    s.verify_status = a["status"].as_str().unwrap_or_default().to_owned();
    trace.hop(
        HrReader::MEMBER,
        "GOV/dukcapil",
        "siak.penduduk.verify",
        &format!("answer {a}"),
    );
    let a = dpmptsp
        .ask(
            "siak.penduduk.verify",
            json!({ "nik": seed::DEWI_2, "nama": "DEWI LESTARI" }),
        )
        .await?;
    s.duplicate_status = a["status"].as_str().unwrap_or_default().to_owned();
    trace.hop(
        SipanseAdapter::MEMBER,
        "GOV/dukcapil",
        "siak.penduduk.verify",
        &format!(
            "answer status {} (same person under two NIKs)",
            s.duplicate_status
        ),
    );
    let a = dpmptsp
        .ask("siak.penduduk.get", json!({ "nik": seed::SITI }))
        .await?;
    s.get_fields_for_dpmptsp = a
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    trace.hop(
        SipanseAdapter::MEMBER,
        "GOV/dukcapil",
        "siak.penduduk.get",
        &format!("record cut to grant: fields {:?}", s.get_fields_for_dpmptsp),
    );

    siak_sim
        .catat_kematian(
            seed::AHMAD,
            "20-11-2026",
            "RSUD KOTA BANDUNG",
            "3204-KM-20112026-0007",
        )
        .map_err(sim)?;
    trace.note("  SIAK clerk records a death (native change log: MATI)");
    let deaths = until("HR receiving the death", LIMIT, || async move {
        let got = hr.take_inbox(Duration::from_secs(1)).await?;
        let n = got
            .iter()
            .filter(|(t, _)| t == "siak.penduduk.meninggal")
            .count();
        Ok((n > 0).then_some(n))
    })
    .await?;
    s.hr_deaths = deaths;
    trace.hop(
        "GOV/dukcapil",
        HrReader::MEMBER,
        "siak.penduduk.meninggal",
        "received and acked by HR",
    );
    Ok(())
}

async fn g2b(
    s: &mut Summary,
    sipanse_sim: &SipanseSimulator,
    biz: &Client,
    trace: &Trace,
) -> Result<(), DemoError> {
    trace.note("\n== G2B: a business applies for a permit and follows it ==");
    let id = Uuid::now_v7();
    let ev = envelope(
        id,
        "sipanse.izin.permohonan",
        json!({
            "nib": "8120000123456", "npwp": "013121660091000",
            "pemohon": { "nik": seed::BUDI, "nama": "Budi Santoso" },
            "jenis_izin": "Izin Usaha Mikro Kecil", "kbli": ["47111"], "kbli_versi": "2020",
            "lokasi": "3273011001",
            "lampiran": [{ "nama": "denah.pdf", "uri": "https://berkas.contoh.id/denah.pdf",
                           "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }]
        }),
        None,
    );
    let a = biz.send(&ev).await.map_err(AdapterError::from)?;
    expect(&a, 202)?;
    trace.hop(
        BIZ,
        SipanseAdapter::MEMBER,
        "sipanse.izin.permohonan",
        "202 accepted",
    );
    let mut statuses: Vec<String> = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while !statuses
        .iter()
        .any(|s| s == "diverifikasi" || s == "ditolak")
    {
        for d in notices(biz, deadline, "the verification notice").await? {
            let st = d["status"].as_str().unwrap_or_default().to_owned();
            trace.hop(SipanseAdapter::MEMBER, BIZ, "sipanse.izin.status", &st);
            statuses.push(st);
        }
    }
    let p = sipanse_sim
        .cari_referensi(&format!("{BIZ}|{id}"))
        .map_err(sim)?
        .ok_or_else(|| sim("application not in SIPANSE"))?;
    sipanse_sim
        .putuskan(&p.no_registrasi, true, "memenuhi syarat")
        .map_err(sim)?;
    let no = sipanse_sim.terbitkan(&p.no_registrasi).map_err(sim)?;
    trace.note(&format!(
        "  SIPANSE officer approves {} and issues permit {no}",
        p.no_registrasi
    ));
    let deadline = Instant::now() + LIMIT;
    while !statuses.iter().any(|s| s == "terbit") {
        for d in notices(biz, deadline, "the issue notice").await? {
            let st = d["status"].as_str().unwrap_or_default().to_owned();
            if let Some(n) = d["nomor_izin"].as_str() {
                s.permit_number = Some(n.to_owned());
            }
            trace.hop(
                SipanseAdapter::MEMBER,
                BIZ,
                "sipanse.izin.status",
                &format!("{st} {}", d["nomor_izin"].as_str().unwrap_or_default()),
            );
            statuses.push(st);
        }
    }
    s.permit_statuses = statuses;
    let w = envelope(
        Uuid::now_v7(),
        "sipanse.izin.penarikan",
        json!({ "permohonan_id": id.to_string(), "alasan": "salah lokasi" }),
        None,
    );
    let a = biz.send(&w).await.map_err(AdapterError::from)?;
    expect(&a, 200)?;
    s.late_withdrawal = a.body["data"].clone();
    trace.hop(
        BIZ,
        SipanseAdapter::MEMBER,
        "sipanse.izin.penarikan",
        &format!("answer {}", s.late_withdrawal),
    );
    Ok(())
}

async fn g2c(
    s: &mut Summary,
    siak_sim: &SiakSimulator,
    portal: &Portal,
    trace: &Trace,
) -> Result<(), DemoError> {
    trace.note("\n== G2C: the city portal files a citizen's KTP request to Dukcapil ==");
    let id = portal.ajukan(seed::SITI, "ktp", "KTP rusak, cetak ulang")?;
    let mut statuses = Vec::new();
    let deadline = Instant::now() + LIMIT;
    let no = loop {
        let mut no = None;
        for n in portal.sync(Duration::from_millis(500)).await? {
            statuses.push(n["status"].as_str().unwrap_or_default().to_owned());
            no = n["nomor_registrasi"].as_str().map(str::to_owned);
        }
        if let Some(no) = no {
            break no;
        }
        if Instant::now() >= deadline {
            return Err(DemoError::Timeout("the request to reach SIAK", LIMIT));
        }
    };
    siak_sim
        .proses_layanan(&no, "SELESAI", "KTP-el tercetak, ambil di kecamatan")
        .map_err(sim)?;
    trace.note("  SIAK clerk completes the request (native LAYANAN: SELESAI)");
    let deadline = Instant::now() + LIMIT;
    while !statuses.iter().any(|s| s == "selesai") {
        for n in portal.sync(Duration::from_millis(500)).await? {
            statuses.push(n["status"].as_str().unwrap_or_default().to_owned());
        }
        if Instant::now() >= deadline {
            return Err(DemoError::Timeout("the completion notice", LIMIT));
        }
    }
    trace.note(&format!(
        "  the citizen sees: {}",
        portal.status(id)?.unwrap_or_default()
    ));
    s.portal_statuses = statuses;
    Ok(())
}

async fn g2e(
    s: &mut Summary,
    device: &EabsenSimulator,
    eabsen: &EabsenAdapter,
    hr: &HrReader,
    trace: &Trace,
) -> Result<(), DemoError> {
    trace.note("\n== G2E: attendance from a fingerprint device and a phone to HR ==");
    let day = "2026-11-23";
    for (pin, t, st) in [
        ("1", "07:01:02", 0),
        ("2", "07:12:40", 0),
        ("23", "07:30:00", 0),
        ("1", "16:05:10", 1),
    ] {
        device
            .scan(pin, &format!("{day} {t}"), st, 1)
            .map_err(sim)?;
    }
    let export = device.export_attlog().map_err(sim)?;
    let r = eabsen.import_attlog(&export)?;
    s.attendance_first_import = r.queued;
    let again = eabsen.import_attlog(&export)?;
    s.attendance_reimport_new = again.queued;
    let push = device.next_push().map_err(sim)?;
    eabsen.import_push(&device.serial, &push)?;
    eabsen.check_in(&json!({
        "nip": "199009132025242014", "waktu": format!("{day}T07:55:00+07:00"),
        "lat": -6.9175, "lon": 107.6191,
        "foto_sha256": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
    }))?;
    eabsen.link.flush().await?;
    let expected = s.attendance_first_import + 1;
    let mut total = 0;
    let deadline = Instant::now() + LIMIT;
    while total < expected {
        total += hr.read_feed("eabsen.kehadiran.tercatat", 2, 10).await?.new;
        if total < expected {
            if Instant::now() >= deadline {
                return Err(DemoError::Timeout("HR reading the attendance feed", LIMIT));
            }
            eabsen.link.flush().await?;
        }
    }
    s.hr_feed_events = total;
    trace.hop(
        "feed",
        HrReader::MEMBER,
        "eabsen.kehadiran.tercatat",
        &format!("{total} events read by cursor (pages of 2)"),
    );
    let recap = hr
        .link
        .ask(
            "eabsen.rekap.harian",
            json!({ "unit": "DISKOMINFO", "tanggal": day }),
        )
        .await?;
    trace.hop(
        HrReader::MEMBER,
        EabsenAdapter::MEMBER,
        "eabsen.rekap.harian",
        &format!("answer {recap}"),
    );
    s.recap = recap;
    Ok(())
}

/// One pull of the business's inbox (waiting up to a second), acknowledging what it got.
async fn notices(
    biz: &Client,
    deadline: Instant,
    what: &'static str,
) -> Result<Vec<Value>, DemoError> {
    let a = biz
        .pull(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .map_err(AdapterError::from)?;
    expect(&a, 200)?;
    let mut got = Vec::new();
    for m in a.body["messages"].as_array().into_iter().flatten() {
        let ev = &m["event"];
        got.push(ev["data"].clone());
        if let Some(id) = ev["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()) {
            biz.ack(id).await.map_err(AdapterError::from)?;
        }
    }
    if got.is_empty() && Instant::now() >= deadline {
        return Err(DemoError::Timeout(what, LIMIT));
    }
    Ok(got)
}

/// Runs the demo in `dir`, or in a fresh temporary directory removed afterwards.
pub async fn run_in(
    registry: &Path,
    dir: Option<&Path>,
    trace: Trace,
) -> Result<Summary, DemoError> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            run(registry, d, trace).await
        }
        None => {
            let tmp = tempfile::tempdir()?;
            run(registry, tmp.path(), trace).await
        }
    }
}
