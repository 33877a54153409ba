//! The operator's reads and the redrive on the embedded store. A redrive is a write, so it
//! goes through the writer like every other: one savepoint, with its audit records.

use rusqlite::{Connection, params};
use uuid::Uuid;

use super::ops::{DEAD, PENDING, dead_from, from_ms, member_id, read_message};
use super::writer::Op;
use super::{SqliteStore, audit, now_ms};
use crate::identity::MemberId;
use crate::store::admin::redriven;
use crate::store::{Admin, DeadLetterItem, DeadLetters, Redrive, StoreError, Trace, TracedMessage};

#[async_trait::async_trait]
impl Admin for SqliteStore {
    async fn dead_letters(
        &self,
        recipient: &MemberId,
        after: i64,
        limit: usize,
    ) -> Result<DeadLetters, StoreError> {
        let recipient = recipient.to_string();
        self.read(move |c| {
            let total: i64 = c
                .prepare_cached(
                    "SELECT count(*) FROM deliveries WHERE recipient = ?1 AND state = 3",
                )?
                .query_row([&recipient], |r| r.get(0))?;
            let items = c
                .prepare_cached(
                    "SELECT d.msg_seq, m.sender, m.id, m.type, m.accepted_at, d.attempts,
                            d.dead, d.reason
                     FROM deliveries d JOIN messages m ON m.seq = d.msg_seq
                     WHERE d.recipient = ?1 AND d.state = 3 AND d.msg_seq > ?2
                     ORDER BY d.msg_seq LIMIT ?3",
                )?
                .query_map(params![recipient, after, limit as i64], |r| {
                    let id: Vec<u8> = r.get(2)?;
                    Ok(DeadLetterItem {
                        seq: r.get(0)?,
                        sender: member_id(r.get(1)?)?,
                        id: Uuid::from_slice(&id).unwrap_or_default(),
                        type_: r.get(3)?,
                        accepted_at: from_ms(r.get(4)?),
                        attempts: r.get(5)?,
                        dead: dead_from(r.get(6)?),
                        reason: r.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(DeadLetters {
                total: total as u64,
                items,
            })
        })
        .await
    }

    async fn redrive(
        &self,
        operator: &MemberId,
        recipient: &MemberId,
        which: Redrive,
    ) -> Result<Vec<(MemberId, Uuid)>, StoreError> {
        let (operator, recipient) = (operator.clone(), recipient.clone());
        self.submit(|answer| Op::Redrive {
            operator,
            recipient,
            which,
            answer,
        })
        .await
    }

    async fn dead_counts(&self) -> Result<Vec<(MemberId, u64)>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT recipient, count(*) FROM deliveries WHERE state = 3 GROUP BY recipient",
            )?
            .query_map([], |r| {
                Ok((member_id(r.get(0)?)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect()
        })
        .await
    }

    async fn trace(&self, id: Uuid) -> Result<Trace, StoreError> {
        self.read(move |c| {
            let audit = audit::of_message(c, id)?;
            let mut messages = Vec::new();
            let mut senders: Vec<&str> = audit
                .iter()
                .filter(|e| {
                    matches!(
                        e.action,
                        crate::audit::Action::Accept | crate::audit::Action::Query
                    )
                })
                .map(|e| e.actor.as_str())
                .collect();
            senders.sort_unstable();
            senders.dedup();
            for sender in senders {
                let Ok(sender) = MemberId::parse(sender) else {
                    continue;
                };
                let Some(record) = read_message(c, &sender, id)? else {
                    continue; // purged after retention: the audit records remain
                };
                let envelope = c
                    .prepare_cached("SELECT envelope FROM messages WHERE sender = ?1 AND id = ?2")?
                    .query_row(params![sender.as_str(), id.as_bytes()], |r| r.get(0))?;
                messages.push(TracedMessage { record, envelope });
            }
            Ok(Trace { messages, audit })
        })
        .await
    }
}

/// The writer's redrive: the chosen dead letters become pending with no attempts, visible
/// now, each with its audit record.
pub(super) fn redrive(
    c: &Connection,
    operator: &MemberId,
    recipient: &MemberId,
    which: &Redrive,
) -> rusqlite::Result<Vec<(MemberId, Uuid)>> {
    const PICK: &str = "SELECT d.seq, m.sender, m.id, m.type
         FROM deliveries d JOIN messages m ON m.seq = d.msg_seq
         WHERE d.recipient = ?1 AND d.state = 3";
    let rows: Vec<(i64, String, Vec<u8>, String)> = match which {
        Redrive::One { id, sender } => c
            .prepare_cached(&format!(
                "{PICK} AND d.msg_id = ?2 AND (?3 IS NULL OR m.sender = ?3) ORDER BY d.msg_seq"
            ))?
            .query_map(
                params![
                    recipient.as_str(),
                    id.as_bytes(),
                    sender.as_ref().map(|s| s.as_str())
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?
            .collect::<rusqlite::Result<_>>()?,
        Redrive::Oldest(n) => c
            .prepare_cached(&format!("{PICK} ORDER BY d.msg_seq LIMIT ?2"))?
            .query_map(params![recipient.as_str(), *n as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?,
    };
    let mut update = c.prepare_cached(
        "UPDATE deliveries SET state = ?2, attempts = 0, available_at = ?3, reason = NULL,
                               dead = NULL, lease_token = NULL
         WHERE seq = ?1 AND state = ?4",
    )?;
    let now = now_ms();
    let mut out = Vec::with_capacity(rows.len());
    for (seq, sender, id, type_) in rows {
        update.execute(params![seq, PENDING, now, DEAD])?;
        let id = Uuid::from_slice(&id).unwrap_or_default();
        audit::record(
            c,
            &redriven(operator, recipient.as_str(), &sender, &type_, id),
        )?;
        out.push((member_id(sender)?, id));
    }
    Ok(out)
}
