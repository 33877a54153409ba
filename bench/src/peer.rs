//! The peer, side by side: what a user who "just uses RabbitMQ" gets on the same machine, and
//! what the bus delivers through RabbitMQ.
//!
//! - `peer`: raw lapin publishes with confirms of the same 1 KiB CloudEvent (binary mode, as
//!   the bus publishes it) into a quorum queue, over amqps with a member certificate (EXTERNAL),
//!   for every window × channel count asked; the best is `peer-rabbitmq`. In the same run: the
//!   echo, the bus's single-message accept over h1 and h2, and `batch-100`, each with its ratio
//!   to the peer.
//! - `amqp-e2e`: HTTPS accept → outbox → relay → quorum queue → a lapin consumer's ack, in
//!   messages per second and latency from the id's UUIDv7 time to the ack.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bus::identity::MemberId;
use bus::transport::amqp::{cloudevents, connect, management::Management, management::Permission};
use futures_util::StreamExt;
use hyper::StatusCode;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::conn::Proto;
use crate::load::{self, Rate, Req, Stats, WorkerStats};
use crate::payload::{self, Template};
use crate::report::Line;
use crate::scenarios::{self, DUKCAPIL, Env, Opts, PORTAL};

/// The broker a run uses, as `scripts/services start` describes it.
struct Broker {
    base: String,
    management: Management,
    management_url: String,
    pki: PathBuf,
}

impl Broker {
    fn from(o: &Opts) -> anyhow::Result<Broker> {
        let hint = "(or eval \"$(scripts/services start)\" first)";
        let url = o
            .amqp
            .as_deref()
            .with_context(|| format!("give --amqp amqps://HOST:PORT {hint}"))?;
        let management_url = o
            .amqp_management
            .clone()
            .with_context(|| format!("give --amqp-management {hint}"))?;
        let pki = o
            .amqp_certs
            .clone()
            .with_context(|| format!("give --amqp-certs {hint}"))?;
        let rest = url
            .strip_prefix("amqps://")
            .context("--amqp: amqps://HOST:PORT")?;
        let authority = rest.split('/').next().unwrap_or(rest);
        Ok(Broker {
            base: format!("amqps://{authority}"),
            management: Management::new(&management_url)?,
            management_url,
            pki,
        })
    }

    /// A vhost of this run's own.
    async fn vhost(&self, tag: &str) -> anyhow::Result<String> {
        let v = format!("bench-{tag}-{}", uuid::Uuid::now_v7().simple());
        self.management.ensure_vhost(&v).await?;
        Ok(v)
    }

    async fn connect(
        &self,
        vhost: &str,
        certs: &std::path::Path,
        member: &str,
    ) -> anyhow::Result<lapin::Connection> {
        let m = MemberId::parse(member)?;
        let p = bus::pki::member_paths(certs, &m);
        let mut tls = bus::tls::client_config(&certs.join("ca.pem"), &p.cert, &p.key)?;
        tls.alpn_protocols.clear();
        let uri = connect::parse_url(&format!("{}/{vhost}", self.base))?;
        Ok(connect::open(&uri, &Arc::new(tls), "simpul-bench").await?)
    }
}

/// Milliseconds since the epoch in a UUIDv7 (when the producer made the id).
fn made_at(id: &str) -> Option<SystemTime> {
    let u = uuid::Uuid::parse_str(id).ok()?;
    let (secs, nanos) = u.get_timestamp()?.to_unix();
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// One channel publishing with `window` confirms outstanding until `end`; counts the confirms
/// that arrive inside the measured window, with publish-to-confirm latency.
async fn publish(
    conn: lapin::Connection,
    queue: String,
    window: usize,
    t: Template,
    measured: (Instant, Instant),
) -> anyhow::Result<WorkerStats> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let (props, body) = cloudevents::encode(std::str::from_utf8(&t.body())?)?;
    let mut w = WorkerStats::default();
    let mut inflight = VecDeque::with_capacity(window);
    let settle = |w: &mut WorkerStats, sent: Instant, c: lapin::Confirmation| {
        let now = Instant::now();
        if now >= measured.0 && now < measured.1 {
            w.record(c.is_ack(), now - sent, || "nack".into());
        }
    };
    while Instant::now() < measured.1 {
        let id = uuid::Uuid::now_v7().to_string();
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props.clone().with_message_id(id.as_str().into()),
            )
            .await?;
        inflight.push_back((Instant::now(), confirm));
        if inflight.len() >= window
            && let Some((sent, c)) = inflight.pop_front()
        {
            settle(&mut w, sent, c.await?);
        }
    }
    while let Some((sent, c)) = inflight.pop_front() {
        settle(&mut w, sent, c.await?);
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(w)
}

/// The best of every window × channel count, as a `peer-rabbitmq` line.
async fn peer_rabbitmq(o: &Opts, broker: &Broker, env: &Env, t: &Template) -> anyhow::Result<Line> {
    let vhost = broker.vhost("peer").await?;
    // An agency publishing to RabbitMQ itself: its certificate's user, rights on its vhost.
    let user = MemberId::parse(DUKCAPIL)?.to_spiffe_uri(&bus_instance(env)?);
    broker.management.put_user(&user).await?;
    let all = |v: &str| Permission {
        user: user.clone(),
        vhost: v.to_owned(),
        configure: ".*".into(),
        write: ".*".into(),
        read: ".*".into(),
    };
    broker.management.set_permission(&all(&vhost)).await?;
    let conn = broker.connect(&vhost, &env.certs(), DUKCAPIL).await?;
    let ch = conn.create_channel().await?;
    let queue = "bench.peer".to_owned();
    ch.queue_declare(
        queue.as_str().into(),
        lapin::options::QueueDeclareOptions::durable(),
        bus::transport::amqp::topology::inbox_arguments(5),
    )
    .await?;
    let mut best: Option<(Stats, usize, usize)> = None;
    for &channels in &o.channels {
        for &window in &o.windows {
            let start = Instant::now();
            let measured = (start + o.warmup, start + o.warmup + o.duration);
            let mut runs = JoinSet::new();
            for _ in 0..channels.max(1) {
                let c = broker.connect(&vhost, &env.certs(), DUKCAPIL).await?;
                runs.spawn(publish(
                    c,
                    queue.clone(),
                    window.max(1),
                    t.clone(),
                    measured,
                ));
            }
            let mut stats = Stats::default();
            while let Some(r) = runs.join_next().await {
                stats.merge(r??);
            }
            let stats = stats.finish(o.duration);
            eprintln!(
                "peer-rabbitmq: {channels} channel(s), window {window}: {:.0} msg/s",
                stats.rate()
            );
            ch.queue_purge(queue.as_str().into(), Default::default())
                .await?;
            if best
                .as_ref()
                .is_none_or(|(b, _, _)| stats.rate() > b.rate())
            {
                best = Some((stats, channels, window));
            }
        }
    }
    let _ = broker.management.clear_permission(&vhost, &user).await;
    let (stats, channels, window) = best.context("no --windows or --channels")?;
    let mut l = Line::new("peer-rabbitmq").with(&stats, None, 1);
    l.connections = Some(channels);
    l.window = Some(window);
    l.payload_bytes = Some(t.len());
    l.duration_s = Some(o.duration.as_secs_f64());
    Ok(l)
}

fn bus_instance(env: &Env) -> anyhow::Result<String> {
    Ok(bus::registry::Registry::load(env.registry())?
        .instance
        .clone())
}

/// `peer`: the peer, then the bus's accept (h1, h2) and batch-100, each against it. The
/// shapes scale with `--connections` (at its default of 32: 64 HTTP/1.1 connections, and
/// 8 h2 connections of 32 streams), so a smoke run can stay tiny.
pub async fn peer(o: &Opts) -> anyhow::Result<Vec<Line>> {
    let broker = Broker::from(o)?;
    let env = Env::with_broker_pki(&o.registry, &[], &broker.pki)?;
    let t = payload::layanan(o.size);
    let peer = peer_rabbitmq(o, &broker, &env, &t).await?;
    let peer_rate = peer.msgs_per_s.unwrap_or(0.0);
    let mut lines = vec![peer];
    let h1 = Opts {
        proto: Proto::H1,
        connections: o.connections * 2,
        streams: 1,
        ..o.clone()
    };
    let h2 = Opts {
        proto: Proto::H2,
        connections: (o.connections / 4).max(1),
        streams: 32,
        ..o.clone()
    };
    let batch = Opts {
        batch: 100,
        ..h1.clone()
    };
    for mut l in [
        scenarios::accept(&h1).await?,
        scenarios::accept(&h2).await?,
        scenarios::batch(&batch).await?,
    ]
    .into_iter()
    .flatten()
    {
        l.ratio_to_peer = l
            .msgs_per_s
            .map(|r| (r / peer_rate.max(1e-9) * 1000.0).round() / 1000.0);
        l.peer_msgs_per_s = Some(peer_rate);
        lines.push(l);
    }
    Ok(lines)
}

/// `amqp-e2e`: Dukcapil sends status updates to the city portal, a member served over AMQP;
/// a lapin consumer with the portal's certificate acks each one.
pub async fn amqp_e2e(o: &Opts) -> anyhow::Result<Vec<Line>> {
    let broker = Broker::from(o)?;
    let store = o
        .store
        .as_deref()
        .context("amqp-e2e needs --store postgres://… (or SIMPUL_STORE)")?;
    let env = Env::with_broker_pki(&o.registry, &[PORTAL], &broker.pki)?;
    let t = payload::status_to_portal(o.size);
    let echo = env.echo(o, DUKCAPIL, &t, Rate::Max).await?;
    let vhost = broker.vhost("e2e").await?;
    let url = format!("{}/{vhost}", broker.base);
    let bus = crate::server::Server::bus_amqp(
        env.registry(),
        &env.certs(),
        &env.path().join("data-amqp"),
        &crate::scaleout::fresh(store, "amqp"),
        (&url, &broker.management_url),
    )?;
    // The bus syncs the broker in the background: wait for the portal's queue.
    let queue = "simpul.inbox.GOV/portal";
    let conn = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = broker.connect(&vhost, &env.certs(), PORTAL).await;
            if let Ok(c) = c {
                let ch = c.create_channel().await?;
                let passive = lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                };
                if ch
                    .queue_declare(queue.into(), passive, FieldTable::default())
                    .await
                    .is_ok()
                {
                    break c;
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "the bus never declared {queue}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let start = Instant::now();
    let measured = (start + o.warmup, start + o.warmup + o.duration);
    let ch = conn.create_channel().await?;
    ch.basic_qos(1000, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let consume = tokio::spawn(async move {
        let mut w = WorkerStats::default();
        let end = measured.1 + Duration::from_secs(2);
        while let Ok(Some(Ok(d))) = tokio::time::timeout_at(end, consumer.next()).await {
            d.acker.ack(Default::default()).await?;
            let now = Instant::now();
            let made = d
                .properties
                .message_id()
                .as_ref()
                .and_then(|id| made_at(id.as_str()));
            if let (true, Some(made)) = (now >= measured.0 && now < measured.1, made) {
                w.record(
                    true,
                    SystemTime::now().duration_since(made).unwrap_or_default(),
                    String::new,
                );
            }
        }
        anyhow::Ok(w)
    });
    let producer = env.target(&bus, DUKCAPIL, o.proto)?;
    let req = Req::post("/v1/messages", t.clone(), StatusCode::ACCEPTED);
    let rate = o.rate.map_or(Rate::Max, Rate::Fixed);
    let sent = load::run(&producer, &o.spec(rate), req).await?;
    let mut acked = Stats::default();
    acked.merge(consume.await??);
    let acked = acked.finish(o.duration);
    let mut l = o.base_line("amqp-e2e").with(&acked, Some(&echo), 1);
    l.accepted_per_s = Some((sent.rate() * 10.0).round() / 10.0);
    l.errors += sent.errors;
    if l.first_error.is_none() {
        l.first_error = sent.first_error.clone();
    }
    l.payload_bytes = Some(t.len());
    Ok(vec![l])
}
