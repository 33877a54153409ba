//! The machine-readable result: one JSON object per line per scenario, on stdout.

use serde::Serialize;

use crate::conn::Proto;
use crate::load::Stats;

/// One scenario's result. The first six fields are the stable interface; the rest say what
/// was run and what else was seen, and are left out when they do not apply.
#[derive(Debug, Default, Serialize)]
pub struct Line {
    pub scenario: String,
    pub msgs_per_s: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub echo_msgs_per_s: Option<f64>,
    pub ratio_to_echo: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p999_ms: Option<f64>,
    /// Fixed rate only: how late the generator's timer sent requests on idle connections
    /// (not counted in the latencies; see `load`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timer_late_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto: Option<Proto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_baseline: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fill_msgs_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo_ready_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_members: Option<usize>,
    /// CPU seconds the bus process used during the measured run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus_cpu_s: Option<f64>,
    /// Bus nodes sharing one PostgreSQL (`scaleout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    /// Raw concurrent `INSERT … COMMIT` of the same rows against the same PostgreSQL in the
    /// same run (`scaleout`), and the ratio of `msgs_per_s` to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_ceiling_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_store_ceiling: Option<f64>,
    /// Publishes in flight per channel (`peer-rabbitmq`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    /// The peer's rate in the same run (`peer`), and the ratio of `msgs_per_s` to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_msgs_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_peer: Option<f64>,
    /// 1-minute load average when the scenario started (other work on the machine).
    pub loadavg_1m: Option<f64>,
}

impl Line {
    pub fn new(scenario: impl Into<String>) -> Line {
        Line {
            scenario: scenario.into(),
            loadavg_1m: loadavg(),
            ..Line::default()
        }
    }

    /// Fills rate, latency and errors from the bus's run and the ratio from the echo's.
    pub fn with(mut self, bus: &Stats, echo: Option<&Stats>, per_request: usize) -> Line {
        let k = per_request as f64;
        self.msgs_per_s = Some(round(bus.rate() * k));
        self.p50_ms = finite(bus.pct_ms(50.0));
        self.p99_ms = finite(bus.pct_ms(99.0));
        self.p999_ms = finite(bus.pct_ms(99.9));
        self.timer_late_p99_ms = finite(bus.timer_late_ms(99.0));
        self.errors = bus.errors;
        self.first_error = bus.first_error.clone();
        if let Some(e) = echo {
            self = self.echo(e, per_request);
        }
        self
    }

    /// The echo ceiling's figures, and the ratio of `msgs_per_s` to it.
    pub fn echo(mut self, e: &Stats, per_request: usize) -> Line {
        let echo_rate = e.rate() * per_request as f64;
        self.echo_msgs_per_s = Some(round(echo_rate));
        self.echo_p50_ms = finite(e.pct_ms(50.0));
        self.echo_p99_ms = finite(e.pct_ms(99.0));
        self.ratio_to_echo = self
            .msgs_per_s
            .map(|r| (r / echo_rate.max(1e-9) * 1000.0).round() / 1000.0);
        if e.errors > 0 && self.first_error.is_none() {
            self.first_error = e.first_error.as_ref().map(|s| format!("echo: {s}"));
        }
        self
    }

    pub fn print(&self) {
        println!(
            "{}",
            serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some((x * 1000.0).round() / 1000.0)
}

/// The 1-minute load average, to record how busy the machine was.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
