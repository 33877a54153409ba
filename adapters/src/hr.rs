//! BKPSDM's HR side (member `GOV/bkpsdm/hr`): reads the attendance feed by cursor and takes
//! population events (deaths, births, moves, KK changes) from its inbox.
//!
//! The cursor and every received event id live in one SQLite file and are written in one
//! transaction per page, so HR can stop at any point and resume with no gap and no duplicate.

use std::time::Duration;

use rusqlite::params;
use serde_json::Value;

use crate::agency::{AdapterError, Agency};
use crate::link::{Leased, Link, expect};
use crate::runner::InboxHandler;

pub struct HrReader {
    pub link: Link,
}

impl Agency for HrReader {
    const NAME: &'static str = "HR";
    const MEMBER: &'static str = "GOV/bkpsdm/hr";
    const PRODUCES: &'static [&'static str] = &[
        "eabsen.rekap.harian",
        "siak.penduduk.verify",
        "siak.penduduk.get",
    ];
    const CONSUMES: &'static [&'static str] = &[
        "eabsen.kehadiran.tercatat",
        "siak.penduduk.meninggal",
        "siak.penduduk.lahir",
        "siak.penduduk.pindah",
        "siak.kk.berubah",
    ];
}

/// One [`HrReader::read_feed`] run: events new to HR, and events HR already had (which a
/// correct feed and cursor never produce; counted so a test can prove it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FeedRead {
    pub new: usize,
    pub repeats: usize,
    pub cursor: i64,
}

impl HrReader {
    pub fn new(link: Link) -> Result<HrReader, AdapterError> {
        link.outbox.conn().execute_batch(
            "CREATE TABLE IF NOT EXISTS diterima (
                 id TEXT PRIMARY KEY, type TEXT NOT NULL, event TEXT NOT NULL);",
        )?;
        Ok(HrReader { link })
    }

    fn cursor_key(type_: &str) -> String {
        format!("hr.cursor.{type_}")
    }

    /// Reads up to `pages` pages of `limit` events of a feed from the stored cursor.
    pub async fn read_feed(
        &self,
        type_: &str,
        limit: usize,
        pages: usize,
    ) -> Result<FeedRead, AdapterError> {
        let key = Self::cursor_key(type_);
        let mut out = FeedRead {
            cursor: self
                .link
                .outbox
                .meta(&key)?
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            ..FeedRead::default()
        };
        for _ in 0..pages {
            let a = self.link.client().feed(type_, out.cursor, limit).await?;
            expect(&a, 200)?;
            let events = a.body["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                break;
            }
            let next = a.body["next"].as_i64().unwrap_or(out.cursor);
            let mut conn = self.link.outbox.conn();
            let tx = conn.transaction()?;
            for e in &events {
                let ev = &e["event"];
                let n = tx.execute(
                    "INSERT OR IGNORE INTO diterima (id, type, event) VALUES (?1, ?2, ?3)",
                    params![ev["id"].as_str(), type_, ev.to_string()],
                )?;
                if n == 1 {
                    out.new += 1;
                } else {
                    out.repeats += 1;
                }
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, next.to_string()],
            )?;
            tx.commit()?;
            out.cursor = next;
        }
        Ok(out)
    }

    /// Takes population events from the inbox, keeps them and acknowledges them.
    pub async fn take_inbox(&self, wait: Duration) -> Result<Vec<(String, Value)>, AdapterError> {
        let msgs = self.link.pull(100, wait).await?;
        let mut out = Vec::new();
        for m in msgs {
            out.push((m.type_.clone(), m.data.clone()));
            self.handle(m).await?;
        }
        Ok(out)
    }

    /// Events of a type HR holds.
    pub fn received(&self, type_: &str) -> Result<Vec<Value>, AdapterError> {
        let conn = self.link.outbox.conn();
        let mut stmt = conn.prepare("SELECT event FROM diterima WHERE type = ?1 ORDER BY rowid")?;
        let rows = stmt.query_map([type_], |r| r.get::<_, String>(0))?;
        Ok(rows
            .filter_map(Result::ok)
            .filter_map(|s| serde_json::from_str(&s).ok())
            .collect())
    }
}

/// The attendance feed HR follows when it runs as its own process.
const ATTENDANCE: &str = "eabsen.kehadiran.tercatat";

impl InboxHandler for HrReader {
    fn link(&self) -> &Link {
        &self.link
    }

    /// A population event is kept, then acknowledged.
    async fn handle(&self, m: Leased) -> Result<(), AdapterError> {
        self.link.outbox.conn().execute(
            "INSERT OR IGNORE INTO diterima (id, type, event) VALUES (?1, ?2, ?3)",
            params![m.id.to_string(), m.type_, m.data.to_string()],
        )?;
        self.link.ack(m.id).await
    }

    /// After each poll, the attendance feed is read on from HR's cursor.
    async fn after_poll(&self) -> Result<(), AdapterError> {
        self.read_feed(ATTENDANCE, 100, 10).await.map(drop)
    }
}
