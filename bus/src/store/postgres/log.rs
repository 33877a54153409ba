//! The message log on PostgreSQL: appends (a single message without a feed is one statement,
//! its own transaction), replies, withdrawals, status and feeds.

use std::collections::BTreeSet;
use std::time::SystemTime;

use tokio_postgres::{GenericClient, Statement};
use uuid::Uuid;

use super::{PgStore, audit, dead_from, member, pg_error, raw};
use crate::identity::MemberId;
use crate::store::entries::{accepted, feed_read, replied, status_read, withdrawn};
use crate::store::{
    AppendOutcome, Appended, DeadLetter, DeliveryState, DeliveryStatus, FeedItem, MessageLog,
    MessageRecord, NewMessage, NewReply, ReplyOutcome, StoreError,
};

/// Class id of the advisory locks that order each feed type's numbers by commit.
const FEED_LOCK: i32 = 0x5349_4d50;

/// A message, its deliveries and its audit record, in one statement; nothing when (sender,
/// id) exists.
const INSERT: &str = "
    WITH m AS (
      INSERT INTO messages(sender, id, type, hash, envelope, warnings)
      VALUES ($1, $2, $3, $4, $5, $6)
      ON CONFLICT (sender, id) DO NOTHING RETURNING seq)
    , d AS (
      INSERT INTO deliveries(recipient, msg_seq, msg_id, state, ord)
      SELECT r, m.seq, $2, CASE WHEN r = ANY($8::text[]) THEN 'outbox' ELSE 'pending' END, o
      FROM m, unnest($7::text[]) WITH ORDINALITY AS u(r, o))
    , a AS (
      INSERT INTO audit(at, actor, action, type, msg_id, counterpart, digest)
      SELECT $9, $1, $10, $3, $2, $11, $12 FROM m)
    , s AS (
      INSERT INTO audit_subjects(subject, sender, msg_id, type, msg_seq)
      SELECT u.s, $1, $2, $3, m.seq FROM m, unnest($13::bytea[]) AS u(s))
    SELECT seq FROM m";

/// Inserts one message: accepted (with its row number), a duplicate of the stored one, or
/// `None` when its id was used with other content.
async fn insert_one(
    c: &impl GenericClient,
    insert: &Statement,
    m: &NewMessage,
    relayed: &[String],
) -> Result<Option<(Appended, Option<i64>)>, StoreError> {
    let recipients: Vec<&str> = m.recipients.iter().map(|r| r.as_str()).collect();
    let audit = accepted(m);
    let subjects: Vec<&[u8]> = m.subjects.iter().map(|s| &s[..]).collect();
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
                &relayed,
                &audit.at,
                &audit.action.as_str(),
                &audit.counterpart,
                &audit.digest,
                &subjects,
            ],
        )
        .await
        .map_err(pg_error)?;
    if let Some(row) = row {
        return Ok(Some((Appended::Accepted, Some(row.get(0)))));
    }
    let old = c
        .query_one(
            "SELECT hash, warnings, envelope FROM messages WHERE sender = $1 AND id = $2",
            &[&m.sender.as_str(), &m.id],
        )
        .await
        .map_err(pg_error)?;
    if old.get::<_, &[u8]>(0) != m.hash {
        return Ok(None);
    }
    let (warnings, envelope) = (old.get(1), old.get(2));
    Ok(Some((Appended::Duplicate { warnings, envelope }, None)))
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
            return Ok(match insert_one(client, &insert, m, &self.relayed).await? {
                Some((appended, _)) => AppendOutcome::Stored(vec![appended]),
                None => AppendOutcome::Conflict(0),
            });
        }
        let tx = c.transaction().await.map_err(pg_error)?;
        let mut results = Vec::with_capacity(batch.len());
        let mut feed: Vec<(&str, i64)> = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            let Some((appended, seq)) = insert_one(&*tx, &insert, m, &self.relayed).await? else {
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
                "WITH f AS (
                   INSERT INTO feed(type, msg_seq)
                   SELECT * FROM unnest($1::text[], $2::bigint[]) RETURNING seq, msg_seq)
                 UPDATE audit_subjects s SET feed_cursor = f.seq FROM f
                 WHERE s.msg_seq = f.msg_seq",
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
        body: NewReply,
    ) -> Result<ReplyOutcome, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg_error)?;
        let rows = tx
            .query(
                "SELECT d.msg_seq, d.state, d.dead, m.sender, m.reply, m.type
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
            &[&seq, &body.body],
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
        let entry = replied(provider, id, q.get(3), q.get(5), &body.body);
        audit::record(&*tx, &[entry]).await?;
        audit::index_subjects(&*tx, &body.subjects, (q.get(3), id, q.get(5))).await?;
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
        let e = withdrawn(requester, id, reason);
        let row = self
            .client()
            .await?
            .query_one(
                "WITH w AS (
                   UPDATE deliveries SET state = 'dead', reason = $3, dead = 'withdrawn',
                                         lease_token = NULL
                   WHERE state IN ('pending', 'leased') AND msg_seq =
                     (SELECT seq FROM messages WHERE sender = $1 AND id = $2 AND reply IS NULL)
                   RETURNING 1)
                 , a AS (
                   INSERT INTO audit(at, actor, action, msg_id, detail)
                   SELECT $4, $1, $5, $2, $3 WHERE EXISTS (SELECT 1 FROM w))
                 SELECT count(*) FROM w",
                &[&requester.as_str(), &id, &reason, &e.at, &e.action.as_str()],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.get::<_, i64>(0) > 0)
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
        let found = read_message(&**c, sender, id).await?;
        if let Some((record, _)) = &found {
            audit::record(&**c, &[status_read(sender, &record.type_, id)]).await?;
        }
        Ok(found.map(|(record, _)| record))
    }

    async fn feed(
        &self,
        reader: &MemberId,
        type_: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FeedItem>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT f.seq, m.envelope FROM feed f JOIN messages m ON m.seq = f.msg_seq
                 WHERE f.type = $1 AND f.seq > $2 ORDER BY f.seq LIMIT $3",
                &[&type_, &after, &(limit as i64)],
            )
            .await
            .map_err(pg_error)?;
        let items = rows
            .into_iter()
            .map(|r| {
                Ok(FeedItem {
                    cursor: r.get(0),
                    event: raw(r.get(1))?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if let Some(e) = feed_read(reader, type_, &items) {
            audit::record(&**c, &[e]).await?;
        }
        Ok(items)
    }
}

/// A message with its deliveries and its stored envelope, read without recording anything.
pub(super) async fn read_message(
    c: &impl GenericClient,
    sender: &MemberId,
    id: Uuid,
) -> Result<Option<(MessageRecord, String)>, StoreError> {
    let Some(row) = c
        .query_opt(
            "SELECT seq, type, accepted_at, reply, envelope FROM messages
             WHERE sender = $1 AND id = $2",
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
                "pending" | "outbox" => DeliveryState::Pending,
                "leased" | "published" => DeliveryState::Delivered,
                "acked" => DeliveryState::Acked,
                _ => DeliveryState::DeadLettered,
            },
            attempts: r.get::<_, i32>(2) as u32,
            reason: r.get(3),
            dead: dead_from(r.get(4)),
        })
        .collect();
    let record = MessageRecord {
        id,
        sender: sender.clone(),
        type_: row.get(1),
        accepted_at: row.get::<_, SystemTime>(2),
        deliveries,
        reply: row.get(3),
    };
    Ok(Some((record, row.get(4))))
}
