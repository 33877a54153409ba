//! Dead letters from the broker. A consumer's ack is invisible to the publisher, but what a
//! member's queue gives up on (its delivery limit, or the member's reject) reaches
//! `simpul.dead.<member>` with an `x-death` reason: every node consumes those queues and
//! records the reason in the delivery's status, so the sender sees it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::select_all;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use uuid::Uuid;

use super::{AmqpError, connect, topology};
use crate::identity::MemberId;
use crate::store::{DeadLetter, Outbox};

pub struct DeadLetters {
    pub outbox: Arc<dyn Outbox>,
    pub uri: AMQPUri,
    pub tls: Arc<rustls::ClientConfig>,
    pub members: Vec<MemberId>,
}

fn text(v: Option<&AMQPValue>) -> Option<String> {
    match v? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Why the broker gave up, from the newest `x-death` entry: the kind, and words for the sender.
pub fn reason(headers: Option<&FieldTable>) -> (DeadLetter, String) {
    let death = headers
        .and_then(|h| h.inner().get("x-death"))
        .and_then(|v| v.as_array())
        .and_then(|a| a.as_slice().first())
        .and_then(|e| e.as_field_table());
    let why = death
        .and_then(|d| text(d.inner().get("reason")))
        .unwrap_or_else(|| "unknown".into());
    let queue = death
        .and_then(|d| text(d.inner().get("queue")))
        .unwrap_or_default();
    match why.as_str() {
        "delivery_limit" => (
            DeadLetter::OutOfAttempts,
            format!("dead-lettered by RabbitMQ: delivery limit reached in {queue}"),
        ),
        "rejected" => (
            DeadLetter::Nacked,
            format!("dead-lettered by RabbitMQ: rejected by the consumer of {queue}"),
        ),
        other => (
            DeadLetter::OutOfAttempts,
            format!("dead-lettered by RabbitMQ: {other} in {queue}"),
        ),
    }
}

impl DeadLetters {
    pub async fn run(self) {
        if self.members.is_empty() {
            return;
        }
        loop {
            if let Err(e) = self.session().await {
                tracing::warn!(error = %e, "dead-letter consumer stopped; reconnecting");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn session(&self) -> Result<(), AmqpError> {
        let conn = connect::open(&self.uri, &self.tls, "simpul dead letters").await?;
        let ch = conn.create_channel().await?;
        ch.basic_qos(64, BasicQosOptions::default()).await?;
        let mut consumers = Vec::new();
        for m in &self.members {
            let c = ch
                .basic_consume(
                    topology::dead_queue(m).as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            consumers.push(c.map(move |d| (m.clone(), d)));
        }
        let mut all = select_all(consumers);
        while let Some((member, delivery)) = all.next().await {
            let delivery = delivery?;
            match self.record(&member, &delivery).await {
                Ok(()) => {
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not record a dead letter; it stays queued");
                    let requeue = BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    };
                    delivery.acker.nack(requeue).await?;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        Err(AmqpError::Broker(
            "the dead-letter queues were cancelled".into(),
        ))
    }

    async fn record(&self, recipient: &MemberId, d: &Delivery) -> Result<(), AmqpError> {
        let headers = d.properties.headers().as_ref();
        let id = d
            .properties
            .message_id()
            .as_ref()
            .and_then(|s| Uuid::parse_str(s.as_str()).ok());
        let sender = text(headers.and_then(|h| h.inner().get("cloudEvents_source")))
            .and_then(|s| MemberId::parse(&s).ok());
        let (Some(id), Some(sender)) = (id, sender) else {
            tracing::warn!(recipient = %recipient, "a dead letter without a simpul message id or source; dropped");
            return Ok(());
        };
        let (kind, why) = reason(headers);
        let found = self
            .outbox
            .dead_lettered(recipient, &sender, id, kind, &why)
            .await?;
        tracing::info!(%recipient, %id, recorded = found, "{why}");
        Ok(())
    }
}
