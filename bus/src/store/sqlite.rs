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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{
    AppendOutcome, Appended, DeliveryState, DeliveryStatus, FeedItem, LeaseRequest, Leased,
    MessageRecord, NewMessage, ReplyOutcome, Settled, Store, StoreError,
};
use crate::identity::MemberId;
use crate::registry::Kind;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages(
    id BLOB PRIMARY KEY,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    hash BLOB NOT NULL,
    envelope TEXT NOT NULL,
    warnings TEXT NOT NULL,
    accepted_at INTEGER NOT NULL,
    reply TEXT
);
-- state: 0 pending, 1 leased, 2 acked, 3 dead-lettered.
-- available_at: when a pending message becomes visible, or when a lease runs out.
CREATE TABLE IF NOT EXISTS deliveries(
    seq INTEGER PRIMARY KEY,
    msg_id BLOB NOT NULL,
    recipient TEXT NOT NULL,
    state INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at INTEGER NOT NULL,
    reason TEXT,
    -- Also the index for a message's deliveries (status, settle, reply): one index, not two,
    -- to update per delivery.
    UNIQUE(msg_id, recipient)
);
CREATE INDEX IF NOT EXISTS inbox_open ON deliveries(recipient, seq) WHERE state < 2;
CREATE TABLE IF NOT EXISTS feed(
    seq INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    msg_id BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS feed_by_type ON feed(type, seq);
";

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

type Answer<T> = oneshot::Sender<Result<T, StoreError>>;

enum Op {
    Append(Vec<NewMessage>, Answer<AppendOutcome>),
    Lease(MemberId, LeaseRequest, Answer<Vec<Leased>>),
    /// Acks (or, with a reason, nacks) each of `ids`: one commit for a consumer's whole pull.
    Settle {
        member: MemberId,
        ids: Vec<Uuid>,
        nack: Option<String>,
        answer: Answer<Vec<Settled>>,
    },
    Reply {
        provider: MemberId,
        id: Uuid,
        body: String,
        answer: Answer<ReplyOutcome>,
    },
    Close(oneshot::Sender<()>),
}

impl Op {
    /// Whether the caller may only be answered once the operation itself is fsynced.
    ///
    /// Two kinds of write need not be, because no one is promised anything until a later
    /// durable commit, whose fsync covers them too (the WAL is only appended to, and recovery
    /// replays a prefix of it):
    /// - A lease. Lost in a power cut, it only makes the message visible again, which
    ///   at-least-once delivery allows (a dead letter it wrote for a message out of attempts is
    ///   written again by the next lease); the consumer's ack is durable.
    /// - The append of queries. A query's only answer is its reply (or the provider's nack),
    ///   and that is synced before the requester hears it. A power cut before then loses a
    ///   question no one has had an answer to, which the requester's retry asks again.
    ///
    /// Everything else is someone's promise: a 202, an ack, a reply, a nack.
    fn must_be_durable(&self) -> bool {
        match self {
            Op::Lease(..) | Op::Close(_) => false,
            Op::Append(batch, _) => batch.iter().any(|m| m.kind != Kind::Query),
            Op::Settle { .. } | Op::Reply { .. } => true,
        }
    }

    /// Answers the caller with `Unavailable` without running the operation.
    fn fail(self, why: &str) {
        fn send<T>(a: Answer<T>, why: &str) {
            let _ = a.send(Err(unavailable(why)));
        }
        match self {
            Op::Append(_, a) => send(a, why),
            Op::Lease(_, _, a) => send(a, why),
            Op::Settle { answer, .. } => send(answer, why),
            Op::Reply { answer, .. } => send(answer, why),
            Op::Close(done) => drop(done.send(())),
        }
    }
}

pub struct SqliteStore {
    tx: mpsc::Sender<Op>,
    commits: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
    path: PathBuf,
    busy_timeout: Duration,
    readers: Mutex<Vec<Connection>>,
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
        let conn = open(&opts.path, opts.busy_timeout).map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        let syncs = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(opts.queue);
        let max_batch = opts.max_batch;
        let commits = Arc::new(AtomicU64::new(0));
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
        };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx, max_batch))
            .map_err(unavailable)?;
        Ok(SqliteStore {
            tx,
            commits,
            syncs,
            path: opts.path,
            busy_timeout: opts.busy_timeout,
            readers: Mutex::new(Vec::new()),
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
impl Store for SqliteStore {
    async fn append(&self, batch: Vec<NewMessage>) -> Result<AppendOutcome, StoreError> {
        self.submit(|a| Op::Append(batch, a)).await
    }

    async fn lease(&self, member: &MemberId, req: LeaseRequest) -> Result<Vec<Leased>, StoreError> {
        let member = member.clone();
        self.submit(|a| Op::Lease(member, req, a)).await
    }

    async fn ack(&self, member: &MemberId, ids: Vec<Uuid>) -> Result<Vec<Settled>, StoreError> {
        let member = member.clone();
        self.submit(|answer| Op::Settle {
            member,
            ids,
            nack: None,
            answer,
        })
        .await
    }

    async fn nack(&self, member: &MemberId, id: Uuid, reason: &str) -> Result<Settled, StoreError> {
        let (member, nack) = (member.clone(), Some(reason.to_owned()));
        let settled = self
            .submit(|answer| Op::Settle {
                member,
                ids: vec![id],
                nack,
                answer,
            })
            .await?;
        Ok(settled[0])
    }

    async fn reply(
        &self,
        provider: &MemberId,
        id: Uuid,
        body: String,
    ) -> Result<ReplyOutcome, StoreError> {
        let provider = provider.clone();
        self.submit(|answer| Op::Reply {
            provider,
            id,
            body,
            answer,
        })
        .await
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

    async fn message(&self, id: Uuid) -> Result<Option<MessageRecord>, StoreError> {
        self.read(move |c| read_message(c, id)).await
    }

    async fn feed(
        &self,
        type_: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FeedItem>, StoreError> {
        let type_ = type_.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT f.seq, m.envelope FROM feed f JOIN messages m ON m.id = f.msg_id
                 WHERE f.type = ?1 AND f.seq > ?2 ORDER BY f.seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![type_, after, limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            rows.map(|r| {
                let (cursor, env) = r?;
                Ok(FeedItem {
                    cursor,
                    event: raw(env)?,
                })
            })
            .collect()
        })
        .await
    }

    async fn ready(&self) -> bool {
        !self.tx.is_closed()
    }

    async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Op::Close(done)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn raw(s: String) -> rusqlite::Result<Box<RawValue>> {
    RawValue::from_string(s).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn read_message(c: &Connection, id: Uuid) -> rusqlite::Result<Option<MessageRecord>> {
    let row = c
        .prepare_cached("SELECT sender, type, accepted_at, reply FROM messages WHERE id = ?1")?
        .query_row([id.as_bytes()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .optional()?;
    let Some((sender, type_, accepted_at_ms, reply)) = row else {
        return Ok(None);
    };
    let sender = MemberId::parse(&sender)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let mut stmt = c.prepare_cached(
        "SELECT recipient, state, attempts, reason FROM deliveries WHERE msg_id = ?1 ORDER BY seq",
    )?;
    let deliveries = stmt
        .query_map([id.as_bytes()], |r| {
            let state = match r.get::<_, i64>(1)? {
                0 => DeliveryState::Pending,
                1 => DeliveryState::Delivered,
                2 => DeliveryState::Acked,
                _ => DeliveryState::DeadLettered,
            };
            Ok(DeliveryStatus {
                recipient: r.get(0)?,
                state,
                attempts: r.get(2)?,
                reason: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(MessageRecord {
        id,
        sender,
        type_,
        accepted_at_ms,
        deliveries,
        reply,
    }))
}

/// The single writer. Owns the only write connection.
struct Writer {
    conn: Connection,
    commits: Arc<AtomicU64>,
    checkpointer: Option<Checkpointer>,
    /// Operations committed since the checkpointer was last asked to run.
    since_checkpoint: usize,
    /// Whether the connection is at `synchronous=FULL` (see [`Writer::sync_for`]).
    durable: bool,
    syncs: Arc<AtomicU64>,
}

/// The writer connection's page cache, in KiB (see `SqliteStore::open`).
const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// WAL pages at which the writer checkpoints by itself (see `SqliteStore::open`); most of the
/// WAL has been copied by the checkpointer by then, so this checkpoint has little left to do.
const WAL_BOUND_PAGES: i64 = 8192;

/// Operations committed between checkpoint requests: about SQLite's own 1,000-page interval
/// for messages of around a kilobyte (a message writes its row, a delivery and index entries).
const CHECKPOINT_EVERY_OPS: usize = 300;

/// A thread with its own connection that checkpoints the WAL when the writer asks.
///
/// PASSIVE checkpoints never block the writer or readers; the writer restarts the WAL from its
/// beginning once a checkpoint has copied all of it, so the WAL stays small.
struct Checkpointer {
    /// Capacity one: requests made while a checkpoint runs fold into one.
    wake: std::sync::mpsc::SyncSender<()>,
}

impl Checkpointer {
    /// `None` when the thread or its connection cannot be set up: SQLite then checkpoints
    /// inside commits as usual, which is slower but equally correct.
    fn start(path: &Path, busy: Duration) -> Option<Checkpointer> {
        let conn = open(path, busy)
            .map_err(|e| tracing::warn!("store checkpointer unavailable: {e}"))
            .ok()?;
        let (wake, requests) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                // Ends when the writer (the only sender) is gone.
                while requests.recv().is_ok() {
                    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                        tracing::warn!("store checkpoint failed: {e}");
                    }
                }
            })
            .map_err(|e| tracing::warn!("store checkpointer unavailable: {e}"))
            .ok()?;
        Some(Checkpointer { wake })
    }
}

/// An answer held back until the batch it belongs to is durable.
type Deferred = Box<dyn FnOnce(Option<&str>) + Send>;

fn defer<T: Send + 'static>(answer: Answer<T>, result: rusqlite::Result<T>) -> Deferred {
    let result = result.map_err(unavailable);
    Box::new(move |commit_error| {
        let _ = answer.send(match commit_error {
            Some(e) => Err(unavailable(e)),
            None => result,
        });
    })
}

/// Keeps an operation's savepoint (see [`savepoint`]).
fn keep<T>(v: T) -> (T, bool) {
    (v, true)
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Op>, max_batch: usize) {
        let mut ops = Vec::with_capacity(max_batch);
        while let Some(first) = rx.blocking_recv() {
            ops.push(first);
            while ops.len() < max_batch {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            let mut close = None;
            let mut deferred: Vec<Deferred> = Vec::with_capacity(ops.len());
            let durable = ops.iter().any(Op::must_be_durable);
            let begun = self
                .sync_for(durable)
                .and_then(|()| run_cached(&self.conn, "BEGIN IMMEDIATE"));
            for op in ops.drain(..) {
                if let Op::Close(done) = op {
                    close = Some(done);
                    continue;
                }
                match &begun {
                    Ok(()) => deferred.push(self.apply(op)),
                    Err(e) => op.fail(&e.to_string()),
                }
            }
            let commit_error = match begun {
                Ok(()) => match run_cached(&self.conn, "COMMIT") {
                    Ok(()) => {
                        self.commits.fetch_add(1, Ordering::Relaxed);
                        if durable {
                            self.syncs.fetch_add(1, Ordering::Relaxed);
                        }
                        self.committed(deferred.len());
                        None
                    }
                    Err(e) => {
                        let _ = self.conn.execute_batch("ROLLBACK");
                        tracing::error!("store commit failed: {e}");
                        Some(e.to_string())
                    }
                },
                Err(_) => None,
            };
            for d in deferred {
                d(commit_error.as_deref());
            }
            if let Some(done) = close {
                let _ = done.send(());
                rx.close();
                return;
            }
        }
    }

    /// Sets whether the next commit waits for its fsync. Only batches of leases skip it (see
    /// [`Op::must_be_durable`]); the next durable commit's fsync covers their WAL frames too,
    /// because the WAL is only appended to and recovery replays a prefix of it.
    fn sync_for(&mut self, durable: bool) -> rusqlite::Result<()> {
        if self.durable != durable {
            let level = if durable { "FULL" } else { "NORMAL" };
            self.conn.pragma_update(None, "synchronous", level)?;
            self.durable = durable;
        }
        Ok(())
    }

    /// Asks the checkpointer to run once enough has been committed since the last request.
    fn committed(&mut self, ops: usize) {
        self.since_checkpoint += ops;
        if let Some(c) = &self.checkpointer
            && self.since_checkpoint >= CHECKPOINT_EVERY_OPS
        {
            // Full means a request is already pending; this one folds into it.
            let _ = c.wake.try_send(());
            self.since_checkpoint = 0;
        }
    }

    /// Applies one operation inside its own savepoint, so a failing operation leaves the rest
    /// of the batch intact and nothing of itself behind.
    fn apply(&mut self, op: Op) -> Deferred {
        let c = &self.conn;
        match op {
            Op::Append(batch, a) => defer(
                a,
                savepoint(c, |c| {
                    // A conflict rolls back what the batch stored before it: all or nothing.
                    append(c, &batch).map(|o| {
                        let stored = matches!(o, AppendOutcome::Stored(_));
                        (o, stored)
                    })
                }),
            ),
            Op::Lease(member, req, a) => {
                defer(a, savepoint(c, |c| lease(c, &member, req).map(keep)))
            }
            Op::Settle {
                member,
                ids,
                nack,
                answer,
            } => defer(
                answer,
                savepoint(c, |c| {
                    ids.iter()
                        .map(|id| settle(c, &member, *id, nack.as_deref()))
                        .collect::<rusqlite::Result<_>>()
                        .map(keep)
                }),
            ),
            Op::Reply {
                provider,
                id,
                body,
                answer,
            } => defer(
                answer,
                savepoint(c, |c| reply(c, &provider, id, &body).map(keep)),
            ),
            Op::Close(_) => Box::new(|_| {}),
        }
    }
}

/// Runs a statement without parameters from the statement cache: the writer begins and
/// commits for every batch, and parsing them each time showed in its profile.
fn run_cached(c: &Connection, sql: &str) -> rusqlite::Result<()> {
    c.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs `f` in a savepoint, rolled back when `f` fails or returns `false` as its second value.
fn savepoint<T>(
    c: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<(T, bool)>,
) -> rusqlite::Result<T> {
    run_cached(c, "SAVEPOINT op")?;
    match f(c) {
        Ok((v, true)) => run_cached(c, "RELEASE op").map(|()| v),
        Ok((v, false)) => c.execute_batch("ROLLBACK TO op; RELEASE op").map(|()| v),
        Err(e) => {
            c.execute_batch("ROLLBACK TO op; RELEASE op")?;
            Err(e)
        }
    }
}

fn append(c: &Connection, batch: &[NewMessage]) -> rusqlite::Result<AppendOutcome> {
    let now = now_ms();
    let mut results = Vec::with_capacity(batch.len());
    let mut find = c.prepare_cached("SELECT hash, warnings FROM messages WHERE id = ?1")?;
    let mut insert = c.prepare_cached(
        "INSERT INTO messages(id, sender, type, hash, envelope, warnings, accepted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut deliver = c.prepare_cached(
        "INSERT INTO deliveries(msg_id, recipient, state, attempts, available_at) VALUES (?1, ?2, 0, 0, ?3)",
    )?;
    let mut feed = c.prepare_cached("INSERT INTO feed(type, msg_id) VALUES (?1, ?2)")?;
    for (i, m) in batch.iter().enumerate() {
        let id = m.id.as_bytes();
        let existing: Option<(Vec<u8>, String)> = find
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((hash, warnings)) = existing {
            if hash != m.hash {
                return Ok(AppendOutcome::Conflict(i));
            }
            results.push(Appended::Duplicate { warnings });
            continue;
        }
        insert.execute(params![
            id,
            m.sender.as_str(),
            m.type_,
            &m.hash[..],
            m.envelope,
            m.warnings,
            now
        ])?;
        for r in &m.recipients {
            deliver.execute(params![id, r.as_str(), now])?;
        }
        if m.to_feed {
            feed.execute(params![m.type_, id])?;
        }
        results.push(Appended::Accepted);
    }
    Ok(AppendOutcome::Stored(results))
}

fn lease(c: &Connection, member: &MemberId, req: LeaseRequest) -> rusqlite::Result<Vec<Leased>> {
    let now = now_ms();
    let until = now + req.lease.as_millis() as i64;
    let expires = time::OffsetDateTime::from_unix_timestamp_nanos(until as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let mut open = c.prepare_cached(
        "SELECT seq, msg_id, state, attempts FROM deliveries
         WHERE recipient = ?1 AND state < 2 AND available_at <= ?2 ORDER BY seq LIMIT ?3",
    )?;
    let mut dead = c.prepare_cached(
        "UPDATE deliveries SET state = 3, available_at = 0, reason = ?2 WHERE seq = ?1",
    )?;
    let mut take = c.prepare_cached(
        "UPDATE deliveries SET state = 1, attempts = attempts + 1, available_at = ?2 WHERE seq = ?1",
    )?;
    let mut envelope = c.prepare_cached("SELECT envelope FROM messages WHERE id = ?1")?;
    let mut out = Vec::new();
    loop {
        let want = req.max - out.len();
        let rows: Vec<(i64, Vec<u8>, i64, u32)> = open
            .query_map(params![member.as_str(), now, want as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let fetched = rows.len();
        let mut expired = 0;
        for (seq, msg_id, state, attempts) in rows {
            if state == 1 && attempts >= req.max_attempts {
                let reason = format!("not acked after {attempts} delivery attempt(s)");
                dead.execute(params![seq, reason])?;
                expired += 1;
                continue;
            }
            take.execute(params![seq, until])?;
            let env: String = envelope.query_row([&msg_id], |r| r.get(0))?;
            out.push(Leased {
                attempt: attempts + 1,
                lease_expires_at: expires.clone(),
                event: raw(env)?,
            });
        }
        if expired == 0 || fetched < want || out.len() >= req.max {
            return Ok(out);
        }
    }
}

fn settle(
    c: &Connection,
    member: &MemberId,
    id: Uuid,
    nack: Option<&str>,
) -> rusqlite::Result<Settled> {
    let state: Option<i64> = c
        .prepare_cached("SELECT state FROM deliveries WHERE recipient = ?1 AND msg_id = ?2")?
        .query_row(params![member.as_str(), id.as_bytes()], |r| r.get(0))
        .optional()?;
    let (target, reason) = match nack {
        None => (2, None),
        Some(r) => (3, Some(format!("nacked by {member}: {r}"))),
    };
    Ok(match state {
        None | Some(0) => Settled::NotFound,
        Some(s) if s == target => Settled::AlreadyDone,
        Some(1) => {
            c.prepare_cached(
                "UPDATE deliveries SET state = ?3, available_at = 0, reason = ?4
                 WHERE recipient = ?1 AND msg_id = ?2",
            )?
            .execute(params![member.as_str(), id.as_bytes(), target, reason])?;
            Settled::Done
        }
        Some(_) => Settled::Conflict,
    })
}

fn reply(
    c: &Connection,
    provider: &MemberId,
    id: Uuid,
    body: &str,
) -> rusqlite::Result<ReplyOutcome> {
    let delivered: Option<i64> = c
        .prepare_cached("SELECT state FROM deliveries WHERE recipient = ?1 AND msg_id = ?2")?
        .query_row(params![provider.as_str(), id.as_bytes()], |r| r.get(0))
        .optional()?;
    if delivered.is_none() {
        return Ok(ReplyOutcome::NotFound);
    }
    let existing: Option<String> = c
        .prepare_cached("SELECT reply FROM messages WHERE id = ?1")?
        .query_row([id.as_bytes()], |r| r.get(0))?;
    if let Some(existing) = existing {
        return Ok(ReplyOutcome::Existing(existing));
    }
    c.prepare_cached("UPDATE messages SET reply = ?2 WHERE id = ?1")?
        .execute(params![id.as_bytes(), body])?;
    c.prepare_cached(
        "UPDATE deliveries SET state = 2, available_at = 0 WHERE recipient = ?1 AND msg_id = ?2",
    )?
    .execute(params![provider.as_str(), id.as_bytes()])?;
    Ok(ReplyOutcome::Stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(sender: &MemberId, to: &MemberId, body: &str) -> NewMessage {
        NewMessage {
            id: Uuid::now_v7(),
            sender: sender.clone(),
            type_: "t".into(),
            kind: Kind::Message,
            hash: [7; 32],
            envelope: format!("{{\"data\":{body:?}}}"),
            warnings: "[]".into(),
            recipients: vec![to.clone()],
            to_feed: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(SqliteStore::open(StoreOptions::new(dir.path().join("s.db"))).unwrap());
        let (a, b) = (
            MemberId::parse("GOV/a").unwrap(),
            MemberId::parse("GOV/b").unwrap(),
        );
        let tasks: Vec<_> = (0..400)
            .map(|i| {
                let (store, m) = (store.clone(), msg(&a, &b, &i.to_string()));
                tokio::spawn(async move { store.append(vec![m]).await })
            })
            .collect();
        for t in tasks {
            assert!(matches!(
                t.await.unwrap().unwrap(),
                AppendOutcome::Stored(_)
            ));
        }
        let commits = store.commits();
        assert!(
            commits < 200,
            "group commit should batch: {commits} commits for 400 appends"
        );
        let req = LeaseRequest {
            max: 100,
            lease: Duration::from_secs(30),
            max_attempts: 3,
        };
        let mut total = 0;
        loop {
            let got = store.lease(&b, req).await.unwrap();
            if got.is_empty() {
                break;
            }
            total += got.len();
        }
        assert_eq!(total, 400);
    }

    /// An empty store in a temporary directory, and a sender and a recipient.
    fn fresh_store() -> (tempfile::TempDir, SqliteStore, MemberId, MemberId) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(StoreOptions::new(dir.path().join("s.db"))).unwrap();
        let a = MemberId::parse("GOV/a").unwrap();
        let b = MemberId::parse("GOV/b").unwrap();
        (dir, store, a, b)
    }

    /// A 202, an ack and a reply wait for an fsync; a lease and a query's append do not need one
    /// of their own.
    #[tokio::test]
    async fn only_promises_wait_for_the_disk() {
        let (_dir, store, a, b) = fresh_store();
        let m = msg(&a, &b, "1");
        store.append(vec![m.clone()]).await.unwrap();
        assert_eq!(
            store.syncs(),
            1,
            "an append is synced before it is answered"
        );
        let req = LeaseRequest {
            max: 10,
            lease: Duration::from_secs(30),
            max_attempts: 3,
        };
        assert_eq!(store.lease(&b, req).await.unwrap().len(), 1);
        assert_eq!(store.syncs(), 1, "a lease alone is not synced");
        assert_eq!(store.ack(&b, vec![m.id]).await.unwrap(), [Settled::Done]);
        assert_eq!(store.syncs(), 2, "an ack is synced before it is answered");

        let q = NewMessage {
            kind: Kind::Query,
            ..msg(&a, &b, "2")
        };
        store.append(vec![q.clone()]).await.unwrap();
        assert_eq!(store.syncs(), 2, "a query waits for its reply's sync");
        assert_eq!(store.lease(&b, req).await.unwrap().len(), 1);
        let out = store.reply(&b, q.id, "{}".into()).await.unwrap();
        assert_eq!(out, ReplyOutcome::Stored);
        assert_eq!(store.syncs(), 3, "a reply is synced before it is answered");
    }

    #[tokio::test]
    async fn a_conflict_in_a_batch_stores_nothing() {
        let (_dir, store, a, b) = fresh_store();
        let first = msg(&a, &b, "1");
        store.append(vec![first.clone()]).await.unwrap();
        let fresh = msg(&a, &b, "2");
        let mut clash = first.clone();
        clash.hash = [9; 32];
        let out = store.append(vec![fresh.clone(), clash]).await.unwrap();
        assert_eq!(out, AppendOutcome::Conflict(1));
        assert!(store.message(fresh.id).await.unwrap().is_none());
        let dup = store.append(vec![first.clone()]).await.unwrap();
        assert_eq!(
            dup,
            AppendOutcome::Stored(vec![Appended::Duplicate {
                warnings: "[]".into()
            }])
        );
    }
}
