//! The e-absen adapter (BKPSDM attendance, member `GOV/bkpsdm/eabsen`).
//!
//! Ingests ATTLOG exports, device pushes and mobile check-ins; maps device PINs to NIPs
//! (BKPSDM's table, kept in the adapter's local database) and device-local time to a time
//! with the office's UTC offset; publishes `eabsen.kehadiran.tercatat` events into the feed
//! HR reads by cursor; answers the daily recap query per unit (`eabsen.rekap.harian`).
//!
//! Event ids are derived from NIP and zoned time under the adapter's id key
//! ([`crate::idkey`]), so importing the same export twice, or receiving a punch both by push
//! and by export, gives one event: the bus drops the repeat.

pub mod attlog;
pub mod iclock;
pub mod simulator;
pub mod terminal;

use bus::formats::{Format, mask_id};
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::agency::{AdapterError, Agency, MappingError, envelope};
use crate::link::{Leased, Link};
use crate::runner::InboxHandler;
use attlog::{LineError, Punch};

/// The office's configuration.
#[derive(Debug, Clone)]
pub struct EabsenConfig {
    /// Offset of the devices' local clocks: WIB +07:00, WITA +08:00, WIT +09:00.
    pub offset: UtcOffset,
}

impl Default for EabsenConfig {
    fn default() -> Self {
        EabsenConfig {
            offset: UtcOffset::from_hms(7, 0, 0).unwrap_or(UtcOffset::UTC),
        }
    }
}

/// What an import did. Bad lines are reported here, by line and field, never dropped silently.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub parsed: usize,
    /// Punches queued for the bus for the first time.
    pub queued: usize,
    /// Punches already queued by an earlier import.
    pub repeats: usize,
    pub errors: Vec<LineError>,
}

/// Mobile check-ins go out under v2 of the attendance schema, which carries the photo hash.
pub const CHECK_IN_SCHEMA: &str = "urn:simpul:schema:eabsen.kehadiran.tercatat.v2";

pub struct EabsenAdapter {
    pub config: EabsenConfig,
    pub link: Link,
}

impl Agency for EabsenAdapter {
    const NAME: &'static str = "e-absen";
    const MEMBER: &'static str = "GOV/bkpsdm/eabsen";
    const PRODUCES: &'static [&'static str] = &["eabsen.kehadiran.tercatat"];
    const CONSUMES: &'static [&'static str] = &["eabsen.rekap.harian"];
}

impl EabsenAdapter {
    pub fn new(config: EabsenConfig, link: Link) -> Result<EabsenAdapter, AdapterError> {
        link.outbox.conn().execute_batch(
            "CREATE TABLE IF NOT EXISTS pegawai (pin TEXT PRIMARY KEY, nip TEXT NOT NULL, unit TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS kehadiran (
                 id TEXT PRIMARY KEY, nip TEXT NOT NULL, waktu TEXT NOT NULL, tanggal TEXT NOT NULL,
                 jam TEXT NOT NULL, sumber TEXT NOT NULL, foto_sha256 TEXT);
             -- One row per punch, whatever its id: ids were unkeyed before, so a re-import after
             -- the upgrade would otherwise add the same punch again under a new id (and the
             -- recap would count it twice). Rows doubled that way before are folded first.
             DELETE FROM kehadiran WHERE rowid NOT IN
                 (SELECT MIN(rowid) FROM kehadiran GROUP BY nip, waktu);
             CREATE UNIQUE INDEX IF NOT EXISTS kehadiran_punch ON kehadiran (nip, waktu);",
        )?;
        Ok(EabsenAdapter { config, link })
    }

    /// Adds or changes one row of the PIN → NIP table. The NIP is checked as the bus would.
    pub fn set_pegawai(&self, pin: &str, nip: &str, unit: &str) -> Result<(), AdapterError> {
        let pin = attlog::normalize_pin(pin)
            .ok_or_else(|| MappingError::one("PIN", "not alphanumeric"))?;
        Format::Nip.check(nip).map_err(|r| {
            MappingError::one("NIP", format!("is not a valid nip: {}", r.join(", ")))
        })?;
        self.link.outbox.conn().execute(
            "INSERT INTO pegawai (pin, nip, unit) VALUES (?1, ?2, ?3)
             ON CONFLICT (pin) DO UPDATE SET nip = excluded.nip, unit = excluded.unit",
            params![pin, nip, unit],
        )?;
        Ok(())
    }

    fn nip_of(&self, pin: &str) -> Result<Option<String>, AdapterError> {
        Ok(self
            .link
            .outbox
            .conn()
            .query_row("SELECT nip FROM pegawai WHERE pin = ?1", [pin], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Mapping in: one device punch → the canonical event.
    pub fn map_punch(&self, p: &Punch) -> Result<Value, LineError> {
        let nip = self
            .nip_of(&p.pin)
            .ok()
            .flatten()
            .ok_or_else(|| LineError {
                line: p.line,
                field: "PIN",
                reason: "not in the PIN → NIP table".into(),
            })?;
        let at = p.local.assume_offset(self.config.offset);
        let waktu = at.format(&Rfc3339).unwrap_or_default();
        let data = json!({
            "nip": nip, "waktu": waktu, "sumber": "mesin", "perangkat": p.device,
            "status_kode": p.status, "verifikasi_kode": p.verify,
        });
        Ok(envelope(
            self.link.ids.derive(&["eabsen.kehadiran", &nip, &waktu]),
            "eabsen.kehadiran.tercatat",
            data,
            None,
        ))
    }

    /// Keeps the punch locally (for the daily recap). False when the same punch (NIP and time)
    /// is already kept under another id, one derived before ids were keyed: it was sent then,
    /// and must not go out again as a new event. A punch kept under this same id may still
    /// need queueing (a crash between keeping and queueing), so that answers true.
    fn record(&self, ev: &Value, foto: Option<&str>) -> Result<bool, AdapterError> {
        let d = &ev["data"];
        let waktu = d["waktu"].as_str().unwrap_or_default();
        let at = OffsetDateTime::parse(waktu, &Rfc3339)
            .map_err(|_| MappingError::one("waktu", "is not RFC 3339"))?
            .to_offset(self.config.offset);
        self.link.outbox.conn().execute(
            "INSERT OR IGNORE INTO kehadiran (id, nip, waktu, tanggal, jam, sumber, foto_sha256)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                ev["id"].as_str(),
                d["nip"].as_str(),
                waktu,
                at.date().to_string(),
                format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second()),
                d["sumber"].as_str(),
                foto
            ],
        )?;
        let kept: String = self.link.outbox.conn().query_row(
            "SELECT id FROM kehadiran WHERE nip = ?1 AND waktu = ?2",
            params![d["nip"].as_str(), waktu],
            |r| r.get(0),
        )?;
        Ok(Some(kept.as_str()) == ev["id"].as_str())
    }

    fn ingest(
        &self,
        punches: Vec<Punch>,
        mut errors: Vec<LineError>,
    ) -> Result<ImportReport, AdapterError> {
        let mut r = ImportReport {
            parsed: punches.len(),
            ..ImportReport::default()
        };
        let mut events = Vec::new();
        for p in &punches {
            match self.map_punch(p) {
                Ok(ev) => events.push(ev),
                Err(e) => errors.push(e),
            }
        }
        for ev in &events {
            if self.record(ev, None)? && self.link.queue(ev)? {
                r.queued += 1;
            } else {
                r.repeats += 1;
            }
        }
        for e in &errors {
            tracing::warn!(line = e.line, field = e.field, reason = %e.reason, "attendance line not imported");
        }
        r.errors = errors;
        self.link.trace.hop(
            Self::MEMBER,
            "feed",
            "eabsen.kehadiran.tercatat",
            &format!(
                "queued {} new, {} repeats, {} bad lines",
                r.queued,
                r.repeats,
                r.errors.len()
            ),
        );
        Ok(r)
    }

    /// Imports an ATTLOG export file (queues only; [`Link::flush`] forwards).
    pub fn import_attlog(&self, text: &str) -> Result<ImportReport, AdapterError> {
        let (ok, bad) = attlog::parse_attlog(text);
        self.ingest(ok, bad)
    }

    /// Takes a device push (`sn` is the device serial from the request).
    pub fn import_push(&self, sn: &str, body: &str) -> Result<ImportReport, AdapterError> {
        let (ok, bad) = attlog::parse_push(sn, body);
        self.ingest(ok, bad)
    }

    /// A mobile check-in: `{"nip", "waktu" (RFC 3339 with zone), "lat", "lon", "foto_sha256"}`.
    /// The photo itself stays on the phone service; its hash is kept locally as evidence and
    /// sent with the event, under v2 of the attendance schema ([`CHECK_IN_SCHEMA`]).
    pub fn check_in(&self, c: &Value) -> Result<bool, AdapterError> {
        let mut p = crate::agency::Problems::default();
        let nip = c["nip"].as_str().unwrap_or_default();
        if let Err(r) = Format::Nip.check(nip) {
            p.push("nip", format!("is not a valid nip: {}", r.join(", ")));
        }
        let waktu = c["waktu"]
            .as_str()
            .and_then(|w| OffsetDateTime::parse(w, &Rfc3339).ok());
        if waktu.is_none() {
            p.push("waktu", "must be RFC 3339 with a zone offset");
        }
        let lat = c["lat"].as_f64().filter(|v| (-90.0..=90.0).contains(v));
        let lon = c["lon"].as_f64().filter(|v| (-180.0..=180.0).contains(v));
        if lat.is_none() {
            p.push("lat", "must be a number in -90..90");
        }
        if lon.is_none() {
            p.push("lon", "must be a number in -180..180");
        }
        let foto = c["foto_sha256"].as_str().unwrap_or_default();
        if foto.len() != 64 || !foto.chars().all(|ch| matches!(ch, '0'..='9' | 'a'..='f')) {
            p.push("foto_sha256", "must be 64 lower-case hex digits");
        }
        let (waktu, lat, lon) = p.finish(|| (waktu, lat, lon))?;
        let waktu = waktu
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .format(&Rfc3339)
            .unwrap_or_default();
        let data = json!({
            "nip": nip, "waktu": waktu, "sumber": "mobile",
            "lokasi": { "lat": lat, "lon": lon }, "foto_sha256": foto,
        });
        let mut ev = envelope(
            self.link.ids.derive(&["eabsen.kehadiran", nip, &waktu]),
            "eabsen.kehadiran.tercatat",
            data,
            None,
        );
        ev["dataschema"] = json!(CHECK_IN_SCHEMA);
        let new = self.record(&ev, Some(foto))? && self.link.queue(&ev)?;
        self.link.trace.hop(
            Self::MEMBER,
            "feed",
            "eabsen.kehadiran.tercatat",
            &format!("mobile check-in NIP {} queued", mask_id(nip)),
        );
        Ok(new)
    }

    /// Answers `eabsen.rekap.harian`: every employee of the unit, with first and last punch
    /// of the (office-local) day. Employees with no punch are listed with `jumlah` 0.
    pub fn recap(&self, req: &Value) -> Result<Value, AdapterError> {
        let unit = req["unit"].as_str().unwrap_or_default();
        let tanggal = req["tanggal"].as_str().unwrap_or_default();
        let conn = self.link.outbox.conn();
        let mut stmt = conn.prepare(
            "SELECT p.nip, MIN(k.jam), MAX(k.jam), COUNT(k.id)
             FROM (SELECT DISTINCT nip FROM pegawai WHERE unit = ?1) p
             LEFT JOIN kehadiran k ON k.nip = p.nip AND k.tanggal = ?2
             GROUP BY p.nip ORDER BY p.nip",
        )?;
        let rows = stmt.query_map(params![unit, tanggal], |r| {
            let n: i64 = r.get(3)?;
            let mut v = json!({ "nip": r.get::<_, String>(0)?, "jumlah": n });
            if n > 0 {
                v["masuk"] = json!(r.get::<_, String>(1)?);
            }
            if n > 1 {
                v["pulang"] = json!(r.get::<_, String>(2)?);
            }
            Ok(v)
        })?;
        let pegawai: Vec<Value> = rows.collect::<Result<_, _>>()?;
        let off = self.config.offset;
        let zona = format!(
            "{:+03}:{:02}",
            off.whole_hours(),
            off.minutes_past_hour().abs()
        );
        Ok(json!({ "unit": unit, "tanggal": tanggal, "zona": zona, "pegawai": pegawai }))
    }
}

impl InboxHandler for EabsenAdapter {
    fn link(&self) -> &Link {
        &self.link
    }

    /// Answers recap queries; the outbox of punches is forwarded after each poll.
    async fn handle(&self, m: Leased) -> Result<(), AdapterError> {
        if m.type_ != "eabsen.rekap.harian" {
            return self
                .link
                .nack(m.id, "not handled by the e-absen adapter")
                .await;
        }
        let a = self.recap(&m.data)?;
        self.link.reply(m.id, &a).await?;
        let count = a["pegawai"].as_array().map_or(0, Vec::len);
        let unit = a["unit"].as_str().unwrap_or_default();
        self.link.trace.hop(
            Self::MEMBER,
            &m.source,
            &m.type_,
            &format!("reply: {count} pegawai for {unit}"),
        );
        Ok(())
    }
}
