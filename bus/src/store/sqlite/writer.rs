//! The single writer thread: group commit, savepoints per operation, and the checkpointer.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{audit, ops, unavailable};
use crate::audit::{Checkpoint, Entry, Record};
use crate::identity::MemberId;
use crate::registry::Kind;
use crate::store::{
    AppendOutcome, LeaseRequest, Leases, NewMessage, NewReply, Redrive, ReplyOutcome, Settled,
    StoreError, Ticket,
};

pub(super) type Answer<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Op {
    Append(Vec<NewMessage>, Answer<AppendOutcome>),
    Lease(MemberId, LeaseRequest, Answer<Leases>),
    /// Acks (or, with a reason, nacks) each of `ids`: one commit for a consumer's whole pull.
    Settle {
        member: MemberId,
        tickets: Vec<Ticket>,
        nack: Option<String>,
        answer: Answer<Vec<(Settled, Vec<MemberId>)>>,
    },
    Reply {
        provider: MemberId,
        id: Uuid,
        requester: Option<MemberId>,
        body: NewReply,
        answer: Answer<ReplyOutcome>,
    },
    Withdraw {
        requester: MemberId,
        id: Uuid,
        reason: String,
        answer: Answer<bool>,
    },
    Reopen(MemberId, Uuid, Answer<bool>),
    /// An operator's redrive of dead letters.
    Redrive {
        operator: MemberId,
        recipient: MemberId,
        which: Redrive,
        answer: Answer<Vec<(MemberId, Uuid)>>,
    },
    /// Audit records of what changed nothing else (reads, refusals).
    Audit(Vec<Entry>, Answer<()>),
    /// The sealer's chain positions and hashes, and a checkpoint.
    Seal(Vec<(i64, Record)>, Option<Checkpoint>, Answer<()>),
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
            Op::Settle { .. }
            | Op::Reply { .. }
            | Op::Withdraw { .. }
            | Op::Reopen(..)
            | Op::Redrive { .. }
            | Op::Audit(..)
            | Op::Seal(..) => true,
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
            Op::Withdraw { answer, .. } => send(answer, why),
            Op::Reopen(_, _, answer) => send(answer, why),
            Op::Redrive { answer, .. } => send(answer, why),
            Op::Audit(_, answer) | Op::Seal(_, _, answer) => send(answer, why),
            Op::Close(done) => drop(done.send(())),
        }
    }
}

/// The single writer. Owns the only write connection.
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) commits: Arc<AtomicU64>,
    pub(super) checkpointer: Option<Checkpointer>,
    /// Operations committed since the checkpointer was last asked to run.
    pub(super) since_checkpoint: usize,
    /// Whether the connection is at `synchronous=FULL` (see [`Writer::sync_for`]).
    pub(super) durable: bool,
    pub(super) syncs: Arc<AtomicU64>,
    /// Why the last write failed, until a write succeeds again: `/readyz` reports it.
    pub(super) failure: Arc<Mutex<Option<String>>>,
}

/// The writer connection's page cache, in KiB (see `SqliteStore::open`).
pub(super) const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// WAL pages at which the writer checkpoints by itself (see `SqliteStore::open`); most of the
/// WAL has been copied by the checkpointer by then, so this checkpoint has little left to do.
pub(super) const WAL_BOUND_PAGES: i64 = 8192;

/// Operations committed between checkpoint requests: about SQLite's own 1,000-page interval
/// for messages of around a kilobyte (a message writes its row, a delivery and index entries).
const CHECKPOINT_EVERY_OPS: usize = 300;

/// A thread with its own connection that checkpoints the WAL when the writer asks.
///
/// PASSIVE checkpoints never block the writer or readers; the writer restarts the WAL from its
/// beginning once a checkpoint has copied all of it, so the WAL stays small.
pub(super) struct Checkpointer {
    /// Capacity one: requests made while a checkpoint runs fold into one.
    wake: std::sync::mpsc::SyncSender<()>,
}

impl Checkpointer {
    /// `None` when the thread or its connection cannot be set up: SQLite then checkpoints
    /// inside commits as usual, which is slower but equally correct.
    pub(super) fn start(path: &Path, busy: Duration) -> Option<Checkpointer> {
        let conn = super::open(path, busy)
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
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Op>, max_batch: usize) {
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
            let started = std::time::Instant::now();
            let begun = self
                .sync_for(durable)
                .and_then(|()| run_cached(&self.conn, "BEGIN IMMEDIATE"));
            // Before anyone hears of the failure, so a client told 503 that asks `/readyz`
            // next is told why.
            if let Err(e) = &begun {
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
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
            let commit_error = match &begun {
                Ok(()) => match run_cached(&self.conn, "COMMIT") {
                    Ok(()) => {
                        self.commits.fetch_add(1, Ordering::Relaxed);
                        if durable {
                            self.syncs.fetch_add(1, Ordering::Relaxed);
                        }
                        self.committed(deferred.len());
                        crate::telemetry::commit(deferred.len(), started.elapsed(), durable);
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
            let failed = begun.err().map(|e| e.to_string()).or(commit_error.clone());
            *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = failed;
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
                    ops::append(c, &batch).map(|o| {
                        let stored = matches!(o, AppendOutcome::Stored(_));
                        (o, stored)
                    })
                }),
            ),
            Op::Lease(member, req, a) => {
                defer(a, savepoint(c, |c| ops::lease(c, &member, req).map(keep)))
            }
            Op::Settle {
                member,
                tickets,
                nack,
                answer,
            } => defer(
                answer,
                savepoint(c, |c| {
                    tickets
                        .iter()
                        .map(|t| ops::settle(c, &member, *t, nack.as_deref()))
                        .collect::<rusqlite::Result<_>>()
                        .map(keep)
                }),
            ),
            Op::Reply {
                provider,
                id,
                requester,
                body,
                answer,
            } => defer(
                answer,
                savepoint(c, |c| {
                    ops::reply(c, &provider, id, requester.as_ref(), &body).map(keep)
                }),
            ),
            Op::Withdraw {
                requester,
                id,
                reason,
                answer,
            } => defer(
                answer,
                savepoint(c, |c| ops::withdraw(c, &requester, id, &reason).map(keep)),
            ),
            Op::Reopen(requester, id, answer) => defer(
                answer,
                savepoint(c, |c| ops::reopen(c, &requester, id).map(keep)),
            ),
            Op::Redrive {
                operator,
                recipient,
                which,
                answer,
            } => defer(
                answer,
                savepoint(c, |c| {
                    super::admin::redrive(c, &operator, &recipient, &which).map(keep)
                }),
            ),
            Op::Audit(entries, answer) => defer(
                answer,
                savepoint(c, |c| {
                    entries
                        .iter()
                        .try_for_each(|e| audit::record(c, e))
                        .map(keep)
                }),
            ),
            Op::Seal(sealed, checkpoint, answer) => defer(
                answer,
                savepoint(c, |c| {
                    audit::seal(c, &sealed, checkpoint.as_ref()).map(keep)
                }),
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
