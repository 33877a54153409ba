//! The scenarios of issue 3, each measured together with its echo ceiling in the same run.
//!
//! Every scenario starts its own servers in a fresh temp dir (PKI, data), runs the echo
//! ceiling first and the bus second with the same request and the same load settings (never
//! both at once: they would share the two cores), and prints one JSON line per result.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use bus::identity::MemberId;

use crate::conn::{Conn, Proto, Target};
use crate::generate;
use crate::load::{self, Rate, Req, Spec, Stats, WorkerStats};
use crate::payload::{self, Template};
use crate::report::Line;
use crate::server::Server;

/// Members of the repository's registry that the scenarios act as.
pub(crate) const PORTAL: &str = "GOV/portal";
pub(crate) const DUKCAPIL: &str = "GOV/dukcapil";
const DPMPTSP: &str = "GOV/dpmptsp";

/// Load settings and scenario parameters (the `run` command's flags).
#[derive(Debug, Clone)]
pub struct Opts {
    pub registry: PathBuf,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub streams: usize,
    pub proto: Proto,
    pub rate: Option<f64>,
    pub rates: Vec<f64>,
    pub size: usize,
    pub batch: usize,
    pub consumers: usize,
    pub members: Vec<usize>,
    pub sizes: Vec<usize>,
    pub backlog: u64,
    pub schemas: usize,
    pub max_body: usize,
    pub store: Option<String>,
    pub nodes: Vec<usize>,
    pub amqp: Option<String>,
    pub amqp_management: Option<String>,
    pub amqp_certs: Option<PathBuf>,
    pub windows: Vec<usize>,
    pub channels: Vec<usize>,
    /// `accept` only: scrape `/metrics` as the operator this often during the run.
    pub scrape: Option<Duration>,
}

impl Opts {
    pub(crate) fn spec(&self, rate: Rate) -> Spec {
        Spec {
            connections: self.connections,
            streams: self.streams,
            rate,
            warmup: self.warmup,
            duration: self.duration,
        }
    }

    pub(crate) fn base_line(&self, scenario: impl Into<String>) -> Line {
        let mut l = Line::new(scenario);
        l.proto = Some(self.proto);
        l.connections = Some(self.connections);
        l.duration_s = Some(self.duration.as_secs_f64());
        l
    }
}

/// A run's temp dir with a dev PKI for a registry.
pub(crate) struct Env {
    dir: tempfile::TempDir,
    registry: PathBuf,
    instance: String,
}

impl Env {
    /// The repository's registry with certificates for all its members.
    pub(crate) fn repo(registry: &Path) -> anyhow::Result<Env> {
        let reg = bus::registry::Registry::load(registry)
            .with_context(|| format!("load {}", registry.display()))?;
        let members: Vec<MemberId> = reg.members().map(|m| m.id.clone()).collect();
        let dir = tempfile::tempdir()?;
        generate::init_pki(&dir.path().join("certs"), &reg.instance, &members, true)?;
        Ok(Env {
            dir,
            registry: registry.to_owned(),
            instance: reg.instance.clone(),
        })
    }

    /// A copy of the repository's registry in which `amqp` members take `delivery = "amqp"`,
    /// with a copy of `pki` (a CA a broker trusts, with its members' certificates).
    pub(crate) fn with_broker_pki(
        registry: &Path,
        amqp: &[&str],
        pki: &Path,
    ) -> anyhow::Result<Env> {
        let dir = tempfile::tempdir()?;
        let schemas = registry.parent().unwrap_or(Path::new(".")).join("schemas");
        let mut text = std::fs::read_to_string(registry)?.replace(
            "schemas_dir = \"schemas\"",
            &format!("schemas_dir = {schemas:?}"),
        );
        for m in amqp {
            let line = format!("id = \"{m}\"\n");
            anyhow::ensure!(text.contains(&line), "{m} is not in {}", registry.display());
            text = text.replace(&line, &format!("{line}delivery = \"amqp\"\n"));
        }
        let copy = dir.path().join("registry.toml");
        std::fs::write(&copy, text)?;
        let reg = bus::registry::Registry::load(&copy)?;
        let certs = dir.path().join("certs");
        bus::pki::copy_authority(pki, &certs)?;
        // The load generator needs its members' certificates before the bus starts.
        std::fs::create_dir_all(certs.join("members"))?;
        for f in std::fs::read_dir(pki.join("members"))? {
            let f = f?.path();
            std::fs::copy(
                &f,
                certs
                    .join("members")
                    .join(f.file_name().unwrap_or_default()),
            )?;
        }
        Ok(Env {
            dir,
            registry: copy,
            instance: reg.instance.clone(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn registry(&self) -> &Path {
        &self.registry
    }

    /// A generated registry of `n` members and types; certificates for `GOV/m0`, `GOV/m1`.
    fn generated(n: usize) -> anyhow::Result<Env> {
        let dir = tempfile::tempdir()?;
        let registry = generate::registry(dir.path(), n)?;
        let needed = [generate::member(0), generate::member(1 % n)];
        generate::init_pki(
            &dir.path().join("certs"),
            generate::INSTANCE,
            &needed,
            false,
        )?;
        Ok(Env {
            dir,
            registry,
            instance: generate::INSTANCE.to_owned(),
        })
    }

    pub(crate) fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// A bus with a fresh data dir (`tag` keeps several buses of one run apart).
    fn bus(&self, tag: &str, max_body: usize) -> anyhow::Result<Server> {
        let data = self.dir.path().join(format!("data-{tag}"));
        Server::bus(&self.registry, &self.certs(), &data, max_body, None)
    }

    /// `n` nodes of one bus on the PostgreSQL schema `store` names.
    pub(crate) fn nodes(
        &self,
        tag: &str,
        n: usize,
        o: &Opts,
        store: &str,
    ) -> anyhow::Result<Vec<Server>> {
        (0..n)
            .map(|i| {
                let data = self.dir.path().join(format!("data-{tag}-{i}"));
                Server::bus(
                    &self.registry,
                    &self.certs(),
                    &data,
                    o.max_body,
                    Some(store),
                )
            })
            .collect()
    }

    pub(crate) fn target(&self, s: &Server, member: &str, proto: Proto) -> anyhow::Result<Target> {
        let m = MemberId::parse(member)?;
        Ok(Target::new(
            s.addr,
            generate::client_tls(&self.certs(), &m)?,
            proto,
        ))
    }

    /// The echo ceiling for `template` sent by `member`.
    pub(crate) async fn echo(
        &self,
        o: &Opts,
        member: &str,
        template: &Template,
        rate: Rate,
    ) -> anyhow::Result<Stats> {
        let echo = Server::echo(&self.certs(), &self.instance)?;
        let t = self.target(&echo, member, o.proto)?;
        let req = Req::post("/v1/messages", template.clone(), StatusCode::ACCEPTED);
        load::run(&t, &o.spec(rate), req).await
    }

    fn data_mib(&self, tag: &str) -> f64 {
        let dir = self.dir.path().join(format!("data-{tag}"));
        let bytes: u64 = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        bytes as f64 / (1 << 20) as f64
    }
}

fn rate_of(o: &Opts) -> Rate {
    o.rate.map(Rate::Fixed).unwrap_or(Rate::Max)
}

fn name_at(base: &str, rate: Rate) -> String {
    match rate {
        Rate::Max => base.to_owned(),
        Rate::Fixed(r) => format!("{base}@{r}"),
    }
}

/// (a) Durable accept rate: single events, 202 only once fsynced.
pub async fn accept(o: &Opts) -> anyhow::Result<Vec<Line>> {
    let env = Env::repo(&o.registry)?;
    let t = payload::layanan(o.size);
    let rate = rate_of(o);
    let echo = env.echo(o, PORTAL, &t, rate).await?;
    let bus = env.bus("accept", o.max_body)?;
    let target = env.target(&bus, PORTAL, o.proto)?;
    let cpu = bus.cpu_seconds()?;
    let scraper = match o.scrape {
        Some(every) => Some(scrape(&env, &bus, every)?),
        None => None,
    };
    let req = Req::post("/v1/messages", t.clone(), StatusCode::ACCEPTED);
    let stats = load::run(&target, &o.spec(rate), req).await?;
    if let Some(s) = scraper {
        s.abort();
    }
    let name = match o.scrape {
        Some(_) => "accept+scrape",
        None => "accept",
    };
    let mut line = o
        .base_line(name_at(name, rate))
        .with(&stats, Some(&echo), 1);
    line.bus_cpu_s = Some(bus.cpu_seconds()? - cpu);
    line.payload_bytes = Some(t.len());
    if let Rate::Fixed(r) = rate {
        line.offered_per_s = Some(r);
    }
    Ok(vec![line])
}

/// Scrapes `/metrics` as the registry's operator every `every` until aborted, as a
/// Prometheus would (each scrape a new connection, as Prometheus' default keep-alive often is).
fn scrape(env: &Env, bus: &Server, every: Duration) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let op = MemberId::parse("GOV/diskominfo")?;
    let client =
        bus::client::Client::for_member(&format!("https://{}", bus.addr), &env.certs(), &op)?;
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match client.http().get(client.url("/metrics")).send().await {
                Ok(r) if r.status().is_success() => {
                    let _ = r.bytes().await;
                }
                Ok(r) => eprintln!("scrape: HTTP {}", r.status()),
                Err(e) => eprintln!("scrape: {e}"),
            }
        }
    }))
}

/// Throughput and p99 against offered load (the plot): fixed-rate runs of (a) at each rate,
/// the echo at the same rates, and the echo's maximum as the ceiling.
pub async fn sweep(o: &Opts) -> anyhow::Result<Vec<Line>> {
    let env = Env::repo(&o.registry)?;
    let t = payload::layanan(o.size);
    let ceiling = env.echo(o, PORTAL, &t, Rate::Max).await?;
    let mut echo_at = Vec::new();
    for &r in &o.rates {
        echo_at.push(env.echo(o, PORTAL, &t, Rate::Fixed(r)).await?);
    }
    let bus = env.bus("sweep", o.max_body)?;
    let target = env.target(&bus, PORTAL, o.proto)?;
    let mut lines = Vec::new();
    for (&r, e) in o.rates.iter().zip(&echo_at) {
        let req = Req::post("/v1/messages", t.clone(), StatusCode::ACCEPTED);
        let stats = load::run(&target, &o.spec(Rate::Fixed(r)), req).await?;
        let mut line = o
            .base_line(format!("sweep@{r}"))
            .with(&stats, Some(&ceiling), 1);
        line.offered_per_s = Some(r);
        line.payload_bytes = Some(t.len());
        // The echo at the same offered load, for the plot.
        line.accepted_per_s = Some((e.rate() * 10.0).round() / 10.0);
        line.echo_p50_ms = Some(e.pct_ms(50.0));
        line.echo_p99_ms = Some(e.pct_ms(99.0));
        lines.push(line);
    }
    Ok(lines)
}

/// (b) End to end: producers send at the load's rate while consumers pull (100 at a time) and
/// ack every message. Rate and latency are of acks; latency runs from the id's UUIDv7 time
/// (set by the producer when it built the request, 1 ms resolution) to the ack's answer.
pub async fn e2e(o: &Opts) -> anyhow::Result<Vec<Line>> {
    let env = Env::repo(&o.registry)?;
    let t = payload::layanan(o.size);
    let rate = rate_of(o);
    let echo = env.echo(o, PORTAL, &t, Rate::Max).await?;
    let bus = env.bus("e2e", o.max_body)?;
    let producer = env.target(&bus, PORTAL, o.proto)?;
    // Consumers on h2, like the query providers; each pull is acked with one batch ack.
    let consumer = env.target(&bus, DUKCAPIL, Proto::H2)?;
    let start = Instant::now();
    let window = (start + o.warmup, start + o.warmup + o.duration);
    let stop = Arc::new(AtomicBool::new(false));
    let mut consumers = JoinSet::new();
    for _ in 0..o.consumers.max(1) {
        let conn = consumer.connect().await?;
        consumers.spawn(consume(conn, window, stop.clone(), Settle::Ack));
    }
    let cpu = bus.cpu_seconds()?;
    let req = Req::post("/v1/messages", t.clone(), StatusCode::ACCEPTED);
    let sent = load::run(&producer, &o.spec(rate), req).await?;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Stats::default();
    while let Some(w) = consumers.join_next().await {
        acked.merge(w??);
    }
    let acked = acked.finish(o.duration);
    let mut line = o
        .base_line(name_at("e2e", rate))
        .with(&acked, Some(&echo), 1);
    line.accepted_per_s = Some((sent.rate() * 10.0).round() / 10.0);
    line.errors += sent.errors;
    if line.first_error.is_none() {
        line.first_error = sent.first_error.clone();
    }
    line.bus_cpu_s = Some(bus.cpu_seconds()? - cpu);
    line.payload_bytes = Some(t.len());
    Ok(vec![line])
}

/// What a consumer does with each message it leases.
pub(crate) enum Settle {
    /// `POST /v1/inbox/ack` with every id of the pull; latency recorded from each id's time.
    Ack,
    /// `POST /v1/queries/{id}/reply` with this body (a query provider).
    Reply(Bytes),
}

/// Pulls and settles until `stop`, counting settlements finished inside `window`.
pub(crate) async fn consume(
    mut conn: Conn,
    window: (Instant, Instant),
    stop: Arc<AtomicBool>,
    settle: Settle,
) -> anyhow::Result<WorkerStats> {
    let mut w = WorkerStats::default();
    while !stop.load(Ordering::Relaxed) {
        let got = conn
            .expect(
                StatusCode::OK,
                Method::GET,
                "/v1/inbox?max=100&wait=1&lease=60",
                None,
                Bytes::new(),
            )
            .await?;
        let pulled: Pulled = serde_json::from_slice(&got)?;
        let ids: Vec<String> = pulled.messages.into_iter().map(|m| m.event.id).collect();
        let done = match &settle {
            Settle::Ack if ids.is_empty() => Vec::new(),
            Settle::Ack => {
                let body = Bytes::from(serde_json::to_vec(&serde_json::json!({ "ids": ids }))?);
                let ct = Some("application/json");
                let r = conn
                    .expect(StatusCode::OK, Method::POST, "/v1/inbox/ack", ct, body)
                    .await
                    .and_then(|b| all_acked(&b, ids.len()))
                    .map_err(|e| format!("{e:#}"));
                ids.into_iter().map(|id| (id, r.clone())).collect()
            }
            Settle::Reply(body) => replies(&conn, ids, body).await?,
        };
        let now = Instant::now();
        if now < window.0 || now > window.1 {
            continue;
        }
        for (id, r) in done {
            let latency = since_uuid_time(&id);
            w.record(r.is_ok(), latency, || r.unwrap_err());
        }
    }
    Ok(w)
}

/// Only the ids of a pull's answer: the generator shares the cores with the bus, so it skips
/// over the rest instead of building a `Value` of every event.
#[derive(Deserialize)]
struct Pulled {
    messages: Vec<PulledMessage>,
}

#[derive(Deserialize)]
struct PulledMessage {
    event: PulledEvent,
}

#[derive(Deserialize)]
struct PulledEvent {
    id: String,
}

/// Checks that a batch ack answered "acked" for each of its `n` ids.
fn all_acked(body: &[u8], n: usize) -> anyhow::Result<()> {
    let v: Value = serde_json::from_slice(body)?;
    let acked = v["results"]
        .as_array()
        .map_or(0, |r| r.iter().filter(|r| r["state"] == "acked").count());
    anyhow::ensure!(acked == n, "batch ack: {acked} of {n} acked: {v}");
    Ok(())
}

/// A provider's replies to the queries of one pull, each on its own h2 stream, concurrently.
async fn replies(
    conn: &Conn,
    ids: Vec<String>,
    body: &Bytes,
) -> anyhow::Result<Vec<(String, Result<(), String>)>> {
    let mut set = JoinSet::new();
    for id in ids {
        let mut s = conn.stream().context("providers need h2")?;
        let body = body.clone();
        set.spawn(async move {
            let path = format!("/v1/queries/{id}/reply");
            let ct = Some("application/json");
            let r = s
                .expect(StatusCode::OK, Method::POST, &path, ct, body)
                .await;
            (id, r.map(drop).map_err(|e| format!("{e:#}")))
        });
    }
    let mut out = Vec::new();
    while let Some(done) = set.join_next().await {
        out.push(done?);
    }
    Ok(out)
}

/// Time since a UUIDv7's embedded timestamp (millisecond resolution).
fn since_uuid_time(id: &str) -> Duration {
    let ts = uuid::Uuid::parse_str(id)
        .ok()
        .and_then(|u| u.get_timestamp())
        .map(|t| {
            let (s, n) = t.to_unix();
            Duration::new(s, n)
        })
        .unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(ts)
}

/// (c) Synchronous query round trip at fixed rates: a requester asks `siak.penduduk.verify`,
/// Dukcapil's provider loop pulls it and replies, the requester gets the (cut) answer.
pub async fn query(o: &Opts) -> anyhow::Result<Vec<Line>> {
    let env = Env::repo(&o.registry)?;
    let t = payload::verify();
    let echo = env.echo(o, DPMPTSP, &t, Rate::Max).await?;
    let bus = env.bus("query", o.max_body)?;
    let requester = env.target(&bus, DPMPTSP, o.proto)?;
    let provider = env.target(&bus, DUKCAPIL, Proto::H2)?;
    let mut lines = Vec::new();
    for &r in &o.rates {
        let stop = Arc::new(AtomicBool::new(false));
        let mut providers = JoinSet::new();
        // Counting happens on the requester side; the providers' window is irrelevant.
        let always = (Instant::now(), Instant::now() + Duration::from_secs(86_400));
        for _ in 0..o.consumers.max(1) {
            let conn = provider.connect().await?;
            let settle = Settle::Reply(payload::verify_reply());
            providers.spawn(consume(conn, always, stop.clone(), settle));
        }
        let cpu = bus.cpu_seconds()?;
        let req = Req::post("/v1/messages", t.clone(), StatusCode::OK);
        let stats = load::run(&requester, &o.spec(Rate::Fixed(r)), req).await?;
        stop.store(true, Ordering::Relaxed);
        let mut provider_errors = 0;
        while let Some(p) = providers.join_next().await {
            provider_errors += p??.errors;
        }
        let mut line = o
            .base_line(format!("query@{r}"))
            .with(&stats, Some(&echo), 1);
        line.offered_per_s = Some(r);
        line.errors += provider_errors;
        line.bus_cpu_s = Some(bus.cpu_seconds()? - cpu);
        line.payload_bytes = Some(t.len());
        lines.push(line);
    }
    Ok(lines)
}

/// (d) Batch envelopes: `batch` events per request, stored all or nothing. Rates in events/s.
pub async fn batch(o: &Opts) -> anyhow::Result<Vec<Line>> {
    let env = Env::repo(&o.registry)?;
    let t = Template::batch(&payload::layanan(o.size), o.batch);
    let echo = env.echo(o, PORTAL, &t, Rate::Max).await?;
    let bus = env.bus("batch", o.max_body)?;
    let target = env.target(&bus, PORTAL, o.proto)?;
    let cpu = bus.cpu_seconds()?;
    let req = Req::post("/v1/messages", t.clone(), StatusCode::ACCEPTED);
    let stats = load::run(&target, &o.spec(Rate::Max), req).await?;
    let mut line = o
        .base_line(format!("batch-{}", o.batch))
        .with(&stats, Some(&echo), t.events());
    line.batch = Some(o.batch);
    line.bus_cpu_s = Some(bus.cpu_seconds()? - cpu);
    line.payload_bytes = Some(t.len());
    Ok(vec![line])
}

/// (e) Growth in the registry: the same 1 KiB message on registries of each size in
/// `members` (members = types), in the order given. Every line but the smallest registry's has
/// its ratio to that one.
pub async fn growth(o: &Opts) -> anyhow::Result<Vec<Line>> {
    let t = payload::generated(&generate::type_name(0), o.size);
    let sender = generate::member(0).to_string();
    let mut lines: Vec<Line> = Vec::new();
    let mut echo = None;
    for &n in &o.members {
        let env = Env::generated(n)?;
        if echo.is_none() {
            echo = Some(env.echo(o, &sender, &t, Rate::Max).await?);
        }
        let bus = env.bus(&format!("growth-{n}"), o.max_body)?;
        let target = env.target(&bus, &sender, o.proto)?;
        let cpu = bus.cpu_seconds()?;
        let req = Req::post("/v1/messages", t.clone(), StatusCode::ACCEPTED);
        let stats = load::run(&target, &o.spec(Rate::Max), req).await?;
        let mut line = o
            .base_line(format!("growth-{n}"))
            .with(&stats, echo.as_ref(), 1);
        line.registry_members = Some(n);
        line.startup_ms = Some(bus.startup.as_secs_f64() * 1000.0);
        line.bus_cpu_s = Some(bus.cpu_seconds()? - cpu);
        line.payload_bytes = Some(t.len());
        lines.push(line);
    }
    // Against the smallest registry, whatever order they ran in: `bench/run-all.sh` alternates
    // the order between runs, so that whatever the first bus leaves behind (the kernel still
    // writing its data dir back, a warmer machine) does not always fall on the same side.
    let smallest = lines
        .iter()
        .min_by_key(|l| l.registry_members)
        .and_then(|l| l.msgs_per_s);
    for l in &mut lines {
        if let (Some(b), Some(me)) = (smallest, l.msgs_per_s)
            && l.registry_members != o.members.iter().min().copied()
        {
            l.ratio_to_baseline = Some((me / b * 1000.0).round() / 1000.0);
        }
    }
    Ok(lines)
}

/// (e) Payload sizes: one message of each size in `sizes` on a 10-type generated registry,
/// each against the echo with the same body.
pub async fn payload_sizes(o: &Opts) -> anyhow::Result<Vec<Line>> {
    let env = Env::generated(10)?;
    let sender = generate::member(0).to_string();
    let mut lines = Vec::new();
    let bus_tag = "payload";
    let mut bus = None;
    for &size in &o.sizes {
        let t = payload::generated(&generate::type_name(0), size);
        let echo = env.echo(o, &sender, &t, Rate::Max).await?;
        if bus.is_none() {
            bus = Some(env.bus(bus_tag, o.max_body)?);
        }
        let b = bus.as_ref().context("bus")?;
        let target = env.target(b, &sender, o.proto)?;
        let cpu = b.cpu_seconds()?;
        let req = Req::post("/v1/messages", t.clone(), StatusCode::ACCEPTED);
        let stats = load::run(&target, &o.spec(Rate::Max), req).await?;
        let mut line = o
            .base_line(format!("payload-{size}"))
            .with(&stats, Some(&echo), 1);
        line.payload_bytes = Some(t.len());
        line.bus_cpu_s = Some(b.cpu_seconds()? - cpu);
        lines.push(line);
    }
    Ok(lines)
}

/// (f) Backlog: `backlog` messages queued for a consumer that never pulls (sent in batches of
/// 500), then the bus's RSS, and the single-event accept rate on top of that backlog.
pub async fn backlog(o: &Opts) -> anyhow::Result<Vec<Line>> {
    let env = Env::repo(&o.registry)?;
    let single = payload::layanan(o.size);
    let echo = env.echo(o, PORTAL, &single, Rate::Max).await?;
    let bus = env.bus("backlog", o.max_body)?;
    let target = env.target(&bus, PORTAL, o.proto)?;
    let per = 500usize.min(o.backlog.max(1) as usize);
    let fill = Template::batch(&single, per);
    let started = Instant::now();
    let filled = fill_backlog(&target, &fill, o.backlog, o.connections.min(8)).await?;
    let fill_rate = filled as f64 / started.elapsed().as_secs_f64();
    let (rss_filled, _) = bus.rss_mib()?;
    let cpu = bus.cpu_seconds()?;
    let req = Req::post("/v1/messages", single.clone(), StatusCode::ACCEPTED);
    let stats = load::run(&target, &o.spec(Rate::Max), req).await?;
    let (rss, peak) = bus.rss_mib()?;
    let mut line = o.base_line("backlog").with(&stats, Some(&echo), 1);
    line.backlog = Some(filled);
    line.fill_msgs_per_s = Some(fill_rate.round());
    line.rss_mib = Some(rss.max(rss_filled));
    line.peak_rss_mib = Some(peak);
    line.db_mib = Some(env.data_mib("backlog").round());
    line.bus_cpu_s = Some(bus.cpu_seconds()? - cpu);
    line.payload_bytes = Some(single.len());
    Ok(vec![line])
}

/// Sends batches over `workers` connections until `total` events are stored.
async fn fill_backlog(
    target: &Target,
    batch: &Template,
    total: u64,
    workers: usize,
) -> anyhow::Result<u64> {
    let per = batch.events() as u64;
    let batches = total.div_ceil(per);
    let next = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for _ in 0..workers.max(1) {
        let (mut conn, next, batch) = (target.connect().await?, next.clone(), batch.clone());
        set.spawn(async move {
            let mut stored = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < batches {
                // An overloaded answer (503) is retried: the backlog must reach its size.
                loop {
                    let (status, body) = conn
                        .request(
                            Method::POST,
                            "/v1/messages",
                            Some(batch.content_type),
                            batch.body(),
                        )
                        .await?;
                    if status == StatusCode::ACCEPTED {
                        stored += per;
                        break;
                    }
                    if status != StatusCode::SERVICE_UNAVAILABLE {
                        anyhow::bail!("fill: {status}: {}", String::from_utf8_lossy(&body));
                    }
                }
            }
            anyhow::Ok(stored)
        });
    }
    let mut stored = 0;
    while let Some(r) = set.join_next().await {
        stored += r??;
    }
    Ok(stored)
}

/// (g) Cold start to ready with `schemas` types (one schema each) and a fresh data dir: from
/// spawning the process to the first `/readyz` 200 over mTLS. The echo's is the floor.
pub async fn coldstart(o: &Opts) -> anyhow::Result<Vec<Line>> {
    let env = Env::generated(o.schemas)?;
    let sender = generate::member(0).to_string();
    let echo_ready = ready_after(&env, &sender, o, true).await?;
    let bus_ready = ready_after(&env, &sender, o, false).await?;
    let mut line = Line::new("coldstart");
    line.registry_members = Some(o.schemas);
    line.startup_ms = Some(bus_ready.0);
    line.ready_ms = Some(bus_ready.1);
    line.echo_ready_ms = Some(echo_ready.1);
    Ok(vec![line])
}

/// (listening, ready) in milliseconds after spawning.
async fn ready_after(env: &Env, member: &str, o: &Opts, echo: bool) -> anyhow::Result<(f64, f64)> {
    let t0 = Instant::now();
    let server = if echo {
        Server::echo(&env.certs(), &env.instance)?
    } else {
        env.bus("coldstart", o.max_body)?
    };
    let listening = t0.elapsed();
    let mut conn = env.target(&server, member, o.proto)?.connect().await?;
    conn.expect(StatusCode::OK, Method::GET, "/readyz", None, Bytes::new())
        .await?;
    let ready = t0.elapsed();
    Ok((
        listening.as_secs_f64() * 1000.0,
        ready.as_secs_f64() * 1000.0,
    ))
}

/// Every scenario name `run --scenario` accepts.
pub const NAMES: &[&str] = &[
    "accept",
    "sweep",
    "e2e",
    "query",
    "batch",
    "growth",
    "payload",
    "backlog",
    "coldstart",
    "scaleout",
    "peer",
    "amqp-e2e",
];

pub async fn run(name: &str, o: &Opts) -> anyhow::Result<Vec<Line>> {
    match name {
        "accept" => accept(o).await,
        "sweep" => sweep(o).await,
        "e2e" => e2e(o).await,
        "scaleout" => crate::scaleout::run(o).await,
        "peer" => crate::peer::peer(o).await,
        "amqp-e2e" => crate::peer::amqp_e2e(o).await,
        "query" => query(o).await,
        "batch" => batch(o).await,
        "growth" => growth(o).await,
        "payload" => payload_sizes(o).await,
        "backlog" => backlog(o).await,
        "coldstart" => coldstart(o).await,
        other => anyhow::bail!("unknown scenario {other:?}; one of {}", NAMES.join(", ")),
    }
}
