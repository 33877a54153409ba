//! The outbox relay: publishes what the accept wrote to the outbox, persistent and
//! `mandatory`, on a channel in confirm mode, and marks a delivery published only on the
//! broker's plain ack. A nack, a returned message, a lost connection or a confirm that never
//! comes leaves it in the outbox, to be published again (duplicates carry the same
//! `message_id`). One node relays at a time ([`Outbox::lead`]); another takes over when its
//! database session ends.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::select_all;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::uri::AMQPUri;
use tokio::sync::Notify;

use super::{AmqpError, Health, cloudevents, connect, topology};
use crate::identity::MemberId;
use crate::store::{DeadLetter, Outbox, Outgoing};

/// Deliveries published before their confirms are awaited (the window).
const BATCH: usize = 512;
/// How long a confirm may take before the connection is presumed stuck (a broker alarm blocks
/// publishers without an error).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Relay {
    pub outbox: Arc<dyn Outbox>,
    pub uri: AMQPUri,
    pub tls: Arc<rustls::ClientConfig>,
    /// Woken when something is appended for an AMQP member, here or on another node.
    pub wake: Vec<Arc<Notify>>,
    pub health: Arc<Health>,
}

/// Doubles from 100 ms to 10 s; reset once a connection works.
struct Backoff(Duration);

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(10));
        d
    }
}

impl Relay {
    pub async fn run(self) {
        let mut backoff = Backoff(Duration::from_millis(100));
        loop {
            let leadership = match self.outbox.lead().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "the relay cannot take its lock; retrying");
                    tokio::time::sleep(backoff.next()).await;
                    continue;
                }
            };
            tracing::info!("this node relays the outbox to RabbitMQ");
            tokio::select! {
                _ = leadership.lost => tracing::warn!("the relay lost its lock (database session ended)"),
                _ = self.lead_forever() => {}
            }
        }
    }

    async fn lead_forever(&self) {
        let mut backoff = Backoff(Duration::from_millis(100));
        loop {
            let Err(e) = self.session(&mut backoff).await;
            self.health.down(&e);
            tracing::warn!(error = %e, "relay: publishing stopped; reconnecting");
            tokio::time::sleep(backoff.next()).await;
        }
    }

    /// One connection's life: publish until something fails.
    async fn session(&self, backoff: &mut Backoff) -> Result<Infallible, AmqpError> {
        let conn = connect::open(&self.uri, &self.tls, "simpul relay").await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        self.health.up();
        *backoff = Backoff(Duration::from_millis(100));
        loop {
            let batch = self.outbox.outgoing(BATCH).await?;
            if batch.is_empty() {
                self.idle().await;
                continue;
            }
            let kept = self.publish(&ch, &batch).await?;
            if kept > 0 {
                // The broker refused some (a full queue, or no queue yet): not a broken
                // connection, so wait a little instead of reconnecting.
                tracing::warn!(
                    kept,
                    "relay: the broker refused or returned deliveries; kept in the outbox"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Waits for a wake-up, or a second at most (a lost signal only delays).
    async fn idle(&self) {
        let waits = self.wake.iter().map(|n| Box::pin(n.notified()));
        let any = async {
            if self.wake.is_empty() {
                std::future::pending::<()>().await
            } else {
                select_all(waits).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), any).await;
    }

    /// Publishes a batch and records what the broker confirmed; returns how many stay.
    async fn publish(&self, ch: &lapin::Channel, batch: &[Outgoing]) -> Result<usize, AmqpError> {
        let mut pending = Vec::with_capacity(batch.len());
        for o in batch {
            let (props, body) = match cloudevents::encode(&o.envelope) {
                Ok(m) => m,
                Err(e) => {
                    // Cannot happen to an envelope the bus accepted; never block the outbox on it.
                    tracing::error!(id = %o.id, error = %e, "relay: dead-lettering an unpublishable delivery");
                    self.outbox
                        .dead_lettered(
                            &o.recipient,
                            &o.sender,
                            o.id,
                            DeadLetter::Nacked,
                            &e.to_string(),
                        )
                        .await?;
                    continue;
                }
            };
            let confirm = ch
                .basic_publish(
                    topology::EXCHANGE.into(),
                    o.recipient.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        immediate: false,
                    },
                    &body,
                    props,
                )
                .await?;
            pending.push((o, confirm));
        }
        let mut acked: Vec<&Outgoing> = Vec::with_capacity(pending.len());
        let mut returned: HashSet<(String, String)> = HashSet::new();
        for (o, confirm) in pending {
            let outcome = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
                .await
                .map_err(|_| AmqpError::Broker("no publisher confirm within 30 s".into()))??;
            match outcome {
                Confirmation::Ack(None) => acked.push(o),
                Confirmation::Ack(Some(ret)) => {
                    // With several confirms in one ack, lapin may hand a return to the wrong
                    // publish: match returns by (message_id, recipient) instead.
                    let id = ret.properties.message_id().as_ref().map(|s| s.to_string());
                    returned.insert((id.unwrap_or_default(), ret.routing_key.to_string()));
                    acked.push(o);
                }
                Confirmation::Nack(_) | Confirmation::NotRequested => {}
            }
        }
        let done: Vec<(i64, MemberId)> = acked
            .into_iter()
            .filter(|o| !returned.contains(&(o.id.to_string(), o.recipient.to_string())))
            .map(|o| (o.seq, o.recipient.clone()))
            .collect();
        self.outbox.published(&done).await?;
        Ok(batch.len() - done.len())
    }
}
