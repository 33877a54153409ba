//! `scaleout`: the bus on PostgreSQL with one node and with several, each measured against
//! the echo and against the store's own ceiling in the same run.
//!
//! The ceiling is what PostgreSQL takes without the bus: `connections` clients each inserting
//! the rows of one accepted message (the message and its deliveries, exactly as the bus
//! stores them) with one statement and its commit, as fast as they can. The bus can at best
//! reach it; how close it comes is what the bus costs on top of its store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use bus::identity::MemberId;
use hyper::StatusCode;
use tokio::task::JoinSet;

use crate::conn::Proto;
use crate::load::{self, Rate, Req, Stats};
use crate::payload::{self, Template};
use crate::report::Line;
use crate::scenarios::{DUKCAPIL, Env, Opts, PORTAL, Settle, consume};
use crate::server::Server;

/// A URL for a fresh schema on the PostgreSQL `base` names: every run starts empty.
pub(crate) fn fresh(base: &str, tag: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    let schema = format!("bench_{tag}_{}", uuid::Uuid::now_v7().simple());
    format!("{base}{sep}options=-csearch_path%3D{schema}")
}

pub async fn run(o: &Opts) -> anyhow::Result<Vec<Line>> {
    let base = o.store.as_deref().context(
        "scaleout needs --store postgres://… (or SIMPUL_STORE, as scripts/services start prints)",
    )?;
    let env = Env::repo(&o.registry)?;
    let t = payload::layanan(o.size);
    let echo = env.echo(o, PORTAL, &t, Rate::Max).await?;
    let ceiling = store_ceiling(o, &fresh(base, "ceiling"), &t).await?;
    let mut lines = vec![{
        let mut l = o.base_line("store-ceiling");
        l.msgs_per_s = Some(ceiling.round());
        l
    }];
    for &n in &o.nodes {
        let n = n.max(1);
        let nodes = env.nodes(&format!("accept{n}"), n, o, &fresh(base, "accept"))?;
        let before = cpu(&nodes)?;
        let stats = spread(&env, &nodes, o, &t).await?;
        let mut l = o
            .base_line(format!("scaleout-accept-{n}n"))
            .with(&stats, Some(&echo), 1);
        l.bus_cpu_s = Some(cpu(&nodes)? - before);
        lines.push(finish(l, n, ceiling, t.len()));
        drop(nodes);

        let nodes = env.nodes(&format!("e2e{n}"), n, o, &fresh(base, "e2e"))?;
        let (sent, acked) = e2e(&env, &nodes, o, &t).await?;
        let mut l = o
            .base_line(format!("scaleout-e2e-{n}n"))
            .with(&acked, Some(&echo), 1);
        l.accepted_per_s = Some((sent.rate() * 10.0).round() / 10.0);
        l.errors += sent.errors;
        lines.push(finish(l, n, ceiling, t.len()));
    }
    Ok(lines)
}

fn finish(mut l: Line, nodes: usize, ceiling: f64, bytes: usize) -> Line {
    l.nodes = Some(nodes);
    l.payload_bytes = Some(bytes);
    l.store_ceiling_per_s = Some(ceiling.round());
    l.ratio_to_store_ceiling = l
        .msgs_per_s
        .map(|r| (r / ceiling.max(1e-9) * 1000.0).round() / 1000.0);
    l
}

/// CPU seconds of all the nodes so far.
fn cpu(nodes: &[Server]) -> anyhow::Result<f64> {
    nodes.iter().map(|s| s.cpu_seconds()).sum()
}

/// The accept load, its connections spread evenly over the nodes, all at once.
async fn spread(env: &Env, nodes: &[Server], o: &Opts, t: &Template) -> anyhow::Result<Stats> {
    let mut spec = o.spec(Rate::Max);
    spec.connections = (o.connections / nodes.len()).max(1);
    let mut runs = JoinSet::new();
    for node in nodes {
        let target = env.target(node, PORTAL, o.proto)?;
        let (spec, req) = (
            spec.clone(),
            Req::post("/v1/messages", t.clone(), StatusCode::ACCEPTED),
        );
        runs.spawn(async move { load::run(&target, &spec, req).await });
    }
    let mut all = Stats::default();
    while let Some(r) = runs.join_next().await {
        all.absorb(r??);
    }
    Ok(all)
}

/// Producers and consumers spread over the nodes: a message accepted on one node is often
/// pulled and acked through another.
async fn e2e(
    env: &Env,
    nodes: &[Server],
    o: &Opts,
    t: &Template,
) -> anyhow::Result<(Stats, Stats)> {
    let start = tokio::time::Instant::now();
    let window = (start + o.warmup, start + o.warmup + o.duration);
    let stop = Arc::new(AtomicBool::new(false));
    let mut consumers = JoinSet::new();
    for i in 0..o.consumers.max(nodes.len()) {
        // Consumer i on the node after producer i's, so deliveries cross nodes.
        let node = &nodes[(i + 1) % nodes.len()];
        let conn = env.target(node, DUKCAPIL, Proto::H2)?.connect().await?;
        consumers.spawn(consume(conn, window, stop.clone(), Settle::Ack));
    }
    let sent = spread(env, nodes, o, t).await?;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Stats::default();
    while let Some(w) = consumers.join_next().await {
        acked.merge(w??);
    }
    Ok((sent, acked.finish(o.duration)))
}

/// Rows per second PostgreSQL commits for `connections` clients inserting what the bus would
/// store for `t`, one message per statement and commit.
async fn store_ceiling(o: &Opts, url: &str, t: &Template) -> anyhow::Result<f64> {
    // The bus's own migration makes the tables; its own rules make the rows.
    let store = bus::store::PgStore::connect(bus::store::PgOptions::new(url)).await?;
    bus::store::Store::close(&store).await;
    let registry = bus::registry::Registry::load(&o.registry)?;
    let portal = MemberId::parse(PORTAL)?;
    let value: serde_json::Value = serde_json::from_slice(&t.body())?;
    let msg = bus::core::ingest::prepare(&registry, value, &portal, None)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .msg;
    let recipients: Vec<String> = msg.recipients.iter().map(|r| r.to_string()).collect();
    let msg = Arc::new((msg, recipients));
    let done = Arc::new(AtomicU64::new(0));
    let (measure_from, end) = {
        let now = Instant::now();
        (now + o.warmup, now + o.warmup + o.duration)
    };
    let mut clients = JoinSet::new();
    for _ in 0..o.connections.max(1) {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let (msg, done) = (msg.clone(), done.clone());
        clients.spawn(async move {
            let insert = client
                .prepare(
                    "WITH m AS (
                       INSERT INTO messages(sender, id, type, hash, envelope, warnings)
                       VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq)
                     INSERT INTO deliveries(recipient, msg_seq, msg_id, state, ord)
                     SELECT r, m.seq, $2, 'pending', o
                     FROM m, unnest($7::text[]) WITH ORDINALITY AS u(r, o)",
                )
                .await?;
            let (m, recipients) = &*msg;
            loop {
                let now = Instant::now();
                if now >= end {
                    return anyhow::Ok(());
                }
                let id = uuid::Uuid::now_v7();
                client
                    .execute(
                        &insert,
                        &[
                            &m.sender.as_str(),
                            &id,
                            &m.type_,
                            &&m.hash[..],
                            &m.envelope,
                            &m.warnings,
                            recipients,
                        ],
                    )
                    .await?;
                if now >= measure_from {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(r) = clients.join_next().await {
        r??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / o.duration.as_secs_f64().max(1e-9))
}
