//! The statements behind each store operation, run by the writer inside a savepoint (writes)
//! or by a pooled reader (reads).

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::audit::{index_subjects, record};
use super::now_ms;
use crate::audit::{Action, Entry};
use crate::identity::MemberId;
use crate::store::entries::{accepted, replied, settled, withdrawn};
use crate::store::{
    AppendOutcome, Appended, DeadLetter, DeliveryState, DeliveryStatus, LeaseRequest, Leased,
    Leases, MessageRecord, NewMessage, NewReply, ReplyOutcome, Settled, Ticket,
};

pub(super) const PENDING: i64 = 0;
const LEASED: i64 = 1;
const ACKED: i64 = 2;
pub(super) const DEAD: i64 = 3;

fn dead_code(d: DeadLetter) -> i64 {
    match d {
        DeadLetter::Nacked => 1,
        DeadLetter::OutOfAttempts => 2,
        DeadLetter::Withdrawn => 3,
    }
}

pub(super) fn dead_from(code: Option<i64>) -> Option<DeadLetter> {
    match code? {
        1 => Some(DeadLetter::Nacked),
        3 => Some(DeadLetter::Withdrawn),
        _ => Some(DeadLetter::OutOfAttempts),
    }
}

pub(super) fn from_ms(ms: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64)
}

pub(super) fn member_id(s: String) -> rusqlite::Result<MemberId> {
    MemberId::parse(&s).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

pub(super) fn raw(s: String) -> rusqlite::Result<Box<RawValue>> {
    RawValue::from_string(s).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

pub(super) fn append(c: &Connection, batch: &[NewMessage]) -> rusqlite::Result<AppendOutcome> {
    let now = now_ms();
    let mut results = Vec::with_capacity(batch.len());
    let mut find = c.prepare_cached(
        "SELECT hash, warnings, envelope FROM messages WHERE sender = ?1 AND id = ?2",
    )?;
    let mut insert = c.prepare_cached(
        "INSERT INTO messages(sender, id, type, hash, envelope, warnings, accepted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut deliver = c.prepare_cached(
        "INSERT INTO deliveries(msg_seq, msg_id, recipient, state, attempts, available_at)
         VALUES (?1, ?2, ?3, 0, 0, ?4)",
    )?;
    let mut feed = c.prepare_cached("INSERT INTO feed(type, msg_seq) VALUES (?1, ?2)")?;
    for (i, m) in batch.iter().enumerate() {
        let (sender, id) = (m.sender.as_str(), m.id.as_bytes());
        let existing: Option<(Vec<u8>, String, String)> = find
            .query_row(params![sender, id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        if let Some((hash, warnings, envelope)) = existing {
            if hash != m.hash {
                return Ok(AppendOutcome::Conflict(i));
            }
            results.push(Appended::Duplicate { warnings, envelope });
            continue;
        }
        insert.execute(params![
            sender,
            id,
            m.type_,
            &m.hash[..],
            m.envelope,
            m.warnings,
            now
        ])?;
        let seq = c.last_insert_rowid();
        for r in &m.recipients {
            deliver.execute(params![seq, id, r.as_str(), now])?;
        }
        let cursor = match m.to_feed {
            true => {
                feed.execute(params![m.type_, seq])?;
                Some(c.last_insert_rowid())
            }
            false => None,
        };
        record(c, &accepted(m))?;
        index_subjects(c, &m.subjects, (sender, m.id, &m.type_), cursor)?;
        results.push(Appended::Accepted);
    }
    Ok(AppendOutcome::Stored(results))
}

pub(super) fn lease(
    c: &Connection,
    member: &MemberId,
    req: LeaseRequest,
) -> rusqlite::Result<Leases> {
    let now = now_ms();
    let until = now + req.lease.as_millis() as i64;
    let expires_at = from_ms(until);
    let mut open = c.prepare_cached(
        "SELECT seq, msg_seq, state, attempts FROM deliveries
         WHERE recipient = ?1 AND state < 2 AND available_at <= ?2 ORDER BY seq LIMIT ?3",
    )?;
    let mut dead = c.prepare_cached(
        "UPDATE deliveries SET state = 3, available_at = 0, reason = ?2, dead = ?3 WHERE seq = ?1",
    )?;
    let mut take = c.prepare_cached(
        "UPDATE deliveries SET state = 1, attempts = attempts + 1, available_at = ?2,
                               lease_token = ?3 WHERE seq = ?1",
    )?;
    let mut message =
        c.prepare_cached("SELECT envelope, sender, id, type FROM messages WHERE seq = ?1")?;
    let mut whose = c.prepare_cached("SELECT sender, id, type FROM messages WHERE seq = ?1")?;
    let mut out = Vec::new();
    let mut gone = Vec::new();
    loop {
        let want = req.max - out.len();
        let rows: Vec<(i64, i64, i64, u32)> = open
            .query_map(params![member.as_str(), now, want as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let fetched = rows.len();
        let mut expired = 0;
        for (seq, msg_seq, state, attempts) in rows {
            if state == LEASED && attempts >= req.max_attempts {
                let reason = format!("not acked after {attempts} delivery attempt(s)");
                dead.execute(params![seq, reason, dead_code(DeadLetter::OutOfAttempts)])?;
                let (sender, id, type_): (String, Vec<u8>, String) =
                    whose.query_row([msg_seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                if let Ok(id) = Uuid::from_slice(&id) {
                    let e = Entry::new(member.as_str(), Action::DeadLetter)
                        .type_(type_)
                        .id(id)
                        .counterpart(&sender)
                        .detail(reason);
                    record(c, &e)?;
                    gone.push((member_id(sender)?, id));
                }
                expired += 1;
                continue;
            }
            let token = Uuid::now_v7();
            take.execute(params![seq, until, token.as_bytes()])?;
            let (env, sender, id, type_): (String, String, Vec<u8>, String) = message
                .query_row([msg_seq], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?;
            let mut e = Entry::new(member.as_str(), Action::Lease)
                .type_(type_)
                .counterpart(sender)
                .detail(format!("attempt {}", attempts + 1));
            e.id = Uuid::from_slice(&id).ok();
            record(c, &e)?;
            out.push(Leased {
                attempt: attempts + 1,
                token,
                expires_at,
                event: raw(env)?,
            });
        }
        if expired == 0 || fetched < want || out.len() >= req.max {
            return Ok(Leases {
                leased: out,
                expired: gone,
            });
        }
    }
}

/// Settles every leased delivery of `id` in `member`'s inbox: ids belong to their senders, so
/// two senders' messages may share one, and a consumer that acks an id it was given means
/// each of them. Returns the outcome and the senders whose delivery changed.
pub(super) fn settle(
    c: &Connection,
    member: &MemberId,
    ticket: Ticket,
    nack: Option<&str>,
) -> rusqlite::Result<(Settled, Vec<MemberId>)> {
    /// A delivery of the id in the member's inbox: row, state, sender, lease token, type.
    type Delivery = (i64, i64, String, Option<Vec<u8>>, String);
    let rows: Vec<Delivery> = c
        .prepare_cached(
            "SELECT d.seq, d.state, m.sender, d.lease_token, m.type
             FROM deliveries d JOIN messages m ON m.seq = d.msg_seq
             WHERE d.msg_id = ?2 AND d.recipient = ?1",
        )?
        .query_map(params![member.as_str(), ticket.id.as_bytes()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let (target, reason, dead) = match nack {
        None => (ACKED, None, None),
        Some(r) => (
            DEAD,
            Some(format!("nacked by {member}: {r}")),
            Some(dead_code(DeadLetter::Nacked)),
        ),
    };
    let mut update = c.prepare_cached(
        "UPDATE deliveries SET state = ?2, available_at = 0, reason = ?3, dead = ?4,
                               lease_token = NULL WHERE seq = ?1",
    )?;
    let mut changed = Vec::new();
    let (mut already, mut conflict, mut stale) = (false, false, false);
    for (seq, state, sender, token, type_) in rows {
        match state {
            LEASED if is_stale(ticket, token.as_deref()) => stale = true,
            LEASED => {
                update.execute(params![seq, target, reason, dead])?;
                record(c, &settled(member, nack, &type_, ticket.id, &sender))?;
                changed.push(member_id(sender)?);
            }
            s if s == target => already = true,
            PENDING => {}
            _ => conflict = true,
        }
    }
    let outcome = Settled::of(!changed.is_empty(), already, conflict, stale);
    Ok((outcome, changed))
}

/// A ticket naming a lease other than the current one (a lease taken before the store had
/// tokens has none, and only an ack without a token can name it).
fn is_stale(ticket: Ticket, current: Option<&[u8]>) -> bool {
    ticket
        .lease
        .is_some_and(|l| current.is_none_or(|c| c != l.as_bytes()))
}

/// A query in a provider's inbox, as a reply sees it.
struct Asked {
    delivery: i64,
    message: i64,
    state: i64,
    dead: Option<i64>,
    sender: String,
    reply: Option<String>,
    type_: String,
}

pub(super) fn reply(
    c: &Connection,
    provider: &MemberId,
    id: Uuid,
    requester: Option<&MemberId>,
    reply: &NewReply,
) -> rusqlite::Result<ReplyOutcome> {
    let mut rows: Vec<Asked> = c
        .prepare_cached(
            "SELECT d.seq, m.seq, d.state, d.dead, m.sender, m.reply, m.type
             FROM deliveries d JOIN messages m ON m.seq = d.msg_seq
             WHERE d.msg_id = ?2 AND d.recipient = ?1",
        )?
        .query_map(params![provider.as_str(), id.as_bytes()], |r| {
            Ok(Asked {
                delivery: r.get(0)?,
                message: r.get(1)?,
                state: r.get(2)?,
                dead: r.get(3)?,
                sender: r.get(4)?,
                reply: r.get(5)?,
                type_: r.get(6)?,
            })
        })?
        .filter(|r| {
            r.as_ref()
                .map_or(true, |a| requester.is_none_or(|q| q.as_str() == a.sender))
        })
        .collect::<rusqlite::Result<_>>()?;
    if rows.len() > 1 {
        // Prefer the one still open; two open ones need the provider to say whose.
        rows.retain(|r| r.state < ACKED);
        if rows.len() != 1 {
            return Ok(ReplyOutcome::Ambiguous);
        }
    }
    let Some(q) = rows.pop() else {
        return Ok(ReplyOutcome::NotFound);
    };
    if let Some(existing) = q.reply {
        return Ok(ReplyOutcome::Existing(existing));
    }
    if q.state == DEAD {
        return Ok(ReplyOutcome::Closed(
            dead_from(q.dead).unwrap_or(DeadLetter::Nacked),
        ));
    }
    c.prepare_cached("UPDATE messages SET reply = ?2 WHERE seq = ?1")?
        .execute(params![q.message, reply.body])?;
    c.prepare_cached("UPDATE deliveries SET state = 2, available_at = 0 WHERE seq = ?1")?
        .execute([q.delivery])?;
    record(c, &replied(provider, id, &q.sender, &q.type_, &reply.body))?;
    index_subjects(c, &reply.subjects, (&q.sender, id, &q.type_), None)?;
    Ok(ReplyOutcome::Stored {
        requester: member_id(q.sender)?,
    })
}

pub(super) fn withdraw(
    c: &Connection,
    requester: &MemberId,
    id: Uuid,
    reason: &str,
) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(
            "UPDATE deliveries SET state = 3, available_at = 0, reason = ?3, dead = ?4
             WHERE state < 2 AND msg_seq =
               (SELECT seq FROM messages WHERE sender = ?1 AND id = ?2 AND reply IS NULL)",
        )?
        .execute(params![
            requester.as_str(),
            id.as_bytes(),
            reason,
            dead_code(DeadLetter::Withdrawn)
        ])?;
    if n > 0 {
        record(c, &withdrawn(requester, id, reason))?;
    }
    Ok(n > 0)
}

pub(super) fn reopen(c: &Connection, requester: &MemberId, id: Uuid) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(
            "UPDATE deliveries SET state = 0, attempts = 0, available_at = ?3, reason = NULL,
                                   dead = NULL
             WHERE dead = ?4 AND msg_seq =
               (SELECT seq FROM messages WHERE sender = ?1 AND id = ?2 AND reply IS NULL)",
        )?
        .execute(params![
            requester.as_str(),
            id.as_bytes(),
            now_ms(),
            dead_code(DeadLetter::Withdrawn)
        ])?;
    Ok(n > 0)
}

pub(super) fn addressed(
    c: &Connection,
    recipient: &MemberId,
    id: Uuid,
) -> rusqlite::Result<Vec<(MemberId, String)>> {
    c.prepare_cached(
        "SELECT m.sender, m.type FROM deliveries d JOIN messages m ON m.seq = d.msg_seq
         WHERE d.msg_id = ?2 AND d.recipient = ?1",
    )?
    .query_map(params![recipient.as_str(), id.as_bytes()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?
    .map(|r| {
        let (m, t) = r?;
        Ok((member_id(m)?, t))
    })
    .collect()
}

pub(super) fn read_message(
    c: &Connection,
    sender: &MemberId,
    id: Uuid,
) -> rusqlite::Result<Option<MessageRecord>> {
    let row = c
        .prepare_cached(
            "SELECT seq, type, accepted_at, reply FROM messages WHERE sender = ?1 AND id = ?2",
        )?
        .query_row(params![sender.as_str(), id.as_bytes()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .optional()?;
    let Some((seq, type_, accepted_at_ms, reply)) = row else {
        return Ok(None);
    };
    let mut stmt = c.prepare_cached(
        "SELECT recipient, state, attempts, reason, dead FROM deliveries
         WHERE msg_id = ?1 AND msg_seq = ?2 ORDER BY seq",
    )?;
    let deliveries = stmt
        .query_map(params![id.as_bytes(), seq], |r| {
            let state = match r.get::<_, i64>(1)? {
                PENDING => DeliveryState::Pending,
                LEASED => DeliveryState::Delivered,
                ACKED => DeliveryState::Acked,
                _ => DeliveryState::DeadLettered,
            };
            Ok(DeliveryStatus {
                recipient: r.get(0)?,
                state,
                attempts: r.get(2)?,
                reason: r.get(3)?,
                dead: dead_from(r.get(4)?),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(MessageRecord {
        id,
        sender: sender.clone(),
        type_,
        accepted_at: from_ms(accepted_at_ms),
        deliveries,
        reply,
    }))
}
