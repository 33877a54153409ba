//! A local durable outbox, one per adapter, next to its agency system.
//!
//! Offices work over 2 Mbps links that drop. The agency system must keep submitting while the
//! bus is unreachable, so an adapter first writes every outgoing event here (SQLite, WAL,
//! `synchronous=FULL`: once `enqueue` returns, the event survives a crash) and forwards later, in
//! the order it was queued and with its original id. A forward cut off half-way is simply
//! repeated: the bus answers `duplicate` for what it already has, so nothing arrives twice.
//!
//! The same file holds the adapter's small local state (cursors, id mappings), so an adapter
//! has one file to back up.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use bus::client::{Client, ClientError};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

/// Most events in one batch envelope (the bus takes up to 1000).
pub const DEFAULT_BATCH: usize = 100;

const PENDING: i64 = 0;
const SENT: i64 = 1;
const REJECTED: i64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("an outgoing event needs a string `id` and `type`")]
    NoId,
    /// The link is down: what was not forwarded stays queued.
    #[error("bus unreachable: {0}")]
    Bus(#[from] ClientError),
    /// The bus is busy or failing (408, 429, 5xx): what was not forwarded stays queued.
    #[error("bus answered {status}: {detail}")]
    Busy { status: u16, detail: String },
}

/// What an operator needs to know about the link: how much is waiting, since when, and when
/// the bus last took something. `rejected` counts events the bus refused and native changes
/// that could not be mapped; both are kept with their reason ([`Outbox::rejected`]), not dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub backlog: u64,
    pub rejected: u64,
    pub oldest_pending_at: Option<String>,
    pub last_forward_at: Option<String>,
}

/// The outcome of one [`Outbox::forward`] run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub batches: usize,
    /// Bytes of the batch envelopes as JSON, and as sent (smaller when compressed).
    pub raw_bytes: usize,
    pub wire_bytes: usize,
}

/// How the outbox sends: batch size, and whether batch envelopes are gzip-compressed (for
/// the 2 Mbps office links; attendance batches shrink several times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardOptions {
    pub batch: usize,
    pub gzip: bool,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        ForwardOptions {
            batch: DEFAULT_BATCH,
            gzip: true,
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

pub struct Outbox {
    conn: Mutex<Connection>,
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Outbox {
    pub fn open(path: &Path) -> Result<Outbox, OutboxError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS outbox (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 id TEXT NOT NULL UNIQUE,
                 type TEXT NOT NULL,
                 body TEXT NOT NULL,
                 state INTEGER NOT NULL DEFAULT 0,
                 queued_at TEXT NOT NULL,
                 reason TEXT
             );
             CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, seq);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        Ok(Outbox {
            conn: Mutex::new(conn),
        })
    }

    /// The local database, for the adapter's own small tables.
    pub fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one event durably. Returns false if an event with this id was already queued.
    pub fn enqueue(&self, event: &Value) -> Result<bool, OutboxError> {
        Ok(self.enqueue_all(std::slice::from_ref(event))? == 1)
    }

    /// Queues events in one transaction, in order; returns how many were new.
    pub fn enqueue_all(&self, events: &[Value]) -> Result<usize, OutboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut added = 0;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO outbox (id, type, body, queued_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO NOTHING",
            )?;
            let at = now();
            for ev in events {
                let (Some(id), Some(ty)) = (ev["id"].as_str(), ev["type"].as_str()) else {
                    return Err(OutboxError::NoId);
                };
                added += stmt.execute(params![id, ty, ev.to_string(), at])?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// Records a native change that could not be mapped, so it is never dropped silently: it
    /// shows in [`Outbox::health`] (`rejected`) and [`Outbox::rejected`] with its reason, for
    /// an operator to fix at the source. `key` identifies it (e.g. `siak.log/42`); recording
    /// the same key twice keeps the first.
    pub fn set_aside(&self, key: &str, what: &str, reason: &str) -> Result<(), OutboxError> {
        self.conn().execute(
            "INSERT INTO outbox (id, type, body, state, queued_at, reason)
             VALUES (?1, ?2, '{}', 2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
            params![key, what, now(), reason],
        )?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, OutboxError> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), OutboxError> {
        self.conn().execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn health(&self) -> Result<Health, OutboxError> {
        let conn = self.conn();
        let count = |state: i64| -> rusqlite::Result<u64> {
            conn.query_row(
                "SELECT COUNT(*) FROM outbox WHERE state = ?1",
                [state],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        };
        let backlog = count(PENDING)?;
        let rejected = count(REJECTED)?;
        let oldest_pending_at = conn
            .query_row(
                "SELECT queued_at FROM outbox WHERE state = 0 ORDER BY seq LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        drop(conn);
        Ok(Health {
            backlog,
            rejected,
            oldest_pending_at,
            last_forward_at: self.meta("last_forward_at")?,
        })
    }

    /// Events the bus refused, with its reason (already masked by the bus).
    pub fn rejected(&self) -> Result<Vec<(String, String)>, OutboxError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, COALESCE(reason, '') FROM outbox WHERE state = 2 ORDER BY seq")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Why the bus refused the event `id`, if it did: its answer, as the bus gave it.
    pub fn refusal(&self, id: &str) -> Result<Option<String>, OutboxError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT COALESCE(reason, '') FROM outbox WHERE id = ?1 AND state = 2",
                [id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn pending(&self, max: usize) -> Result<Vec<(i64, Value)>, OutboxError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT seq, body FROM outbox WHERE state = 0 ORDER BY seq LIMIT ?1")?;
        let rows = stmt.query_map([max as i64], |r| {
            let body: String = r.get(1)?;
            Ok((
                r.get(0)?,
                serde_json::from_str(&body).unwrap_or(Value::Null),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn mark(&self, seqs: &[i64], state: i64, reason: Option<&str>) -> Result<(), OutboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("UPDATE outbox SET state = ?2, reason = ?3 WHERE seq = ?1")?;
            for s in seqs {
                stmt.execute(params![s, state, reason])?;
            }
            if state == SENT {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('last_forward_at', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [now()],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forwards everything pending, oldest first, in batch envelopes of up to `batch` events.
    ///
    /// Stops at the first sign the link or the bus is down (connection error, 5xx, 429) and
    /// leaves the rest queued; call again later. A batch the bus refuses as a whole (one bad
    /// event fails the batch) is resent one by one, so only the bad event is set aside, with the
    /// bus's reason, and order among the good ones is kept.
    pub async fn forward(
        &self,
        client: &Client,
        opts: ForwardOptions,
    ) -> Result<Forwarded, OutboxError> {
        let mut out = Forwarded::default();
        loop {
            let rows = self.pending(opts.batch.clamp(1, 1000))?;
            if rows.is_empty() {
                return Ok(out);
            }
            let events: Vec<Value> = rows.iter().map(|(_, e)| e.clone()).collect();
            let seqs: Vec<i64> = rows.iter().map(|(s, _)| *s).collect();
            let raw = serde_json::to_vec(&events).unwrap_or_default();
            out.raw_bytes += raw.len();
            let answer = if events.len() == 1 {
                out.wire_bytes += raw.len();
                client.send(&events[0]).await?
            } else if opts.gzip {
                let body = gzip(&raw);
                out.wire_bytes += body.len();
                client.send_batch_gzip(body).await?
            } else {
                out.wire_bytes += raw.len();
                client.send_batch(&events).await?
            };
            out.batches += 1;
            match answer.status.as_u16() {
                202 => {
                    self.mark(&seqs, SENT, None)?;
                    count_results(&answer.body, &mut out);
                }
                s if s == 408 || s == 429 || s >= 500 => return Err(refused(&answer)),
                _ if rows.len() > 1 => {
                    for (seq, ev) in rows {
                        let a = client.send(&ev).await?;
                        match a.status.as_u16() {
                            202 => {
                                self.mark(&[seq], SENT, None)?;
                                count_results(&a.body, &mut out);
                            }
                            s if s == 408 || s == 429 || s >= 500 => return Err(refused(&a)),
                            _ => {
                                self.mark(&[seq], REJECTED, Some(&a.body.to_string()))?;
                                out.rejected += 1;
                            }
                        }
                    }
                }
                _ => {
                    self.mark(&seqs, REJECTED, Some(&answer.body.to_string()))?;
                    out.rejected += 1;
                }
            }
        }
    }
}

fn refused(a: &bus::client::Answer) -> OutboxError {
    OutboxError::Busy {
        status: a.status.as_u16(),
        detail: a.body["detail"].as_str().unwrap_or_default().to_owned(),
    }
}

fn count_results(body: &Value, out: &mut Forwarded) {
    let single = [body.clone()];
    let results = body["results"].as_array().map_or(&single[..], |v| v);
    for r in results {
        if r["status"] == "duplicate" {
            out.duplicates += 1;
        } else {
            out.accepted += 1;
        }
    }
}
