//! The statements behind each store operation on PostgreSQL. States are words in SQL
//! (`pending`, `leased`, `acked`, `dead`), so an operator reading the tables needs no key.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use serde_json::value::RawValue;
use tokio_postgres::{GenericClient, Statement};
use uuid::Uuid;

use super::{PgStore, pg_error};
use crate::identity::MemberId;
use crate::store::{
    AppendOutcome, Appended, DeadLetter, DeliveryQueue, DeliveryState, DeliveryStatus, FeedItem,
    LeaseRequest, Leased, Leases, MessageLog, MessageRecord, NewMessage, ReplyOutcome, Settled,
    StoreError, Ticket,
};

/// Class id of the advisory locks that order each feed type's numbers by commit.
const FEED_LOCK: i32 = 0x5349_4d50;

fn dead_word(d: DeadLetter) -> &'static str {
    match d {
        DeadLetter::Nacked => "nacked",
        DeadLetter::OutOfAttempts => "out_of_attempts",
        DeadLetter::Withdrawn => "withdrawn",
    }
}

fn dead_from(word: Option<&str>) -> Option<DeadLetter> {
    match word? {
        "nacked" => Some(DeadLetter::Nacked),
        "withdrawn" => Some(DeadLetter::Withdrawn),
        _ => Some(DeadLetter::OutOfAttempts),
    }
}

fn member(s: &str) -> Result<MemberId, StoreError> {
    MemberId::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn raw(s: String) -> Result<Box<RawValue>, StoreError> {
    RawValue::from_string(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A message and its deliveries, in one statement; nothing when (sender, id) exists.
const INSERT: &str = "
    WITH m AS (
      INSERT INTO messages(sender, id, type, hash, envelope, warnings)
      VALUES ($1, $2, $3, $4, $5, $6)
      ON CONFLICT (sender, id) DO NOTHING RETURNING seq)
    , d AS (
      INSERT INTO deliveries(recipient, msg_seq, msg_id, state, ord)
      SELECT r, m.seq, $2, 'pending', o
      FROM m, unnest($7::text[]) WITH ORDINALITY AS u(r, o))
    SELECT seq FROM m";

/// Inserts one message: accepted (with its row number), a duplicate of the stored one, or
/// `None` when its id was used with other content.
async fn insert_one(
    c: &impl GenericClient,
    insert: &Statement,
    m: &NewMessage,
) -> Result<Option<(Appended, Option<i64>)>, StoreError> {
    let recipients: Vec<&str> = m.recipients.iter().map(|r| r.as_str()).collect();
    let row = c
        .query_opt(
            insert,
            &[
                &m.sender.as_str(),
                &m.id,
                &m.type_,
                &&m.hash[..],
                &m.envelope,
                &m.warnings,
                &recipients,
            ],
        )
        .await
        .map_err(pg_error)?;
    if let Some(row) = row {
        return Ok(Some((Appended::Accepted, Some(row.get(0)))));
    }
    let old = c
        .query_one(
            "SELECT hash, warnings FROM messages WHERE sender = $1 AND id = $2",
            &[&m.sender.as_str(), &m.id],
        )
        .await
        .map_err(pg_error)?;
    if old.get::<_, &[u8]>(0) != m.hash {
        return Ok(None);
    }
    let warnings = old.get(1);
    Ok(Some((Appended::Duplicate { warnings }, None)))
}

#[async_trait::async_trait]
impl MessageLog for PgStore {
    async fn append(&self, batch: Vec<NewMessage>) -> Result<AppendOutcome, StoreError> {
        let mut c = self.client().await?;
        let insert = c.prepare_cached(INSERT).await.map_err(pg_error)?;
        if let [m] = &batch[..]
            && !m.to_feed
        {
            // One statement is its own transaction: one round trip and one commit.
            let client: &tokio_postgres::Client = &c;
            return Ok(match insert_one(client, &insert, m).await? {
                Some((appended, _)) => AppendOutcome::Stored(vec![appended]),
                None => AppendOutcome::Conflict(0),
            });
        }
        let tx = c.transaction().await.map_err(pg_error)?;
        let mut results = Vec::with_capacity(batch.len());
        let mut feed: Vec<(&str, i64)> = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            let Some((appended, seq)) = insert_one(&*tx, &insert, m).await? else {
                return Ok(AppendOutcome::Conflict(i)); // dropping `tx` rolls it back
            };
            if let Some(seq) = seq.filter(|_| m.to_feed) {
                feed.push((&m.type_, seq));
            }
            results.push(appended);
        }
        if !feed.is_empty() {
            // Locks in a fixed order, so two batches of several types cannot deadlock.
            let types: BTreeSet<&str> = feed.iter().map(|(t, _)| *t).collect();
            for t in types {
                tx.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                    &[&FEED_LOCK, &t],
                )
                .await
                .map_err(pg_error)?;
            }
            let (types, seqs): (Vec<&str>, Vec<i64>) = feed.into_iter().unzip();
            tx.execute(
                "INSERT INTO feed(type, msg_seq) SELECT * FROM unnest($1::text[], $2::bigint[])",
                &[&types, &seqs],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(AppendOutcome::Stored(results))
    }

    async fn reply(
        &self,
        provider: &MemberId,
        id: Uuid,
        requester: Option<MemberId>,
        body: String,
    ) -> Result<ReplyOutcome, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg_error)?;
        let rows = tx
            .query(
                "SELECT d.msg_seq, d.state, d.dead, m.sender, m.reply
                 FROM deliveries d JOIN messages m ON m.seq = d.msg_seq
                 WHERE d.recipient = $1 AND d.msg_id = $2
                 FOR UPDATE OF d, m",
                &[&provider.as_str(), &id],
            )
            .await
            .map_err(pg_error)?;
        let mut rows: Vec<_> = rows
            .into_iter()
            .filter(|r| {
                requester
                    .as_ref()
                    .is_none_or(|q| q.as_str() == r.get::<_, &str>(3))
            })
            .collect();
        if rows.len() > 1 {
            // Prefer the one still open; two open ones need the provider to say whose.
            rows.retain(|r| matches!(r.get::<_, &str>(1), "pending" | "leased"));
            if rows.len() != 1 {
                return Ok(ReplyOutcome::Ambiguous);
            }
        }
        let Some(q) = rows.pop() else {
            return Ok(ReplyOutcome::NotFound);
        };
        if let Some(existing) = q.get::<_, Option<String>>(4) {
            return Ok(ReplyOutcome::Existing(existing));
        }
        if q.get::<_, &str>(1) == "dead" {
            return Ok(ReplyOutcome::Closed(
                dead_from(q.get(2)).unwrap_or(DeadLetter::Nacked),
            ));
        }
        let seq: i64 = q.get(0);
        tx.execute(
            "UPDATE messages SET reply = $2 WHERE seq = $1",
            &[&seq, &body],
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            "UPDATE deliveries SET state = 'acked', lease_token = NULL
             WHERE recipient = $1 AND msg_seq = $2",
            &[&provider.as_str(), &seq],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(ReplyOutcome::Stored {
            requester: member(q.get(3))?,
        })
    }

    async fn withdraw(
        &self,
        requester: &MemberId,
        id: Uuid,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE deliveries SET state = 'dead', reason = $3, dead = 'withdrawn',
                                       lease_token = NULL
                 WHERE state IN ('pending', 'leased') AND msg_seq =
                   (SELECT seq FROM messages WHERE sender = $1 AND id = $2 AND reply IS NULL)",
                &[&requester.as_str(), &id, &reason],
            )
            .await
            .map_err(pg_error)?;
        Ok(n > 0)
    }

    async fn reopen(&self, requester: &MemberId, id: Uuid) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE deliveries SET state = 'pending', attempts = 0, visible_at = now(),
                                       reason = NULL, dead = NULL
                 WHERE dead = 'withdrawn' AND msg_seq =
                   (SELECT seq FROM messages WHERE sender = $1 AND id = $2 AND reply IS NULL)",
                &[&requester.as_str(), &id],
            )
            .await
            .map_err(pg_error)?;
        Ok(n > 0)
    }

    async fn addressed(
        &self,
        recipient: &MemberId,
        id: Uuid,
    ) -> Result<Vec<(MemberId, String)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT m.sender, m.type FROM deliveries d JOIN messages m ON m.seq = d.msg_seq
                 WHERE d.recipient = $1 AND d.msg_id = $2",
                &[&recipient.as_str(), &id],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|r| Ok((member(r.get(0))?, r.get(1))))
            .collect()
    }

    async fn message(
        &self,
        sender: &MemberId,
        id: Uuid,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let c = self.client().await?;
        let Some(row) = c
            .query_opt(
                "SELECT seq, type, accepted_at, reply FROM messages WHERE sender = $1 AND id = $2",
                &[&sender.as_str(), &id],
            )
            .await
            .map_err(pg_error)?
        else {
            return Ok(None);
        };
        let seq: i64 = row.get(0);
        let deliveries = c
            .query(
                "SELECT recipient, state, attempts, reason, dead FROM deliveries
                 WHERE msg_seq = $1 ORDER BY ord",
                &[&seq],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| DeliveryStatus {
                recipient: r.get(0),
                state: match r.get::<_, &str>(1) {
                    "pending" => DeliveryState::Pending,
                    "leased" => DeliveryState::Delivered,
                    "acked" => DeliveryState::Acked,
                    _ => DeliveryState::DeadLettered,
                },
                attempts: r.get::<_, i32>(2) as u32,
                reason: r.get(3),
                dead: dead_from(r.get(4)),
            })
            .collect();
        Ok(Some(MessageRecord {
            id,
            sender: sender.clone(),
            type_: row.get(1),
            accepted_at: row.get::<_, SystemTime>(2),
            deliveries,
            reply: row.get(3),
        }))
    }

    async fn feed(
        &self,
        _reader: &MemberId,
        type_: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FeedItem>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT f.seq, m.envelope FROM feed f JOIN messages m ON m.seq = f.msg_seq
                 WHERE f.type = $1 AND f.seq > $2 ORDER BY f.seq LIMIT $3",
                &[&type_, &after, &(limit as i64)],
            )
            .await
            .map_err(pg_error)?;
        rows.into_iter()
            .map(|r| {
                Ok(FeedItem {
                    cursor: r.get(0),
                    event: raw(r.get(1))?,
                })
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl DeliveryQueue for PgStore {
    async fn lease(&self, member_: &MemberId, req: LeaseRequest) -> Result<Leases, StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "WITH picked AS (
                   SELECT recipient, msg_seq FROM deliveries
                   WHERE recipient = $1 AND state IN ('pending', 'leased') AND visible_at <= now()
                   ORDER BY msg_seq LIMIT $2 FOR UPDATE SKIP LOCKED)
                 , done AS (
                   SELECT p.*, (d.state = 'leased' AND d.attempts >= $4) AS spent
                   FROM picked p JOIN deliveries d USING (recipient, msg_seq))
                 UPDATE deliveries d SET
                   state = CASE WHEN x.spent THEN 'dead' ELSE 'leased' END,
                   attempts = d.attempts + CASE WHEN x.spent THEN 0 ELSE 1 END,
                   visible_at = now() + $3::float8 * interval '1 millisecond',
                   lease_token = CASE WHEN x.spent THEN NULL ELSE gen_random_uuid() END,
                   reason = CASE WHEN x.spent
                     THEN 'not acked after ' || d.attempts || ' delivery attempt(s)'
                     ELSE d.reason END,
                   dead = CASE WHEN x.spent THEN 'out_of_attempts' END
                 FROM done x, messages m
                 WHERE d.recipient = x.recipient AND d.msg_seq = x.msg_seq AND m.seq = d.msg_seq
                 RETURNING d.msg_seq, x.spent, d.attempts, d.visible_at, m.envelope, m.sender, m.id,
                           d.lease_token",
            )
            .await
            .map_err(pg_error)?;
        let lease_ms = req.lease.as_millis() as f64;
        let max_attempts = req.max_attempts.min(i32::MAX as u32) as i32;
        let mut out = Leases::default();
        loop {
            let want = req.max - out.leased.len();
            let mut rows = c
                .query(
                    &stmt,
                    &[&member_.as_str(), &(want as i64), &lease_ms, &max_attempts],
                )
                .await
                .map_err(pg_error)?;
            rows.sort_by_key(|r| r.get::<_, i64>(0));
            let fetched = rows.len();
            let mut expired = 0;
            for r in rows {
                if r.get::<_, bool>(1) {
                    out.expired.push((member(r.get(5))?, r.get(6)));
                    expired += 1;
                    continue;
                }
                out.leased.push(Leased {
                    attempt: r.get::<_, i32>(2) as u32,
                    token: r.get(7),
                    expires_at: r.get(3),
                    event: raw(r.get(4))?,
                });
            }
            if expired == 0 || fetched < want || out.leased.len() >= req.max {
                return Ok(out);
            }
        }
    }

    async fn has_ready(&self, member_: &MemberId) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM deliveries WHERE recipient = $1
                   AND state IN ('pending', 'leased') AND visible_at <= now())",
                &[&member_.as_str()],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.get(0))
    }

    async fn ack(
        &self,
        member_: &MemberId,
        tickets: Vec<Ticket>,
    ) -> Result<Vec<Settled>, StoreError> {
        let settled = self.settle(member_, &tickets, None).await?;
        Ok(settled.into_iter().map(|(s, _)| s).collect())
    }

    async fn nack(
        &self,
        member_: &MemberId,
        ticket: Ticket,
        reason: &str,
    ) -> Result<(Settled, Vec<MemberId>), StoreError> {
        let mut settled = self.settle(member_, &[ticket], Some(reason)).await?;
        Ok(settled.pop().unwrap_or((Settled::NotFound, Vec::new())))
    }
}

impl PgStore {
    /// Settles every leased delivery of each id in `member_`'s inbox, in one transaction:
    /// acks, or with `nack` dead-letters with the reason. Answers per id, with the senders
    /// whose delivery changed.
    async fn settle(
        &self,
        member_: &MemberId,
        tickets: &[Ticket],
        nack: Option<&str>,
    ) -> Result<Vec<(Settled, Vec<MemberId>)>, StoreError> {
        let ids: Vec<Uuid> = tickets.iter().map(|t| t.id).collect();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg_error)?;
        let rows = tx
            .query(
                "SELECT d.msg_id, d.msg_seq, d.state, m.sender, d.lease_token
                 FROM deliveries d JOIN messages m ON m.seq = d.msg_seq
                 WHERE d.recipient = $1 AND d.msg_id = ANY($2)
                 FOR UPDATE OF d",
                &[&member_.as_str(), &ids],
            )
            .await
            .map_err(pg_error)?;
        let (target, reason, dead) = match nack {
            None => ("acked", None, None),
            Some(r) => (
                "dead",
                Some(format!("nacked by {member_}: {r}")),
                Some(dead_word(DeadLetter::Nacked)),
            ),
        };
        // The rows as each ticket finds them: a ticket sees what the ones before it in the
        // batch settled, as it would one request later.
        struct Row {
            id: Uuid,
            seq: i64,
            state: String,
            sender: String,
            token: Option<Uuid>,
        }
        let mut rows: Vec<Row> = rows
            .iter()
            .map(|r| Row {
                id: r.get(0),
                seq: r.get(1),
                state: r.get(2),
                sender: r.get(3),
                token: r.get(4),
            })
            .collect();
        let mut answers = Vec::with_capacity(tickets.len());
        let mut change: Vec<i64> = Vec::new();
        for t in tickets {
            let (mut changed, mut already, mut conflict, mut stale) =
                (Vec::new(), false, false, false);
            for r in rows.iter_mut().filter(|r| r.id == t.id) {
                match r.state.as_str() {
                    "leased" if t.lease.is_some_and(|l| r.token != Some(l)) => stale = true,
                    "leased" => {
                        change.push(r.seq);
                        changed.push(member(&r.sender)?);
                        r.state = target.to_owned();
                        r.token = None;
                    }
                    s if s == target => already = true,
                    "pending" => {}
                    _ => conflict = true,
                }
            }
            let outcome = Settled::of(!changed.is_empty(), already, conflict, stale);
            answers.push((outcome, changed));
        }
        change.sort_unstable();
        change.dedup();
        if !change.is_empty() {
            tx.execute(
                "UPDATE deliveries SET state = $3, reason = $4, dead = $5, lease_token = NULL
                 WHERE recipient = $1 AND msg_seq = ANY($2)",
                &[&member_.as_str(), &change, &target, &reason, &dead],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(answers)
    }
}

/// Deletes what is settled and older than `retention`, in small steps, every `every`: status
/// stays readable for the retention period, and settled rows do not pile up as dead tuples
/// under the queue. Open deliveries are never purged. Every node runs it; `SKIP LOCKED`
/// keeps them out of each other's way.
pub(super) async fn purge(pool: Pool, retention: Duration, every: Duration) {
    let secs = retention.as_secs_f64();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        let Ok(c) = pool.get().await else { continue };
        loop {
            let n = c
                .execute(
                    "DELETE FROM messages WHERE seq IN (
                       SELECT seq FROM messages m
                       WHERE accepted_at < now() - $1::float8 * interval '1 second'
                         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_seq = m.seq
                                           AND d.state IN ('pending', 'leased'))
                       ORDER BY accepted_at LIMIT 1000 FOR UPDATE SKIP LOCKED)",
                    &[&secs],
                )
                .await;
            match n {
                Ok(1000) => continue,
                Ok(0) => break,
                Ok(n) => {
                    tracing::info!(purged = n, "purged settled messages past retention");
                    break;
                }
                Err(e) => {
                    tracing::warn!(why = %super::describe(&e), "purge failed");
                    break;
                }
            }
        }
    }
}
