//! The SIAK/SPCP adapter (Dukcapil, member `GOV/dukcapil`).
//!
//! It answers `siak.penduduk.verify` and `siak.penduduk.get`, takes citizen service requests
//! (`layanan.permohonan`) into SIAK, and turns SIAK's change log into events (lahir,
//! meninggal, pindah, KK change) and service status notices (`layanan.status`).

mod events;
pub mod mapping;
pub mod simulator;
pub mod webservice;

use std::sync::Arc;

use bus::formats::mask_id;
use serde_json::{Map, Value, json};

use crate::agency::{AdapterError, Agency};
use crate::link::{Leased, Link};
use crate::normal;
use crate::runner::InboxHandler;
use mapping::Penduduk;

/// Errors of the native system (SIAK or its simulator).
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    #[error("SIAK database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("no such record in SIAK")]
    NotFound,
    /// SIAK's web service could not be reached or refused the call (its `RESPON`).
    #[error("SIAK web service: {0}")]
    Service(String),
}

impl From<NativeError> for AdapterError {
    fn from(e: NativeError) -> Self {
        AdapterError::Native(e.to_string())
    }
}

/// One entry of SIAK's change log, in SIAK's words: `jenis` is LAHIR, MATI, PINDAH, UBAH_KK or
/// LAYANAN, and `data` the native upper-case fields.
#[derive(Debug, Clone)]
pub struct Perubahan {
    pub seq: i64,
    pub jenis: String,
    pub data: Value,
}

/// SIAK's native interface, as the adapter uses it. In production it is
/// [`webservice::SiakWebService`], the client of Dukcapil's web service; the simulator
/// implements it in-process for fast tests and the demo, and serves the same web service as its
/// own process (`simpul simulate siak`). Async, because the real one is a network call.
#[async_trait::async_trait]
pub trait SiakSystem: Send + Sync {
    /// The native record for a NIK (upper-case fields, export variants and all).
    async fn cari_nik(&self, nik: &str) -> Result<Option<Value>, NativeError>;
    /// Native records whose full name is `nama` (SIAK's own name index).
    async fn cari_nama(&self, nama: &str) -> Result<Vec<Value>, NativeError>;
    /// Change-log entries after `after`, oldest first.
    async fn log_perubahan(&self, after: i64, max: usize) -> Result<Vec<Perubahan>, NativeError>;
    /// Registers a service request with its details in SIAK's names (`rincian`, e.g. the
    /// village, place and day a mobile registration van is booked for); returns SIAK's
    /// registration number. Idempotent per `referensi`, so a redelivered request is
    /// registered once.
    async fn terima_layanan(
        &self,
        nik: &str,
        jenis: &str,
        referensi: &str,
        rincian: &Value,
    ) -> Result<String, NativeError>;
}

/// Thresholds of the fuzzy comparisons. Names and addresses are typed by hand in many
/// offices; a threshold tells the asker how much was forgiven.
#[derive(Debug, Clone)]
pub struct SiakConfig {
    pub name_threshold: f64,
    pub place_threshold: f64,
    pub address_threshold: f64,
}

impl Default for SiakConfig {
    fn default() -> Self {
        SiakConfig {
            name_threshold: 0.85,
            place_threshold: 0.8,
            address_threshold: 0.75,
        }
    }
}

pub struct SiakAdapter {
    pub config: SiakConfig,
    native: Arc<dyn SiakSystem>,
    pub link: Link,
}

impl Agency for SiakAdapter {
    const NAME: &'static str = "SIAK";
    const MEMBER: &'static str = "GOV/dukcapil";
    const PRODUCES: &'static [&'static str] = &[
        "siak.penduduk.lahir",
        "siak.penduduk.meninggal",
        "siak.penduduk.pindah",
        "siak.kk.berubah",
        "layanan.status",
    ];
    const CONSUMES: &'static [&'static str] = &[
        "siak.penduduk.verify",
        "siak.penduduk.get",
        "layanan.permohonan",
    ];
}

const CURSOR: &str = "siak.log_cursor";

impl SiakAdapter {
    pub fn new(config: SiakConfig, native: Arc<dyn SiakSystem>, link: Link) -> SiakAdapter {
        SiakAdapter {
            config,
            native,
            link,
        }
    }

    /// The resident and whether SIAK marks them dead.
    async fn lookup(&self, nik: &str) -> Result<Option<(Penduduk, bool)>, AdapterError> {
        let Some(rec) = self.native.cari_nik(nik).await? else {
            return Ok(None);
        };
        let dead = rec["STATUS_HIDUP"] == "MATI";
        Ok(Some((mapping::penduduk(&rec)?, dead)))
    }

    /// Other NIKs for the same person: same name, birth date and mother's name.
    pub async fn duplicates_of(&self, p: &Penduduk) -> Result<Vec<String>, AdapterError> {
        let Some(ibu) = &p.nama_ibu else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for rec in self.native.cari_nama(&p.nama).await? {
            match mapping::penduduk(&rec) {
                Ok(o)
                    if o.nik != p.nik
                        && o.tanggal_lahir == p.tanggal_lahir
                        && o.nama_ibu.as_deref().map(normal::comparable)
                            == Some(normal::comparable(ibu)) =>
                {
                    out.push(o.nik)
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "record skipped in duplicate search"),
            }
        }
        Ok(out)
    }

    async fn status_of(&self, p: &Penduduk, dead: bool) -> Result<&'static str, AdapterError> {
        Ok(if dead {
            "meninggal"
        } else if !self.duplicates_of(p).await?.is_empty() {
            "ganda"
        } else {
            "aktif"
        })
    }

    /// Answers `siak.penduduk.verify`: sesuai / tidak_sesuai per field asked, a status, and
    /// never the record.
    pub async fn verify(&self, req: &Value) -> Result<Value, AdapterError> {
        let nik = req["nik"].as_str().unwrap_or_default();
        let asked = |f: &str| req.get(f).and_then(Value::as_str);
        let verdict = |ok: bool| if ok { "sesuai" } else { "tidak_sesuai" };
        let mut hasil = Map::new();
        let found = self.lookup(nik).await?;
        let status = match &found {
            None => "tidak_ditemukan",
            Some((p, dead)) => self.status_of(p, *dead).await?,
        };
        let fuzzy = |theirs: Option<&str>, ours: Option<&str>, threshold: f64| {
            let score = match (theirs, ours) {
                (Some(a), Some(b)) => normal::similarity(a, b),
                _ => 0.0,
            };
            json!({ "hasil": verdict(score >= threshold), "skor": score, "ambang": threshold })
        };
        let p = found.as_ref().map(|(p, _)| p);
        let c = &self.config;
        if let Some(v) = asked("nama") {
            hasil.insert(
                "nama".into(),
                fuzzy(Some(v), p.map(|p| p.nama.as_str()), c.name_threshold),
            );
        }
        if let Some(v) = asked("tempat_lahir") {
            let ours = p.and_then(|p| p.tempat_lahir.as_deref());
            hasil.insert(
                "tempat_lahir".into(),
                fuzzy(Some(v), ours, c.place_threshold),
            );
        }
        if let Some(v) = asked("alamat") {
            let ours = p.and_then(|p| p.alamat.as_deref());
            hasil.insert("alamat".into(), fuzzy(Some(v), ours, c.address_threshold));
        }
        let exact = |v: &str, ours: Option<&str>| json!({ "hasil": verdict(ours == Some(v)) });
        if let Some(v) = asked("tanggal_lahir") {
            hasil.insert(
                "tanggal_lahir".into(),
                exact(v, p.map(|p| p.tanggal_lahir.as_str())),
            );
        }
        if let Some(v) = asked("jenis_kelamin") {
            hasil.insert("jenis_kelamin".into(), exact(v, p.map(|p| p.jenis_kelamin)));
        }
        if let Some(v) = asked("no_kk") {
            hasil.insert("no_kk".into(), exact(v, p.and_then(|p| p.no_kk.as_deref())));
        }
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Ok(json!({ "status": status, "hasil": hasil, "diperiksa_pada": now }))
    }

    /// Answers `siak.penduduk.get`: the whole canonical record. The bus, not the adapter,
    /// cuts it to the requester's grant, so the rule lives in one place (the registry).
    pub async fn get(&self, req: &Value) -> Result<Value, AdapterError> {
        let nik = req["nik"].as_str().unwrap_or_default();
        Ok(match self.lookup(nik).await? {
            None => json!({ "status": "tidak_ditemukan" }),
            Some((p, dead)) => {
                let status = self.status_of(&p, dead).await?;
                let mut v = serde_json::to_value(&p).unwrap_or_default();
                v["status"] = json!(status);
                v
            }
        })
    }
}

impl InboxHandler for SiakAdapter {
    fn link(&self) -> &Link {
        &self.link
    }

    async fn handle(&self, m: Leased) -> Result<(), AdapterError> {
        let me = Self::MEMBER;
        match m.type_.as_str() {
            "siak.penduduk.verify" | "siak.penduduk.get" => {
                let answer = if m.type_ == "siak.penduduk.verify" {
                    self.verify(&m.data).await
                } else {
                    self.get(&m.data).await
                };
                match answer {
                    Ok(a) => {
                        self.link.reply(m.id, &a).await?;
                        let status = a["status"].as_str().unwrap_or_default();
                        self.link.trace.hop(
                            me,
                            &m.source,
                            &m.type_,
                            &format!("reply: status {status}"),
                        );
                    }
                    Err(e) => {
                        let reason = bus::formats::mask_digit_runs(&e.to_string());
                        self.link.nack(m.id, &reason).await?;
                        self.link
                            .trace
                            .hop(me, &m.source, &m.type_, &format!("refused: {reason}"));
                    }
                }
            }
            "layanan.permohonan" => {
                let nik = m.data["nik"].as_str().unwrap_or_default();
                let jenis =
                    mapping::layanan_native(m.data["layanan"].as_str().unwrap_or_default())?;
                let referensi = format!("{}|{}", m.source, m.id);
                let rincian = mapping::layanan_rincian(&m.data);
                let no = self
                    .native
                    .terima_layanan(nik, jenis, &referensi, &rincian)
                    .await?;
                self.link.ack(m.id).await?;
                self.link.trace.note(&format!(
                    "  SIAK registers {jenis} for NIK {} as no. {no}",
                    mask_id(nik)
                ));
            }
            other => {
                self.link
                    .nack(m.id, &format!("{other} is not handled by the SIAK adapter"))
                    .await?;
            }
        }
        Ok(())
    }

    /// SIAK's change log goes out after each poll.
    async fn after_poll(&self) -> Result<(), AdapterError> {
        crate::runner::publish(self).await.map(drop)
    }
}
