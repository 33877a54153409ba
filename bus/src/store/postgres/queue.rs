//! Inboxes on PostgreSQL: leases (`FOR UPDATE SKIP LOCKED`), settlement by lease token, and
//! the purge of what is settled and past retention.

use std::time::Duration;

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::{PgStore, dead_word, member, pg_error, raw};
use crate::identity::MemberId;
use crate::store::QueueStat;
use crate::store::entries::settled;
use crate::store::{
    DeadLetter, DeliveryQueue, LeaseRequest, Leased, Leases, Settled, StoreError, Ticket,
};

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
                 , upd AS (
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
                           d.lease_token, m.type, d.reason)
                 , a AS (
                   INSERT INTO audit(at, actor, action, type, msg_id, counterpart, detail)
                   SELECT $5, $1, CASE WHEN spent THEN 'dead_letter' ELSE 'lease' END, type, id,
                          sender, CASE WHEN spent THEN reason ELSE 'attempt ' || attempts END
                   FROM upd)
                 SELECT * FROM upd",
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
                    &[
                        &member_.as_str(),
                        &(want as i64),
                        &lease_ms,
                        &max_attempts,
                        &crate::audit::now_us(),
                    ],
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

    async fn queues(&self) -> Result<Vec<QueueStat>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT g.recipient, g.depth, m.accepted_at FROM (
                   SELECT recipient, count(*) AS depth, min(msg_seq) AS first FROM deliveries
                   WHERE state IN ('pending', 'leased') GROUP BY recipient
                 ) g JOIN messages m ON m.seq = g.first",
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(QueueStat {
                    recipient: MemberId::parse(r.get::<_, &str>(0)).ok()?,
                    depth: r.get::<_, i64>(1) as u64,
                    oldest: Some(r.get::<_, time::OffsetDateTime>(2).into()),
                })
            })
            .collect())
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
                "SELECT d.msg_id, d.msg_seq, d.state, m.sender, d.lease_token, m.type
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
            type_: String,
        }
        let mut rows: Vec<Row> = rows
            .iter()
            .map(|r| Row {
                id: r.get(0),
                seq: r.get(1),
                state: r.get(2),
                sender: r.get(3),
                token: r.get(4),
                type_: r.get(5),
            })
            .collect();
        let mut answers = Vec::with_capacity(tickets.len());
        let mut change: Vec<i64> = Vec::new();
        let mut entries = Vec::new();
        for t in tickets {
            let (mut changed, mut already, mut conflict, mut stale) =
                (Vec::new(), false, false, false);
            for r in rows.iter_mut().filter(|r| r.id == t.id) {
                match r.state.as_str() {
                    "leased" if t.lease.is_some_and(|l| r.token != Some(l)) => stale = true,
                    "leased" => {
                        change.push(r.seq);
                        changed.push(member(&r.sender)?);
                        entries.push(settled(member_, nack, &r.type_, r.id, &r.sender));
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
        super::audit::record(&*tx, &entries).await?;
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
                                           AND d.state IN ('pending', 'leased', 'outbox'))
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
