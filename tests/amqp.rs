//! RabbitMQ as the transport: members with `delivery = "amqp"` consume natively, with their
//! own certificate (EXTERNAL), only their own queue; what the broker dead-letters reaches the
//! sender's status; a revoked certificate loses its connection. Real broker, real PostgreSQL.

mod common;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use common::amqp::{self, Broker};
use common::*;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicRejectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Consumer};
use serde_json::Value;
use uuid::Uuid;

const HR_QUEUE: &str = "simpul.inbox.GOV/bkpsdm/hr";

async fn consume(ch: &Channel, queue: &str) -> Result<Consumer, lapin::Error> {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
}

async fn next(c: &mut Consumer) -> lapin::message::Delivery {
    tokio::time::timeout(Duration::from_secs(20), c.next())
        .await
        .expect("a delivery within 20 s")
        .expect("the consumer is open")
        .expect("a delivery")
}

fn header(d: &lapin::message::Delivery, name: &str) -> Option<String> {
    match d.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// The status of `ev` as its sender sees it, once `cond` holds for it (20 s at most).
async fn status_when(bus: &Bus, ev: &Value, cond: impl Fn(&Value) -> bool) -> Value {
    let c = bus.client(DUKCAPIL);
    let last = Mutex::new(Value::Null);
    let got_there = wait_until(Duration::from_secs(20), || async {
        let status = c.status(id_of(ev)).await.unwrap().body;
        let done = cond(&status);
        *last.lock().unwrap() = status;
        done
    })
    .await;
    let last = last.into_inner().unwrap();
    assert!(got_there, "status never got there: {last:#}");
    last
}

/// `/readyz` once its answer contains `text`: its status code and body.
async fn readyz_saying(bus: &Bus, text: &str) -> (u16, String) {
    let c = bus.client(DUKCAPIL);
    let last = Mutex::new((0, String::new()));
    let said = wait_until(Duration::from_secs(20), || async {
        let res = c.http().get(c.url("/readyz")).send().await.unwrap();
        let code = res.status().as_u16();
        let body = res.text().await.unwrap();
        let done = body.contains(text);
        *last.lock().unwrap() = (code, body);
        done
    })
    .await;
    let (code, body) = last.into_inner().unwrap();
    assert!(said, "/readyz: {code} {body}");
    (code, body)
}

fn recipient<'a>(status: &'a Value, m: &str) -> &'a Value {
    status["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["recipient"] == m)
        .unwrap_or_else(|| panic!("no delivery to {m}: {status:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_consumes_natively_with_its_certificate_in_cloudevents_binary_mode() {
    let broker = amqp::shared();
    let vhost = broker.fresh_vhost();
    let bus = Bus::relaying(broker, &vhost, &[HR], &[]).await;
    let conn = broker.connect_as(&vhost, &bus.certs(), HR).await.unwrap();
    let mut inbox = consume(&conn.create_channel().await.unwrap(), HR_QUEUE)
        .await
        .unwrap();

    let ev = death(NIK2);
    assert_status(&bus.client(DUKCAPIL).send(&ev).await.unwrap(), 202);
    let d = next(&mut inbox).await;
    let id = id_of(&ev).to_string();
    assert_eq!(d.properties.message_id().as_ref().unwrap().as_str(), id);
    assert_eq!(
        d.properties.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(*d.properties.delivery_mode(), Some(2), "persistent");
    assert_eq!(header(&d, "cloudEvents_id").as_deref(), Some(id.as_str()));
    assert_eq!(
        header(&d, "cloudEvents_specversion").as_deref(),
        Some("1.0")
    );
    assert_eq!(
        header(&d, "cloudEvents_type").as_deref(),
        Some("siak.penduduk.meninggal")
    );
    assert_eq!(header(&d, "cloudEvents_source").as_deref(), Some(DUKCAPIL));
    assert!(header(&d, "cloudEvents_time").is_some());
    let data: Value = serde_json::from_slice(&d.data).unwrap();
    assert_eq!(data, ev["data"], "the body is the event's data");
    d.acker.ack(Default::default()).await.unwrap();

    // Published and confirmed: delivered. The other subscriber still pulls over HTTPS.
    let st = status_when(&bus, &ev, |s| {
        s["deliveries"].as_array().is_some_and(|d| {
            d.iter()
                .any(|d| d["recipient"] == HR && d["state"] == "delivered")
        })
    })
    .await;
    assert_eq!(recipient(&st, DPMPTSP)["state"], "pending");
    assert_eq!(
        leased_ids(&pull_now(&bus.client(DPMPTSP)).await),
        [id_of(&ev)]
    );
    let nothing = pull_now(&bus.client(HR)).await;
    assert!(
        leased_ids(&nothing).is_empty(),
        "HR is served over AMQP only"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_may_only_read_its_own_queues() {
    let broker = amqp::shared();
    let vhost = broker.fresh_vhost();
    let bus = Bus::relaying(broker, &vhost, &[HR, PORTAL], &[]).await;
    let conn = broker.connect_as(&vhost, &bus.certs(), HR).await.unwrap();
    let refused = |e: lapin::Error| {
        let text = e.to_string();
        assert!(text.contains("ACCESS_REFUSED"), "{text}");
    };
    // Each refusal closes its channel: one channel per attempt.
    let ch = conn.create_channel().await.unwrap();
    refused(consume(&ch, "simpul.inbox.GOV/portal").await.unwrap_err());
    let ch = conn.create_channel().await.unwrap();
    refused(consume(&ch, "simpul.dead.GOV/portal").await.unwrap_err());
    let ch = conn.create_channel().await.unwrap();
    refused(
        ch.queue_declare(
            "mine".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err(),
    );
    // Publishing skips validation, so it is refused on every exchange, the default included.
    for exchange in ["simpul.messages", ""] {
        let ch = conn.create_channel().await.unwrap();
        // In confirm mode the refusal (the broker closes the channel) fails the publish's
        // confirm with the broker's reason.
        ch.confirm_select(Default::default()).await.unwrap();
        let outcome = match ch
            .basic_publish(
                exchange.into(),
                HR.into(),
                BasicPublishOptions::default(),
                b"{}",
                BasicProperties::default(),
            )
            .await
        {
            Err(e) => Err(e),
            Ok(confirm) => confirm.await.map(drop),
        };
        refused(outcome.expect_err("a member published"));
    }
    // Its own inbox and dead letters it may read.
    let ch = conn.create_channel().await.unwrap();
    consume(&ch, HR_QUEUE).await.unwrap();
    consume(&ch, "simpul.dead.GOV/bkpsdm/hr").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_broker_dead_letters_reaches_the_senders_status_with_its_reason() {
    let broker = amqp::shared();
    let vhost = broker.fresh_vhost();
    let bus = Bus::relaying(broker, &vhost, &[HR], &["--max-attempts", "2"]).await;
    let conn = broker.connect_as(&vhost, &bus.certs(), HR).await.unwrap();
    let mut inbox = consume(&conn.create_channel().await.unwrap(), HR_QUEUE)
        .await
        .unwrap();
    let dukcapil = bus.client(DUKCAPIL);

    // Refused for good by the consumer: dead at once.
    let refused = death(NIK);
    assert_status(&dukcapil.send(&refused).await.unwrap(), 202);
    let d = next(&mut inbox).await;
    d.acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let st = status_when(&bus, &refused, |s| s["status"] == "dead_lettered").await;
    let reason = recipient(&st, HR)["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("rejected"), "{reason}");

    // Handed back every time: after 2 deliveries (--max-attempts 2) the queue gives up.
    let retried = death(NIK2);
    assert_status(&dukcapil.send(&retried).await.unwrap(), 202);
    let mut seen = 0;
    while seen < 2 {
        let d = next(&mut inbox).await;
        assert_eq!(
            d.properties.message_id().as_ref().unwrap().as_str(),
            id_of(&retried).to_string()
        );
        d.acker
            .reject(BasicRejectOptions { requeue: true })
            .await
            .unwrap();
        seen += 1;
    }
    let st = status_when(&bus, &retried, |s| s["status"] == "dead_lettered").await;
    let reason = recipient(&st, HR)["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("delivery limit"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_member_loses_its_open_connection_and_cannot_come_back() {
    let broker = amqp::shared();
    let vhost = broker.fresh_vhost();
    let crl = broker.crl.to_string_lossy().into_owned();
    let bus = Bus::relaying(broker, &vhost, &[HR], &["--amqp-crl", &crl]).await;
    let conn = broker.connect_as(&vhost, &bus.certs(), HR).await.unwrap();
    let _inbox = consume(&conn.create_channel().await.unwrap(), HR_QUEUE)
        .await
        .unwrap();
    assert!(conn.status().connected());

    bus.certs_command(&["revoke", HR]);
    let closed = wait_until(Duration::from_secs(5), || async {
        !conn.status().connected()
    })
    .await;
    assert!(
        closed,
        "the revoked member's AMQP connection is still open after 5 s"
    );
    let again = broker.connect_as(&vhost, &bus.certs(), HR).await;
    assert!(again.is_err(), "a revoked certificate connected again");
}

/// Sends `n` death events in batches of 50, returning their ids.
async fn stream(bus: &Bus, n: usize) -> Vec<Uuid> {
    let dukcapil = bus.client(DUKCAPIL);
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n / 50 {
        let batch: Vec<Value> = (0..50).map(|_| death(NIK2)).collect();
        ids.extend(batch.iter().map(id_of));
        assert_status(&dukcapil.send_batch(&batch).await.unwrap(), 202);
    }
    ids
}

/// HR consuming its queue again, once the broker lets it (it may be restarting): the
/// connection and channel must live as long as the consumer.
async fn consume_again(
    broker: &Broker,
    vhost: &str,
    bus: &Bus,
) -> (lapin::Connection, Channel, Consumer) {
    let slot = Mutex::new(None);
    let consuming = wait_until(Duration::from_secs(120), || async {
        let Ok(conn) = broker.connect_as(vhost, &bus.certs(), HR).await else {
            return false;
        };
        let Ok(ch) = conn.create_channel().await else {
            return false;
        };
        let Ok(c) = consume(&ch, HR_QUEUE).await else {
            return false;
        };
        *slot.lock().unwrap() = Some((conn, ch, c));
        true
    })
    .await;
    assert!(consuming, "HR could not consume its queue again");
    slot.into_inner().unwrap().expect("a consumer")
}

/// Consumes (and acks) from HR's queue, reconnecting while the broker is away, until every
/// id in `want` arrived; returns how many deliveries that took (duplicates included).
async fn receive_all(broker: &Broker, vhost: &str, bus: &Bus, want: &[Uuid]) -> usize {
    let want: HashSet<String> = want.iter().map(|u| u.to_string()).collect();
    let mut got: HashSet<String> = HashSet::new();
    let mut deliveries = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while got.len() < want.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} arrived",
            got.len(),
            want.len()
        );
        let (_conn, _ch, mut c) = consume_again(broker, vhost, bus).await;
        while got.len() < want.len() {
            let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(5), c.next()).await
            else {
                break;
            };
            let id = d.properties.message_id().as_ref().unwrap().to_string();
            assert!(want.contains(&id), "a message nobody sent: {id}");
            deliveries += 1;
            got.insert(id);
            let _ = d.acker.ack(Default::default()).await;
        }
    }
    deliveries
}

#[tokio::test(flavor = "multi_thread")]
async fn every_message_arrives_across_a_broker_restart_and_a_broker_kill() {
    let broker = Broker::private();
    let vhost = broker.fresh_vhost();
    let bus = Bus::relaying(&broker, &vhost, &[HR], &[]).await;
    let mut sent = stream(&bus, 500).await;
    broker.stop(false); // a restart, mid-stream
    sent.extend(stream(&bus, 500).await); // accepts go on into the outbox
    let (code, body) = readyz_saying(&bus, "degraded").await;
    assert_eq!(code, 200, "still ready while the broker is away: {body}");
    assert!(body.contains("AMQP"), "{body}");
    broker.start();
    sent.extend(stream(&bus, 500).await);
    broker.stop(true); // SIGKILL, mid-stream
    sent.extend(stream(&bus, 500).await);
    broker.start();
    assert_eq!(sent.len(), 2000);
    let deliveries = receive_all(&broker, &vhost, &bus, &sent).await;
    assert!(deliveries >= 2000);
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_relaying_node_is_killed_another_node_finishes_the_job() {
    let broker = amqp::shared();
    let vhost = broker.fresh_vhost();
    let mut a = Bus::relaying(broker, &vhost, &[HR], &[]).await;
    let b = a.another_node();
    let mut sent = stream(&b, 1000).await;
    a.kill9();
    assert!(
        b.wait_for_log_within("relays the outbox", Duration::from_secs(30))
            .await,
        "the second node did not take over within 30 s; its log:\n{}",
        b.logged()
    );
    sent.extend(stream(&b, 1000).await);
    receive_all(broker, &vhost, &b, &sent).await;
}
