//! Prometheus metrics: what an operator at 2 a.m. looks at first.
//!
//! Counters and histograms are recorded where things happen, through the `metrics` facade
//! (a relaxed atomic add when a recorder is installed, nothing otherwise). Gauges that are
//! state rather than events (queue depth, certificate expiry) are read when scraped, by the
//! [`Gauges`] hooks the server registers.
//!
//! Label values are member ids, registered type names, problem classes and fixed reasons:
//! never anything a sender chose freely, so a hostile member cannot grow the series without
//! bound, and never a personal identifier.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::identity::MemberId;

/// Latency buckets, in seconds: from a fast accept (~1 ms) to the query timeout.
const LATENCY: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 30.0,
];
/// Group-commit sizes.
const SIZES: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// The process's recorder, installed on first use (one per process: a second bus in the same
/// process, as in the demo, shares it).
pub fn handle() -> &'static PrometheusHandle {
    static H: OnceLock<PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), &SIZES))
            .expect("non-empty buckets");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only its own");
        }
        handle
    })
}

/// Drains histogram samples into their buckets; called every few seconds so memory stays
/// bounded when nobody scrapes.
pub async fn upkeep() {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle().run_upkeep();
    }
}

/// Sets scrape-time gauges; see [`render`].
pub type Gauge = Arc<dyn Fn() + Send + Sync>;

/// The hooks run before each scrape.
#[derive(Default)]
pub struct Gauges(Mutex<Vec<Gauge>>);

impl Gauges {
    pub fn add(&self, g: Gauge) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(g);
    }

    fn run(&self) {
        let hooks = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for h in hooks {
            h();
        }
    }
}

/// The text exposition, after the gauges are brought up to date.
pub fn render(gauges: &Gauges) -> String {
    gauges.run();
    let h = handle();
    h.run_upkeep();
    h.render()
}

pub fn accepted(type_: &str, sender: &MemberId, n: u64) {
    counter!("simpul_messages_accepted_total", "type" => type_.to_owned(), "sender" => sender.to_string())
        .increment(n);
}

/// `type_` is `-` when the type is not (yet) known: malformed bodies, unregistered types.
pub fn rejected(type_: &str, sender: &MemberId, problem: &'static str) {
    counter!(
        "simpul_messages_rejected_total",
        "type" => type_.to_owned(),
        "sender" => sender.to_string(),
        "problem" => problem
    )
    .increment(1);
}

pub fn accept_latency(d: Duration) {
    histogram!("simpul_accept_seconds").record(d.as_secs_f64());
}

pub fn query(type_: &str, outcome: &'static str, d: Duration) {
    counter!("simpul_queries_total", "type" => type_.to_owned(), "outcome" => outcome).increment(1);
    histogram!("simpul_query_seconds", "type" => type_.to_owned()).record(d.as_secs_f64());
}

pub fn leased(recipient: &MemberId, n: u64) {
    counter!("simpul_leases_total", "recipient" => recipient.to_string()).increment(n);
}

pub fn acked(recipient: &MemberId, n: u64) {
    counter!("simpul_acks_total", "recipient" => recipient.to_string()).increment(n);
}

pub fn nacked(recipient: &MemberId) {
    counter!("simpul_nacks_total", "recipient" => recipient.to_string()).increment(1);
}

/// `reason`: `nacked` or `out_of_attempts`.
pub fn dead_letters(recipient: &MemberId, reason: &'static str, n: u64) {
    counter!("simpul_dead_letters_total", "recipient" => recipient.to_string(), "reason" => reason)
        .increment(n);
}

pub fn redriven(recipient: &MemberId, n: u64) {
    counter!("simpul_redriven_total", "recipient" => recipient.to_string()).increment(n);
}

pub fn queue(recipient: &MemberId, depth: u64, oldest: Duration) {
    let r = recipient.to_string();
    gauge!("simpul_queue_depth", "recipient" => r.clone()).set(depth as f64);
    gauge!("simpul_queue_oldest_seconds", "recipient" => r).set(oldest.as_secs_f64());
}

/// One group commit of the embedded store: how many operations, and how long from `BEGIN` to
/// the end of `COMMIT` (which includes its fsync).
pub fn commit(ops: usize, d: Duration, synced: bool) {
    histogram!("simpul_store_group_commit_size").record(ops as f64);
    histogram!("simpul_store_commit_seconds").record(d.as_secs_f64());
    if synced {
        counter!("simpul_store_fsyncs_total").increment(1);
    }
}

pub fn outbox(transport: &'static str, count: u64, oldest: Duration) {
    gauge!("simpul_outbox_backlog", "transport" => transport).set(count as f64);
    gauge!("simpul_outbox_oldest_seconds", "transport" => transport).set(oldest.as_secs_f64());
}

/// `reason`: a fixed word (see `tls::listener`).
pub fn handshake_failed(reason: &'static str) {
    counter!("simpul_tls_handshake_failures_total", "reason" => reason).increment(1);
}

/// Counts a connection open until the guard drops.
pub struct OpenConnection;

impl OpenConnection {
    pub fn new() -> OpenConnection {
        gauge!("simpul_open_connections").increment(1.0);
        OpenConnection
    }
}

impl Default for OpenConnection {
    fn default() -> Self {
        OpenConnection::new()
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        gauge!("simpul_open_connections").decrement(1.0);
    }
}

pub fn rate_limited(member: &MemberId) {
    counter!("simpul_rate_limited_total", "member" => member.to_string()).increment(1);
}

pub fn certificate_expiry(member: &MemberId, days: f64) {
    gauge!("simpul_member_certificate_expiry_days", "member" => member.to_string()).set(days);
}
