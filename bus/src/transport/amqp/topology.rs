//! What the broker must hold for the registry: the exchanges, one quorum queue per member
//! with `delivery = "amqp"` (and its dead-letter queue), and the bindings by recipient.
//! Declarations are idempotent; a queue declared earlier with other arguments is reported by
//! name (the broker cannot change a queue's arguments in place).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::AmqpError;
use crate::identity::MemberId;

/// Every accepted message for an AMQP member is published here, routed by recipient id.
pub const EXCHANGE: &str = "simpul.messages";
/// Where a member's queue sends what it gives up on (delivery limit, or a reject).
pub const DLX: &str = "simpul.dlx";

pub fn inbox_queue(m: &MemberId) -> String {
    format!("simpul.inbox.{m}")
}

pub fn dead_queue(m: &MemberId) -> String {
    format!("simpul.dead.{m}")
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// The quorum queue's arguments: a message delivered `max_attempts` times without an ack is
/// dead-lettered, at least once; and should an operator limit the queue's length (a policy),
/// a full queue refuses publishes, which the relay keeps in the outbox, instead of dropping
/// the oldest (at-least-once dead-lettering requires it).
pub fn inbox_arguments(max_attempts: u32) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(max_attempts.saturating_sub(1).min(i32::MAX as u32) as i32),
    );
    args.insert("x-dead-letter-exchange".into(), text(DLX));
    args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    args.insert("x-overflow".into(), text("reject-publish"));
    args
}

fn dead_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args
}

/// Declares the exchanges and, for each member, its queues and bindings.
pub async fn declare(
    ch: &Channel,
    members: &[MemberId],
    max_attempts: u32,
) -> Result<(), AmqpError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for x in [EXCHANGE, DLX] {
        ch.exchange_declare(
            x.into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(|e| AmqpError::Broker(format!("exchange {x}: {e}")))?;
    }
    for m in members {
        for (queue, exchange, args) in [
            (inbox_queue(m), EXCHANGE, inbox_arguments(max_attempts)),
            (dead_queue(m), DLX, dead_arguments()),
        ] {
            ch.queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
                .await
                .map_err(|e| {
                    AmqpError::Broker(format!(
                        "queue {queue}: {e} (a queue declared with other arguments must be \
                         deleted or drained first)"
                    ))
                })?;
            ch.queue_bind(
                queue.as_str().into(),
                exchange.into(),
                m.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| AmqpError::Broker(format!("binding {queue}: {e}")))?;
        }
    }
    Ok(())
}
