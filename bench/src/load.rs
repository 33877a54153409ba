//! The load generator: N keep-alive connections (times S streams each on h2), each running one
//! request at a time, at the highest rate the server sustains or at a fixed offered rate.
//!
//! Fixed rate avoids coordinated omission the way wrk2 does: request `i` is *due* at
//! `start + i / rate`, workers take the next due request from a shared counter, and latency is
//! measured from when it was due, not from when a busy worker got round to sending it. A server
//! that stalls therefore shows its stall in every request queued behind it. Requests due before
//! the end are all sent and timed, even if that takes past the end, so the backlog of a server
//! that cannot keep up is measured rather than dropped.
//!
//! One exception to "from when it was due": a connection that was idle before its request was
//! due, and woke late only because tokio's timer has millisecond ticks, is timed from when it
//! sent. Nothing the server did made it late, and on this machine that lateness was most of a
//! millisecond at the median. It is reported on its own (`timer_late_p99_ms`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::{Method, StatusCode};
use tokio::time::Instant;

use crate::conn::{Conn, Target};
use crate::payload::Template;

/// What each request is: the same method, path and kind of body, with a fresh id every time.
pub struct Req {
    pub path: String,
    pub template: Template,
    pub expect: StatusCode,
}

impl Req {
    pub fn post(path: &str, template: Template, expect: StatusCode) -> Arc<Req> {
        Arc::new(Req {
            path: path.to_owned(),
            template,
            expect,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Max,
    /// Requests per second offered, whatever the server does.
    Fixed(f64),
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub connections: usize,
    /// Concurrent streams per h2 connection (ignored on HTTP/1.1: one in flight).
    pub streams: usize,
    pub rate: Rate,
    /// Run but not counted, so connection setup and cold caches do not count.
    pub warmup: Duration,
    pub duration: Duration,
}

/// How long a fixed-rate run may overrun its end to send what was due before it.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// The outcome of a run: successful requests, failures and the latency of each success.
#[derive(Debug, Default)]
pub struct Stats {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Length of the measured window.
    pub elapsed: Duration,
    /// Sorted latencies in microseconds.
    lat_us: Vec<u32>,
    /// Sorted lateness of the generator's own timer (idle connections only), in microseconds.
    late_us: Vec<u32>,
}

impl Stats {
    /// Successful requests per second over the measured window.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`th percentile (0–100) latency in milliseconds.
    pub fn pct_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.lat_us, p)
    }

    /// The `p`th percentile (0–100) of how late the generator's timer woke idle connections,
    /// in milliseconds; `NaN` at max rate, which has no timer.
    pub fn timer_late_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.late_us, p)
    }

    pub fn merge(&mut self, w: WorkerStats) {
        self.ok += w.ok;
        self.errors += w.errors;
        if self.first_error.is_none() {
            self.first_error = w.first_error;
        }
        self.lat_us.extend(w.lat_us);
        self.late_us.extend(w.late_us);
    }

    /// Adds a run measured at the same time against another server (another node).
    pub fn absorb(&mut self, other: Stats) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.lat_us.extend(other.lat_us);
        self.lat_us.sort_unstable();
        self.late_us.extend(other.late_us);
        self.late_us.sort_unstable();
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    pub fn finish(mut self, elapsed: Duration) -> Stats {
        self.lat_us.sort_unstable();
        self.late_us.sort_unstable();
        self.elapsed = elapsed;
        self
    }
}

/// `p`th percentile (0–100) of sorted microsecond samples, in milliseconds (nearest rank).
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1000.0
}

/// One worker's tally, merged into [`Stats`] at the end.
#[derive(Default)]
pub struct WorkerStats {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub lat_us: Vec<u32>,
    pub late_us: Vec<u32>,
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

impl WorkerStats {
    pub fn record(&mut self, ok: bool, latency: Duration, error: impl FnOnce() -> String) {
        if ok {
            self.ok += 1;
            self.lat_us.push(micros(latency));
        } else {
            self.errors += 1;
            if self.first_error.is_none() {
                self.first_error = Some(error());
            }
        }
    }
}

/// Opens `spec.connections` connections and returns one handle per worker.
pub async fn connect_workers(target: &Target, spec: &Spec) -> anyhow::Result<Vec<Conn>> {
    let mut out = Vec::new();
    for _ in 0..spec.connections.max(1) {
        let c = target.connect().await?;
        for _ in 1..spec.streams.max(1) {
            if let Some(s) = c.stream() {
                out.push(s);
            }
        }
        out.push(c);
    }
    Ok(out)
}

/// Runs `req` against `target` as `spec` says.
pub async fn run(target: &Target, spec: &Spec, req: Arc<Req>) -> anyhow::Result<Stats> {
    let conns = connect_workers(target, spec).await?;
    let start = Instant::now();
    let clock = Arc::new(Clock {
        measure_from: start + spec.warmup,
        end: start + spec.warmup + spec.duration,
        start,
        rate: spec.rate,
        next: AtomicU64::new(0),
    });
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(worker(target.clone(), c, req.clone(), clock.clone())))
        .collect();
    let mut stats = Stats::default();
    let mut last = clock.end;
    for t in tasks {
        let (w, done) = t.await?;
        last = last.max(done);
        stats.merge(w);
    }
    // A fixed-rate run that overran (server behind) is measured over the time it really took.
    let elapsed = match spec.rate {
        Rate::Max => spec.duration,
        Rate::Fixed(_) => last - clock.measure_from,
    };
    Ok(stats.finish(elapsed))
}

struct Clock {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    rate: Rate,
    next: AtomicU64,
}

impl Clock {
    /// When the next request is due, or `None` when the run is over.
    fn next_due(&self) -> Option<Instant> {
        match self.rate {
            Rate::Max => {
                let now = Instant::now();
                (now < self.end).then_some(now)
            }
            Rate::Fixed(r) => {
                let i = self.next.fetch_add(1, Ordering::Relaxed);
                let due = self.start + Duration::from_secs_f64(i as f64 / r);
                (due < self.end && Instant::now() < self.end + DRAIN_LIMIT).then_some(due)
            }
        }
    }
}

async fn worker(
    target: Target,
    mut conn: Conn,
    req: Arc<Req>,
    clock: Arc<Clock>,
) -> (WorkerStats, Instant) {
    let mut w = WorkerStats::default();
    let mut last = Instant::now();
    while let Some(due) = clock.next_due() {
        let idle = Instant::now() < due;
        tokio::time::sleep_until(due).await;
        // Idle until due: any lateness now is the timer's (see the module doc). Busy past due:
        // the wait for the server counts (coordinated omission).
        let timed_from = if idle { Instant::now() } else { due };
        let body = req.template.body();
        let result = conn
            .request(
                Method::POST,
                &req.path,
                Some(req.template.content_type),
                body,
            )
            .await;
        let done = Instant::now();
        last = done;
        // Max rate counts only what finished in the window; fixed rate counts everything due
        // in the window, however late it finished.
        let counted = due >= clock.measure_from
            && (matches!(clock.rate, Rate::Fixed(_)) || done <= clock.end);
        let broken = result.is_err();
        if counted {
            if idle {
                w.late_us.push(micros(timed_from - due));
            }
            let latency = done - timed_from;
            match &result {
                Ok((status, _)) if *status == req.expect => w.record(true, latency, String::new),
                Ok((status, body)) => w.record(false, latency, || {
                    format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    )
                }),
                Err(e) => w.record(false, latency, || format!("{e:#}")),
            }
        }
        if broken {
            // The connection is gone (e.g. the server closed it): open a new one and go on.
            match target.connect().await {
                Ok(c) => conn = c,
                Err(_) => break,
            }
        }
    }
    (w, last)
}
