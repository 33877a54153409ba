//! The embedded store: SQLite (bundled) in WAL mode, written by one thread with group commit.
//!
//! Every write goes through a single writer thread that drains its queue into one transaction
//! and fsyncs once (`synchronous=FULL`), then answers every caller of that batch. One fsync per
//! message would cap the bus at a few thousand messages per second; one per batch does not.
//! A batch of nothing but leases and queries commits without waiting for its fsync (see
//! [`Op::must_be_durable`]), so a query's round trip waits for one fsync: its reply's.
//! Reads use their own connections, which WAL lets run beside the writer. SQLite shows them a
//! durable commit only after its fsync; such a commit they may see before it is on disk: a
//! delivery state that a power cut can turn back to pending, or a query that it can lose before
//! anyone had its answer.
//!
//! Checkpoints (copying the WAL back into the database file, with an fsync of that file) run on
//! a thread of their own. Left to SQLite's automatic checkpoint they would run inside the
//! writer's commit every ~1,000 WAL pages, and every message waiting for that batch would wait
//! for the extra write and fsync too: under load that was the writer's slowest cycle and the
//! accept latency's tail. Durability does not depend on checkpoints: a commit is durable once
//! its WAL frames are fsynced, and recovery replays the WAL.

mod admin;
mod audit;
mod ops;
mod schema;
mod writer;

pub use audit::SqliteAudit;

use super::QueueStat;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use writer::{Answer, Checkpointer, Op, WAL_BOUND_PAGES, WRITER_CACHE_KIB, Writer};

use super::entries;
use super::{
    AppendOutcome, AuditTrail, DeliveryQueue, FeedItem, LeaseRequest, Leases, MessageLog,
    MessageRecord, NewMessage, NewReply, Notifier, ReplyOutcome, Settled, Store, StoreError,
    Ticket,
};
use crate::identity::MemberId;

/// Reads that may run at once (each on a blocking thread with its own connection): bounded,
/// so a flood of status and feed reads queues instead of opening connections without end.
const MAX_READERS: usize = 8;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub path: PathBuf,
    /// How long a write waits for a lock held by someone else before the store reports itself
    /// unavailable (503 with Retry-After) instead of stalling requests.
    pub busy_timeout: Duration,
    /// Writes queued beyond this are refused as overload.
    pub queue: usize,
    /// Most operations committed in one transaction.
    pub max_batch: usize,
}

impl StoreOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreOptions {
            path: path.into(),
            busy_timeout: Duration::from_secs(2),
            queue: 65_536,
            max_batch: 1024,
        }
    }
}

pub struct SqliteStore {
    tx: mpsc::Sender<Op>,
    commits: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
    failure: Arc<Mutex<Option<String>>>,
    path: PathBuf,
    busy_timeout: Duration,
    readers: Mutex<Vec<Connection>>,
    reading: Semaphore,
}

fn open(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Plans that never depend on bound values. Without this SQLite (built with STAT4) re-parses
    // a statement whenever a `LIMIT ?` is bound again: the lease's select was re-prepared on
    // every call, the largest single cost of a lease in the writer's profile.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the store and starts its writer thread.
    pub fn open(opts: StoreOptions) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = opts.path.parent() {
            std::fs::create_dir_all(dir).map_err(unavailable)?;
        }
        let mut conn = open(&opts.path, opts.busy_timeout).map_err(unavailable)?;
        schema::prepare(&mut conn)?;
        audit::seal_leftovers(&mut conn).map_err(unavailable)?;
        let syncs = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(opts.queue);
        let max_batch = opts.max_batch;
        let commits = Arc::new(AtomicU64::new(0));
        let failure = Arc::new(Mutex::new(None));
        // Room for every statement the writer caches, so none is evicted and re-parsed.
        conn.set_prepared_statement_cache_capacity(64);
        // A group commit of large or batched messages dirties more pages than SQLite's default
        // 2 MiB cache holds; SQLite then spills pages to the WAL mid-transaction and writes
        // them again at commit (`pagerStress` in the profile). 32 MiB keeps a commit in memory.
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(unavailable)?;
        // Each operation's savepoint journals the pages it changes; in memory, not a temp file.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(unavailable)?;
        let checkpointer = Checkpointer::start(&opts.path, opts.busy_timeout);
        if checkpointer.is_some() {
            // The checkpointer thread does the work; otherwise SQLite's default (1,000 pages)
            // stays. The writer keeps a far larger automatic checkpoint as a bound on the WAL:
            // under a steady stream of commits a checkpoint from another connection never
            // catches up with the end of the WAL, and SQLite only restarts the WAL from its
            // beginning after a checkpoint that did. Without the bound the WAL grew to the size
            // of the whole backlog (1.5 GB for 1M messages) and slowed every later write.
            conn.pragma_update(None, "wal_autocheckpoint", WAL_BOUND_PAGES)
                .map_err(unavailable)?;
        }
        let writer = Writer {
            conn,
            commits: commits.clone(),
            checkpointer,
            since_checkpoint: 0,
            durable: true,
            syncs: syncs.clone(),
            failure: failure.clone(),
        };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx, max_batch))
            .map_err(unavailable)?;
        Ok(SqliteStore {
            tx,
            commits,
            syncs,
            failure,
            path: opts.path,
            busy_timeout: opts.busy_timeout,
            readers: Mutex::new(Vec::new()),
            reading: Semaphore::new(MAX_READERS),
        })
    }

    /// Transactions committed so far: with group commit, far fewer than operations.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Commits that waited for their fsync: at most one per commit, none for leases alone.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    async fn submit<T>(&self, op: impl FnOnce(Answer<T>) -> Op) -> Result<T, StoreError> {
        let (answer, rx) = oneshot::channel();
        self.tx.try_send(op(answer)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => unavailable("store is closed"),
        })?;
        rx.await.map_err(|_| unavailable("store writer stopped"))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _turn = self
            .reading
            .acquire()
            .await
            .map_err(|_| unavailable("store is closed"))?;
        let pooled = self.readers.lock().ok().and_then(|mut v| v.pop());
        let conn = match pooled {
            Some(c) => c,
            None => open(&self.path, self.busy_timeout).map_err(unavailable)?,
        };
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let r = f(&conn);
            (conn, r)
        })
        .await
        .map_err(unavailable)?;
        if let Ok(mut pool) = self.readers.lock() {
            pool.push(conn);
        }
        result.map_err(unavailable)
    }
}

#[async_trait::async_trait]
impl MessageLog for SqliteStore {
    async fn append(&self, batch: Vec<NewMessage>) -> Result<AppendOutcome, StoreError> {
        self.submit(|a| Op::Append(batch, a)).await
    }

    async fn reply(
        &self,
        provider: &MemberId,
        id: Uuid,
        requester: Option<MemberId>,
        body: NewReply,
    ) -> Result<ReplyOutcome, StoreError> {
        let provider = provider.clone();
        self.submit(|answer| Op::Reply {
            provider,
            id,
            requester,
            body,
            answer,
        })
        .await
    }

    async fn withdraw(
        &self,
        requester: &MemberId,
        id: Uuid,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let (requester, reason) = (requester.clone(), reason.to_owned());
        self.submit(|answer| Op::Withdraw {
            requester,
            id,
            reason,
            answer,
        })
        .await
    }

    async fn reopen(&self, requester: &MemberId, id: Uuid) -> Result<bool, StoreError> {
        let requester = requester.clone();
        self.submit(|answer| Op::Reopen(requester, id, answer))
            .await
    }

    async fn addressed(
        &self,
        recipient: &MemberId,
        id: Uuid,
    ) -> Result<Vec<(MemberId, String)>, StoreError> {
        let recipient = recipient.clone();
        self.read(move |c| ops::addressed(c, &recipient, id)).await
    }

    async fn message(
        &self,
        sender: &MemberId,
        id: Uuid,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let reader = sender.clone();
        let rec = self
            .read(move |c| ops::read_message(c, &reader, id))
            .await?;
        if let Some(r) = &rec {
            self.record(vec![entries::status_read(sender, &r.type_, id)])
                .await?;
        }
        Ok(rec)
    }

    async fn feed(
        &self,
        reader: &MemberId,
        type_: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FeedItem>, StoreError> {
        let t = type_.to_owned();
        let items = self
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT f.seq, m.envelope FROM feed f JOIN messages m ON m.seq = f.msg_seq
                 WHERE f.type = ?1 AND f.seq > ?2 ORDER BY f.seq LIMIT ?3",
                )?;
                let rows = stmt.query_map(params![t, after, limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?;
                rows.map(|r| {
                    let (cursor, env) = r?;
                    Ok(FeedItem {
                        cursor,
                        event: ops::raw(env)?,
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        if let Some(e) = entries::feed_read(reader, type_, &items) {
            self.record(vec![e]).await?;
        }
        Ok(items)
    }
}

#[async_trait::async_trait]
impl DeliveryQueue for SqliteStore {
    async fn lease(&self, member: &MemberId, req: LeaseRequest) -> Result<Leases, StoreError> {
        let member = member.clone();
        self.submit(|a| Op::Lease(member, req, a)).await
    }

    async fn has_ready(&self, member: &MemberId) -> Result<bool, StoreError> {
        let member = member.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM deliveries
                 WHERE recipient = ?1 AND state < 2 AND available_at <= ?2)",
            )?
            .query_row(params![member, now_ms()], |r| r.get(0))
        })
        .await
    }

    async fn queues(&self) -> Result<Vec<QueueStat>, StoreError> {
        self.read(|c| {
            // Grouped over the open-inbox index; the oldest accept time by the lowest seq.
            let mut groups = c.prepare_cached(
                "SELECT recipient, count(*), min(msg_seq) FROM deliveries
                 WHERE state < 2 GROUP BY recipient",
            )?;
            let rows: Vec<(String, i64, i64)> = groups
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let mut at = c.prepare_cached("SELECT accepted_at FROM messages WHERE seq = ?1")?;
            let mut out = Vec::with_capacity(rows.len());
            for (recipient, depth, seq) in rows {
                let Ok(recipient) = MemberId::parse(&recipient) else {
                    continue;
                };
                let ms: Option<i64> = at.query_row([seq], |r| r.get(0)).ok();
                out.push(QueueStat {
                    recipient,
                    depth: depth as u64,
                    oldest: ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms as u64)),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn ack(
        &self,
        member: &MemberId,
        tickets: Vec<Ticket>,
    ) -> Result<Vec<Settled>, StoreError> {
        let member = member.clone();
        let settled = self
            .submit(|answer| Op::Settle {
                member,
                tickets,
                nack: None,
                answer,
            })
            .await?;
        Ok(settled.into_iter().map(|(s, _)| s).collect())
    }

    async fn nack(
        &self,
        member: &MemberId,
        ticket: Ticket,
        reason: &str,
    ) -> Result<(Settled, Vec<MemberId>), StoreError> {
        let (member, nack) = (member.clone(), Some(reason.to_owned()));
        let mut settled = self
            .submit(|answer| Op::Settle {
                member,
                tickets: vec![ticket],
                nack,
                answer,
            })
            .await?;
        Ok(settled.pop().unwrap_or((Settled::NotFound, Vec::new())))
    }
}

/// One process opens the embedded store: there are no other nodes to signal.
impl Notifier for SqliteStore {}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> Result<(), String> {
        if self.tx.is_closed() {
            return Err("the store is closed".into());
        }
        match self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            Some(why) => Err(format!("the store's last write failed: {why}")),
            None => Ok(()),
        }
    }

    async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Op::Close(done)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

#[cfg(test)]
mod tests;
