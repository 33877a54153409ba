//! The store's tables, their version, and the migrations from every earlier version.
//!
//! The version lives in SQLite's `user_version`. A store is migrated at start, in one
//! transaction, so a crash during the upgrade leaves the old store as it was. A store written
//! by a newer binary is refused rather than guessed at.

use rusqlite::{Connection, params};

use crate::envelope::{content_hash, parse_id};
use crate::store::SchemaError;

/// The schema this binary writes.
pub const VERSION: i64 = 6;

const TABLES: &str = "
CREATE TABLE messages(
    seq INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    id BLOB NOT NULL,
    type TEXT NOT NULL,
    hash BLOB NOT NULL,
    envelope TEXT NOT NULL,
    warnings TEXT NOT NULL,
    accepted_at INTEGER NOT NULL,
    reply TEXT,
    -- Ids belong to their sender: the idempotency key.
    UNIQUE(sender, id)
);
-- state: 0 pending, 1 leased, 2 acked, 3 dead-lettered.
-- available_at: when a pending message becomes visible, or when a lease runs out.
-- dead: why it was dead-lettered (1 nacked, 2 out of attempts, 3 withdrawn).
CREATE TABLE deliveries(
    seq INTEGER PRIMARY KEY,
    msg_seq INTEGER NOT NULL,
    msg_id BLOB NOT NULL,
    recipient TEXT NOT NULL,
    state INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at INTEGER NOT NULL,
    reason TEXT,
    dead INTEGER,
    -- Changes with every lease: an ack naming an earlier lease is stale.
    lease_token BLOB
);
-- A recipient settles by message id; a sender's status reads by id too (then by msg_seq).
CREATE INDEX deliveries_by_id ON deliveries(msg_id, recipient);
CREATE INDEX inbox_open ON deliveries(recipient, seq) WHERE state < 2;
CREATE TABLE feed(
    seq INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    msg_seq INTEGER NOT NULL
);
CREATE INDEX feed_by_type ON feed(type, seq);
";

/// Indexes added after version 1's tables, created where missing.
const INDEXES: &str = "
-- An operator lists and redrives one recipient's dead letters, oldest first.
CREATE INDEX IF NOT EXISTS dead_letters ON deliveries(recipient, msg_seq) WHERE state = 3;
";

/// Creates the tables in an empty store, or migrates an older one to [`VERSION`].
pub fn prepare(c: &mut Connection) -> Result<(), SchemaError> {
    let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > VERSION {
        return Err(SchemaError::Newer {
            found: version,
            known: VERSION,
        });
    }
    if version == VERSION {
        return Ok(());
    }
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
    let has_messages: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages')",
        [],
        |r| r.get(0),
    )?;
    if !has_messages {
        tx.execute_batch(TABLES)?;
    } else if version <= 1 {
        // Version 1 (user_version 0): ids were one namespace for all members.
        from_v1(&tx)?;
    } else if version == 2 {
        // Version 2 had no lease tokens: its open leases have none, and an ack without a
        // token settles them as before.
        tx.execute_batch("ALTER TABLE deliveries ADD COLUMN lease_token BLOB")?;
    }
    // Version 4 added the audit log (what happened before it was not recorded), version 5
    // its subject index, version 6 the dead-letter index; all are created where missing.
    tx.execute_batch(super::audit::TABLES)?;
    tx.execute_batch(INDEXES)?;
    if has_messages {
        tracing::info!(
            "store migrated from schema version {} to {VERSION}",
            version.max(1)
        );
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Version 1 keyed messages by id alone. Every row is kept: pending and leased deliveries
/// (a lease can still be acked), acked and dead-lettered states with their reasons, the
/// feeds with their cursors (feed and delivery sequence numbers are kept as they were), and
/// the idempotency answers, whose content hash is recomputed in the canonical form.
fn from_v1(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "DROP INDEX IF EXISTS inbox_open;
         DROP INDEX IF EXISTS feed_by_type;
         ALTER TABLE messages RENAME TO messages_v1;
         ALTER TABLE deliveries RENAME TO deliveries_v1;
         ALTER TABLE feed RENAME TO feed_v1;",
    )?;
    tx.execute_batch(TABLES)?;
    tx.execute_batch(
        "INSERT INTO messages(sender, id, type, hash, envelope, warnings, accepted_at, reply)
           SELECT sender, id, type, hash, envelope, warnings, accepted_at, reply
           FROM messages_v1 ORDER BY accepted_at, rowid;
         INSERT INTO deliveries(seq, msg_seq, msg_id, recipient, state, attempts, available_at,
                                reason, dead)
           SELECT d.seq, m.seq, d.msg_id, d.recipient, d.state, d.attempts, d.available_at,
                  d.reason,
                  CASE WHEN d.state = 3 THEN
                    CASE WHEN d.reason LIKE 'nacked by %' THEN 1 ELSE 2 END
                  END
           FROM deliveries_v1 d
           JOIN messages_v1 o ON o.id = d.msg_id
           JOIN messages m ON m.sender = o.sender AND m.id = o.id;
         INSERT INTO feed(seq, type, msg_seq)
           SELECT f.seq, f.type, m.seq FROM feed_v1 f
           JOIN messages_v1 o ON o.id = f.msg_id
           JOIN messages m ON m.sender = o.sender AND m.id = o.id;
         DROP TABLE feed_v1;
         DROP TABLE deliveries_v1;
         DROP TABLE messages_v1;",
    )?;
    rehash(tx)
}

/// Version 1 hashed the event as received; a retry of a message stored then must still match,
/// so its hash is recomputed from the stored envelope the way [`content_hash`] does now.
fn rehash(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let mut read = tx.prepare("SELECT seq, envelope FROM messages")?;
    let mut write = tx.prepare("UPDATE messages SET hash = ?2 WHERE seq = ?1")?;
    let rows = read.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (seq, envelope) = row?;
        let Ok(serde_json::Value::Object(mut attrs)) = serde_json::from_str(&envelope) else {
            continue; // never written by the bus; its old hash stays
        };
        attrs.retain(|_, v| !v.is_null());
        if let Some(id) = attrs.get("id").and_then(|v| v.as_str()).and_then(parse_id) {
            attrs.insert("id".into(), id.to_string().into());
        }
        write.execute(params![seq, &content_hash(&attrs)[..]])?;
    }
    Ok(())
}
