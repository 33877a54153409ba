//! The outbox on PostgreSQL: deliveries to members served by RabbitMQ are rows in state
//! `outbox`, written by the accept's own statement, so a 202 and the duty to publish commit
//! together. One relay at a time (a session advisory lock) reads them in log order.

use std::time::SystemTime;

use uuid::Uuid;

use super::{PgStore, dead_word, member, pg_error};
use crate::identity::MemberId;
use crate::store::{Backlog, DeadLetter, Leadership, Outbox, Outgoing, StoreError};

/// Key of the session lock the relaying node holds.
const RELAY_LOCK: i64 = 0x5349_4d50_554c_0002;

#[async_trait::async_trait]
impl Outbox for PgStore {
    async fn lead(&self) -> Result<Leadership, StoreError> {
        self.lead_with(RELAY_LOCK, "the relay's").await
    }

    async fn outgoing(&self, limit: usize) -> Result<Vec<Outgoing>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT d.msg_seq, d.recipient, m.sender, m.id, m.envelope
                 FROM deliveries d JOIN messages m ON m.seq = d.msg_seq
                 WHERE d.state = 'outbox' ORDER BY d.msg_seq, d.ord LIMIT $1",
                &[&(limit as i64)],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|r| {
                Ok(Outgoing {
                    seq: r.get(0),
                    recipient: member(r.get(1))?,
                    sender: member(r.get(2))?,
                    id: r.get(3),
                    envelope: r.get(4),
                })
            })
            .collect()
    }

    async fn published(&self, done: &[(i64, MemberId)]) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let (seqs, recipients): (Vec<i64>, Vec<&str>) =
            done.iter().map(|(s, r)| (*s, r.as_str())).unzip();
        let c = self.client().await?;
        c.execute(
            "WITH p AS (
               UPDATE deliveries d SET state = 'published', attempts = d.attempts + 1
               FROM unnest($1::bigint[], $2::text[]) AS u(seq, recipient), messages m
               WHERE d.msg_seq = u.seq AND d.recipient = u.recipient AND d.state = 'outbox'
                 AND m.seq = d.msg_seq
               RETURNING d.recipient, m.sender, m.id, m.type)
             INSERT INTO audit(at, actor, action, type, msg_id, counterpart, detail)
             SELECT $3, recipient, 'publish', type, id, sender, 'amqp' FROM p",
            &[&seqs, &recipients, &crate::audit::now_us()],
        )
        .await
        .map_err(pg_error)?;
        Ok(())
    }

    async fn dead_lettered(
        &self,
        recipient: &MemberId,
        sender: &MemberId,
        id: Uuid,
        dead: DeadLetter,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "WITH x AS (
                   UPDATE deliveries d SET state = 'dead', dead = $4, reason = $5
                   FROM messages m
                   WHERE m.seq = d.msg_seq AND m.sender = $2 AND m.id = $3
                     AND d.recipient = $1 AND d.state IN ('outbox', 'published')
                   RETURNING m.type)
                 , a AS (
                   INSERT INTO audit(at, actor, action, type, msg_id, counterpart, detail)
                   SELECT $6, $1, 'dead_letter', type, $3, $2, $5 FROM x)
                 SELECT count(*) FROM x",
                &[
                    &recipient.as_str(),
                    &sender.as_str(),
                    &id,
                    &dead_word(dead),
                    &reason,
                    &crate::audit::now_us(),
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT count(*), min(m.accepted_at)
                 FROM deliveries d JOIN messages m ON m.seq = d.msg_seq
                 WHERE d.state = 'outbox'",
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(Backlog {
            count: row.get::<_, i64>(0) as u64,
            oldest: row.get::<_, Option<SystemTime>>(1),
        })
    }
}
