//! The audit tables of the embedded store: records written and chained inside each operation's
//! savepoint, and read by the verifier even with no bus running.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

use super::{SqliteStore, unavailable};
use crate::audit::{Action, Checkpoint, Entry, Head, Record};
use crate::store::{AuditRead, AuditTrail, Leadership, StoreError};

pub(super) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS audit(
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    type TEXT,
    msg_id TEXT,
    counterpart TEXT,
    digest TEXT,
    detail TEXT,
    -- The place in the chain, the hash before it and its own: set as the record is written
    -- (NULL only in rows an earlier version left for its sealer; see seal_leftovers).
    pos INTEGER UNIQUE,
    prev BLOB,
    hash BLOB
);
CREATE INDEX IF NOT EXISTS audit_unsealed ON audit(seq) WHERE pos IS NULL;
-- The citizen report: persons (HMACs of their identifiers, never the identifiers) and the
-- messages about them; feed_cursor links an event to the feed reads that returned it.
CREATE TABLE IF NOT EXISTS audit_subjects(
    subject BLOB NOT NULL,
    sender TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    type TEXT NOT NULL,
    feed_cursor INTEGER
);
CREATE INDEX IF NOT EXISTS audit_subjects_by_subject ON audit_subjects(subject);
CREATE INDEX IF NOT EXISTS audit_by_message ON audit(msg_id) WHERE msg_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_feed_reads ON audit(type) WHERE action = 'feed_read';
CREATE TABLE IF NOT EXISTS audit_checkpoints(
    count INTEGER PRIMARY KEY,
    head BLOB NOT NULL,
    at INTEGER NOT NULL,
    jws TEXT NOT NULL
);
";

/// Adds `e` to the audit in the caller's transaction (an operation's savepoint), already
/// chained after the last record.
///
/// The embedded store has one writer, so the order it inserts in is the order it commits in,
/// and a record can be sealed as it is written. The chain's head is read back from the table
/// (the last entry of the `pos` index, always in the page cache) rather than held in memory,
/// so a savepoint or a whole group commit that rolls back takes its records' places in the
/// chain with it. Sealing later instead, as a store with concurrent writers must, cost a read
/// of every record back and a second write of its row: a tenth of the bus's CPU per message
/// on h2 accepts (BENCHMARKS.md, issue 15, second round).
pub(super) fn record(c: &Connection, e: &Entry) -> rusqlite::Result<()> {
    let (last, prev) = last_sealed(c)?;
    let pos = last + 1;
    let hash = Record::hash_of(e, pos, &prev);
    c.prepare_cached(
        "INSERT INTO audit(at, actor, action, type, msg_id, counterpart, digest, detail,
                           pos, prev, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        e.at,
        e.actor,
        e.action.as_str(),
        e.type_,
        e.id.map(|i| i.to_string()),
        e.counterpart,
        e.digest,
        e.detail,
        pos,
        &prev[..],
        &hash[..]
    ])
    .map(drop)
}

/// The position and hash of the chain's last record: (0, zeros) for an empty chain.
fn last_sealed(c: &Connection) -> rusqlite::Result<(i64, [u8; 32])> {
    let last: Option<(i64, Vec<u8>)> = c
        .prepare_cached(
            "SELECT pos, hash FROM audit WHERE pos IS NOT NULL ORDER BY pos DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match last {
        Some((pos, hash)) => Ok((pos, hash32(Some(hash))?)),
        None => Ok((0, [0; 32])),
    }
}

/// Chains the records an earlier version left for its sealer, oldest first, before the
/// writer starts sealing as it writes: a store from before inline sealing opens whole.
pub(super) fn seal_leftovers(c: &mut Connection) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    let pending = unsealed(&tx, usize::MAX >> 1)?;
    let (pos, prev) = last_sealed(&tx)?;
    seal(&tx, &Record::chain(pending, pos, prev), None)?;
    tx.commit()
}

/// Indexes the message (`sender`, `id`) under each of `subjects`, in the caller's savepoint.
pub(super) fn index_subjects(
    c: &Connection,
    subjects: &[[u8; 32]],
    (sender, id, type_): (&str, uuid::Uuid, &str),
    feed_cursor: Option<i64>,
) -> rusqlite::Result<()> {
    let mut insert = c.prepare_cached(
        "INSERT INTO audit_subjects(subject, sender, msg_id, type, feed_cursor)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for s in subjects {
        insert.execute(params![&s[..], sender, id.to_string(), type_, feed_cursor])?;
    }
    Ok(())
}

fn subject_records(c: &Connection, subject: [u8; 32]) -> rusqlite::Result<Vec<Entry>> {
    let links: Vec<(String, String, String, Option<i64>)> = c
        .prepare_cached(
            "SELECT DISTINCT sender, msg_id, type, feed_cursor FROM audit_subjects
             WHERE subject = ?1",
        )?
        .query_map([&subject[..]], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut of_message = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit WHERE msg_id = ?1 AND (actor = ?2 OR counterpart = ?2)"
    ))?;
    let mut reads = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit WHERE action = 'feed_read' AND type = ?1"
    ))?;
    let (mut linked, mut read) = (Vec::new(), Vec::new());
    for (sender, id, type_, cursor) in links {
        for e in of_message.query_map(params![id, sender], entry)? {
            linked.push(e?);
        }
        if let Some(cursor) = cursor {
            for e in reads.query_map([type_], entry)? {
                read.push((e?, cursor));
            }
        }
    }
    Ok(crate::store::entries::subject_report(linked, read))
}

fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(format!("audit: bad {what}").into())
}

/// An entry from columns 0..8 of `r` (at, actor, action, type, msg_id, counterpart, digest,
/// detail).
fn entry(r: &Row<'_>) -> rusqlite::Result<Entry> {
    let action: String = r.get(2)?;
    let id: Option<String> = r.get(4)?;
    Ok(Entry {
        at: r.get(0)?,
        actor: r.get(1)?,
        action: Action::parse(&action).ok_or_else(|| corrupt("action"))?,
        type_: r.get(3)?,
        id: id
            .map(|i| i.parse().map_err(|_| corrupt("message id")))
            .transpose()?,
        counterpart: r.get(5)?,
        digest: r.get(6)?,
        detail: r.get(7)?,
    })
}

fn hash32(v: Option<Vec<u8>>) -> rusqlite::Result<[u8; 32]> {
    v.and_then(|v| v.try_into().ok())
        .ok_or_else(|| corrupt("hash"))
}

const COLUMNS: &str = "at, actor, action, type, msg_id, counterpart, digest, detail";

/// Every record naming message `id`, oldest first (over `audit_by_message`).
pub(super) fn of_message(c: &Connection, id: uuid::Uuid) -> rusqlite::Result<Vec<Entry>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit WHERE msg_id = ?1 ORDER BY seq"
    ))?
    .query_map([id.to_string()], entry)?
    .collect()
}

pub(super) fn unsealed(c: &Connection, limit: usize) -> rusqlite::Result<Vec<(i64, Entry)>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS}, seq FROM audit WHERE pos IS NULL ORDER BY seq LIMIT ?1"
    ))?
    .query_map([limit as i64], |r| Ok((r.get(8)?, entry(r)?)))?
    .collect()
}

pub(super) fn seal(
    c: &Connection,
    sealed: &[(i64, Record)],
    checkpoint: Option<&Checkpoint>,
) -> rusqlite::Result<()> {
    let mut update =
        c.prepare_cached("UPDATE audit SET pos = ?2, prev = ?3, hash = ?4 WHERE seq = ?1")?;
    for (row, r) in sealed {
        update.execute(params![row, r.pos, &r.prev[..], &r.hash[..]])?;
    }
    if let Some(cp) = checkpoint {
        c.prepare_cached(
            "INSERT OR IGNORE INTO audit_checkpoints(count, head, at, jws) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![cp.count, &cp.head[..], cp.at, cp.jws])?;
    }
    Ok(())
}

fn head(c: &Connection) -> rusqlite::Result<Head> {
    let (count, hash) = last_sealed(c)?;
    let cp: Option<(i64, i64)> = c
        .query_row(
            "SELECT count, at FROM audit_checkpoints ORDER BY count DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (checkpoint_count, checkpoint_at) = cp.unwrap_or((0, 0));
    Ok(Head {
        count,
        hash,
        checkpoint_count,
        checkpoint_at,
    })
}

fn records(c: &Connection, after: i64, limit: usize) -> rusqlite::Result<Vec<Record>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS}, pos, prev, hash FROM audit WHERE pos > ?1 ORDER BY pos LIMIT ?2"
    ))?
    .query_map(params![after, limit as i64], |r| {
        Ok(Record {
            entry: entry(r)?,
            pos: r.get(8)?,
            prev: hash32(r.get(9)?)?,
            hash: hash32(r.get(10)?)?,
        })
    })?
    .collect()
}

fn checkpoints(c: &Connection) -> rusqlite::Result<Vec<Checkpoint>> {
    c.prepare_cached("SELECT count, head, at, jws FROM audit_checkpoints ORDER BY count")?
        .query_map([], |r| {
            Ok(Checkpoint {
                count: r.get(0)?,
                head: hash32(r.get(1)?)?,
                at: r.get(2)?,
                jws: r.get(3)?,
            })
        })?
        .collect()
}

fn unsealed_count(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row("SELECT count(*) FROM audit WHERE pos IS NULL", [], |r| {
        r.get(0)
    })
}

/// The audit of an embedded store opened read-only: `simpul audit verify --data DIR` reads it
/// beside a running bus or without one, and changes nothing.
pub struct SqliteAudit {
    conn: Mutex<Connection>,
}

impl SqliteAudit {
    pub fn open(path: &Path) -> Result<SqliteAudit, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(unavailable)?;
        Ok(SqliteAudit {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&c).map_err(unavailable)
    }
}

#[async_trait::async_trait]
impl AuditRead for SqliteAudit {
    async fn audit_head(&self) -> Result<Head, StoreError> {
        self.with(head)
    }
    async fn audit_records(&self, after: i64, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.with(|c| records(c, after, limit))
    }
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.with(checkpoints)
    }
    async fn unsealed_count(&self) -> Result<i64, StoreError> {
        self.with(unsealed_count)
    }
}

#[async_trait::async_trait]
impl AuditRead for SqliteStore {
    async fn audit_head(&self) -> Result<Head, StoreError> {
        self.read(head).await
    }
    async fn audit_records(&self, after: i64, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.read(move |c| records(c, after, limit)).await
    }
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.read(checkpoints).await
    }
    async fn unsealed_count(&self) -> Result<i64, StoreError> {
        self.read(unsealed_count).await
    }
}

#[async_trait::async_trait]
impl AuditTrail for SqliteStore {
    async fn record(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        self.submit(|a| super::writer::Op::Audit(entries, a)).await
    }

    /// One process opens the embedded store: it always leads, until the store closes.
    async fn lead_sealing(&self) -> Result<Leadership, StoreError> {
        let tx = self.tx.clone();
        Ok(Leadership {
            lost: Box::pin(async move { tx.closed().await }),
        })
    }

    async fn unsealed(&self, limit: usize) -> Result<Vec<(i64, Entry)>, StoreError> {
        self.read(move |c| unsealed(c, limit)).await
    }

    async fn subject_records(&self, subject: [u8; 32]) -> Result<Vec<Entry>, StoreError> {
        self.read(move |c| subject_records(c, subject)).await
    }

    async fn seal(
        &self,
        sealed: Vec<(i64, Record)>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<(), StoreError> {
        self.submit(|a| super::writer::Op::Seal(sealed, checkpoint, a))
            .await
    }
}
