//! `EabsenSimulator`: a stand-in for the fingerprint devices behind e-absen.
//!
//! Its embedded SQLite database holds each device's user table (PIN and name) and its punch
//! log. Its native interface is what such devices give you: an ATTLOG export file (PINs
//! right-aligned with spaces, tab-separated, CRLF line ends) and the push body the device
//! posts to its server. The PIN → NIP table is not here: it belongs to BKPSDM, so it is the
//! adapter's configuration.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, params};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// Synthetic employees: device PIN, NIP (real birth and appointment dates), unit.
pub const PEGAWAI: &[(&str, &str, &str, &str)] = &[
    ("1", "197803122005011002", "DISKOMINFO", "AHMAD HIDAYAT"),
    ("2", "199001052015032001", "DISKOMINFO", "SITI AMINAH"),
    ("23", "198811172019031004", "BAPPEDA", "RUDI HERMAWAN"),
    ("105", "199009132025242014", "BAPPEDA", "NINA KARTIKA"),
];

pub struct EabsenSimulator {
    /// Machine number as the ATTLOG export writes it.
    pub machine: String,
    /// Serial number the device sends with its pushes.
    pub serial: String,
    db: Mutex<Connection>,
}

impl EabsenSimulator {
    pub fn open(path: &Path, machine: &str, serial: &str) -> Result<EabsenSimulator, DeviceError> {
        let c = Connection::open(path)?;
        c.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS users (pin TEXT PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS attlog (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT, pin TEXT NOT NULL, time TEXT NOT NULL,
                 status INTEGER NOT NULL, verify INTEGER NOT NULL, workcode INTEGER NOT NULL DEFAULT 0,
                 pushed INTEGER NOT NULL DEFAULT 0);",
        )?;
        for (pin, _, _, name) in PEGAWAI {
            c.execute(
                "INSERT OR IGNORE INTO users (pin, name) VALUES (?1, ?2)",
                params![pin, name],
            )?;
        }
        Ok(EabsenSimulator {
            machine: machine.to_owned(),
            serial: serial.to_owned(),
            db: Mutex::new(c),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A finger on the reader: `time` is device-local `YYYY-MM-DD HH:MM:SS`.
    pub fn scan(&self, pin: &str, time: &str, status: i64, verify: i64) -> Result<(), DeviceError> {
        self.db().execute(
            "INSERT INTO attlog (pin, time, status, verify) VALUES (?1, ?2, ?3, ?4)",
            params![pin, time, status, verify],
        )?;
        Ok(())
    }

    /// The whole log as an ATTLOG export file.
    pub fn export_attlog(&self) -> Result<String, DeviceError> {
        let c = self.db();
        let mut stmt =
            c.prepare("SELECT pin, time, status, verify, workcode FROM attlog ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok(format!(
                "{:>9}\t{}\t{}\t{}\t{}\t{}\r\n",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                self.machine,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?
            ))
        })?;
        rows.collect::<Result<String, _>>().map_err(Into::into)
    }

    /// The next push body: punches not pushed yet, as the device posts them, marked pushed at
    /// once (for an in-process push that cannot be lost on the way).
    pub fn next_push(&self) -> Result<String, DeviceError> {
        let (body, last) = self.pending()?;
        if let Some(seq) = last {
            self.pushed_upto(seq)?;
        }
        Ok(body)
    }

    /// Punches not pushed yet (PIN, time, status, verify, workcode and two reserved fields,
    /// tab-separated), and the sequence number of the last: the `Stamp` of the upload.
    pub fn pending(&self) -> Result<(String, Option<i64>), DeviceError> {
        let c = self.db();
        let mut stmt = c.prepare(
            "SELECT seq, pin, time, status, verify, workcode FROM attlog WHERE pushed = 0
             ORDER BY seq LIMIT 500",
        )?;
        let mut last = None;
        let mut body = String::new();
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                format!(
                    "{}\t{}\t{}\t{}\t{}\t0\t0\n",
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?
                ),
            ))
        })?;
        for row in rows {
            let (seq, line) = row?;
            last = Some(seq);
            body.push_str(&line);
        }
        Ok((body, last))
    }

    /// The server took the upload up to `seq`.
    pub fn pushed_upto(&self, seq: i64) -> Result<(), DeviceError> {
        self.db()
            .execute("UPDATE attlog SET pushed = 1 WHERE seq <= ?1", [seq])?;
        Ok(())
    }

    /// The server's `ATTLOGStamp` from the handshake: it holds everything up to `stamp`
    /// (`None`: nothing, so everything is sent again).
    pub fn resume_from(&self, stamp: Option<i64>) -> Result<(), DeviceError> {
        self.db().execute(
            "UPDATE attlog SET pushed = (seq <= ?1)",
            [stamp.unwrap_or(0)],
        )?;
        Ok(())
    }
}
