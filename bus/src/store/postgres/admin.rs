//! The operator's reads and the redrive on PostgreSQL. A redrive is one statement: the
//! chosen dead letters go back to the inbox (or the transport's outbox) and their audit
//! records are written by the same CTE, so no node sees one without the other.

use uuid::Uuid;

use super::log::read_message;
use super::{PgStore, audit, dead_from, member, pg_error};
use crate::audit::Action;
use crate::identity::MemberId;
use crate::store::{Admin, DeadLetterItem, DeadLetters, Redrive, StoreError, Trace, TracedMessage};

#[async_trait::async_trait]
impl Admin for PgStore {
    async fn dead_letters(
        &self,
        recipient: &MemberId,
        after: i64,
        limit: usize,
    ) -> Result<DeadLetters, StoreError> {
        let c = self.client().await?;
        let total: i64 = c
            .query_one(
                "SELECT count(*) FROM deliveries WHERE recipient = $1 AND state = 'dead'",
                &[&recipient.as_str()],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        let rows = c
            .query(
                "SELECT d.msg_seq, m.sender, m.id, m.type, m.accepted_at, d.attempts, d.dead,
                        d.reason
                 FROM deliveries d JOIN messages m ON m.seq = d.msg_seq
                 WHERE d.recipient = $1 AND d.state = 'dead' AND d.msg_seq > $2
                 ORDER BY d.msg_seq LIMIT $3",
                &[&recipient.as_str(), &after, &(limit as i64)],
            )
            .await
            .map_err(pg_error)?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(DeadLetterItem {
                    seq: r.get(0),
                    sender: member(r.get(1))?,
                    id: r.get(2),
                    type_: r.get(3),
                    accepted_at: r.get(4),
                    attempts: r.get::<_, i32>(5) as u32,
                    dead: dead_from(r.get(6)),
                    reason: r.get(7),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(DeadLetters {
            total: total as u64,
            items,
        })
    }

    async fn redrive(
        &self,
        operator: &MemberId,
        recipient: &MemberId,
        which: Redrive,
    ) -> Result<Vec<(MemberId, Uuid)>, StoreError> {
        let (id, sender, limit) = match &which {
            Redrive::One { id, sender } => (Some(*id), sender.as_ref().map(|s| s.as_str()), None),
            Redrive::Oldest(n) => (None, None, Some(*n as i64)),
        };
        // A member a transport serves gets it through the outbox again.
        let state = if self.relayed.iter().any(|r| r == recipient.as_str()) {
            "outbox"
        } else {
            "pending"
        };
        let rows = self
            .client()
            .await?
            .query(
                "WITH picked AS (
                   SELECT d.recipient, d.msg_seq FROM deliveries d
                   JOIN messages m ON m.seq = d.msg_seq
                   WHERE d.recipient = $1 AND d.state = 'dead'
                     AND ($2::uuid IS NULL OR d.msg_id = $2)
                     AND ($3::text IS NULL OR m.sender = $3)
                   ORDER BY d.msg_seq LIMIT $4 FOR UPDATE OF d)
                 , upd AS (
                   UPDATE deliveries d SET state = $5, attempts = 0, visible_at = now(),
                     reason = NULL, dead = NULL, lease_token = NULL
                   FROM picked p, messages m
                   WHERE d.recipient = p.recipient AND d.msg_seq = p.msg_seq
                     AND m.seq = d.msg_seq
                   RETURNING m.sender, m.id, m.type)
                 , a AS (
                   INSERT INTO audit(at, actor, action, type, msg_id, counterpart, detail)
                   SELECT $6, $7, $8, type, id, $1, 'sent by ' || sender FROM upd)
                 SELECT sender, id FROM upd",
                &[
                    &recipient.as_str(),
                    &id,
                    &sender,
                    &limit,
                    &state,
                    &crate::audit::now_us(),
                    &operator.as_str(),
                    &Action::Redrive.as_str(),
                ],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|r| Ok((member(r.get(0))?, r.get(1))))
            .collect()
    }

    async fn dead_counts(&self) -> Result<Vec<(MemberId, u64)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT recipient, count(*) FROM deliveries WHERE state = 'dead'
                 GROUP BY recipient",
                &[],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|r| Ok((member(r.get(0))?, r.get::<_, i64>(1) as u64)))
            .collect()
    }

    async fn trace(&self, id: Uuid) -> Result<Trace, StoreError> {
        let c = self.client().await?;
        let audit = c
            .query(
                &format!(
                    "SELECT {} FROM audit WHERE msg_id = $1 ORDER BY seq",
                    audit::COLUMNS
                ),
                &[&id],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(audit::entry)
            .collect::<Result<Vec<_>, _>>()?;
        let mut senders: Vec<&str> = audit
            .iter()
            .filter(|e| matches!(e.action, Action::Accept | Action::Query))
            .map(|e| e.actor.as_str())
            .collect();
        senders.sort_unstable();
        senders.dedup();
        let mut messages = Vec::new();
        for sender in senders {
            if let Some((record, envelope)) = read_message(&**c, &member(sender)?, id).await? {
                messages.push(TracedMessage { record, envelope });
            }
        }
        Ok(Trace { messages, audit })
    }
}
