//! The SIPANSE adapter (DPMPTSP licensing, member `GOV/dpmptsp`).
//!
//! G2B: businesses send `sipanse.izin.permohonan`; the adapter registers it in SIPANSE, checks
//! the applicant with Dukcapil over the bus (`siak.penduduk.verify`, G2G), and turns SIPANSE's
//! status log into `sipanse.izin.status` notices addressed to the applicant only. Withdrawal
//! (`sipanse.izin.penarikan`) and correction (`sipanse.izin.perbaikan`) are queries, so the
//! business gets its answer, or a clear refusal once the application is decided, at once.

pub mod simulator;

use std::sync::Arc;
use std::time::Duration;

use bus::formats::mask_id;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::agency::{AdapterError, Agency, MappingError, derived_id, envelope};
use crate::link::{Leased, Link};

#[derive(Debug, thiserror::Error)]
pub enum SipanseNativeError {
    #[error("SIPANSE database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("no such application in SIPANSE")]
    NotFound,
    #[error("the application is {0:?}; this action is not allowed any more")]
    WrongState(NativeStatus),
    #[error("unknown SIPANSE status code {0:?}")]
    UnknownStatus(String),
}

impl From<SipanseNativeError> for AdapterError {
    fn from(e: SipanseNativeError) -> Self {
        AdapterError::Native(e.to_string())
    }
}

/// SIPANSE's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeStatus {
    Baru,
    Verifikasi,
    Tolak,
    Setuju,
    Terbit,
    Ditarik,
}

impl NativeStatus {
    pub fn code(self) -> &'static str {
        match self {
            NativeStatus::Baru => "BARU",
            NativeStatus::Verifikasi => "VERIFIKASI",
            NativeStatus::Tolak => "TOLAK",
            NativeStatus::Setuju => "SETUJU",
            NativeStatus::Terbit => "TERBIT",
            NativeStatus::Ditarik => "DITARIK",
        }
    }

    pub fn from_code(s: &str) -> Result<NativeStatus, SipanseNativeError> {
        Ok(match s {
            "BARU" => NativeStatus::Baru,
            "VERIFIKASI" => NativeStatus::Verifikasi,
            "TOLAK" => NativeStatus::Tolak,
            "SETUJU" => NativeStatus::Setuju,
            "TERBIT" => NativeStatus::Terbit,
            "DITARIK" => NativeStatus::Ditarik,
            other => return Err(SipanseNativeError::UnknownStatus(other.to_owned())),
        })
    }

    /// The canonical status (`sipanse.izin.status` and the withdrawal answers).
    pub fn canonical(self) -> &'static str {
        match self {
            NativeStatus::Baru => "diterima",
            NativeStatus::Verifikasi => "diverifikasi",
            NativeStatus::Tolak => "ditolak",
            NativeStatus::Setuju => "disetujui",
            NativeStatus::Terbit => "terbit",
            NativeStatus::Ditarik => "ditarik",
        }
    }
}

/// An application in SIPANSE's own row shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativePermohonan {
    pub no_registrasi: String,
    /// `<applicant member>|<bus message id>`: how SIPANSE remembers who to answer.
    pub referensi: String,
    pub nib: String,
    pub npwp: String,
    pub nik_pemohon: String,
    pub nama_pemohon: String,
    pub jenis_izin: String,
    /// KBLI codes, comma-separated, as SIPANSE stores them.
    pub kbli: String,
    pub kode_lokasi: String,
    /// Attachments as a JSON array text.
    pub lampiran: String,
    pub status: String,
    pub no_izin: Option<String>,
}

/// One entry of SIPANSE's status log.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub seq: i64,
    pub no_registrasi: String,
    pub status: String,
    pub catatan: String,
    pub referensi: String,
    pub no_izin: Option<String>,
}

/// SIPANSE's native interface; [`simulator::SipanseSimulator`] implements it.
pub trait SipanseSystem: Send + Sync {
    /// Registers an application; idempotent per `referensi`. Returns the registration number.
    fn daftar(&self, p: &NativePermohonan) -> Result<String, SipanseNativeError>;
    fn cari(&self, no: &str) -> Result<Option<NativePermohonan>, SipanseNativeError>;
    fn cari_referensi(
        &self,
        referensi: &str,
    ) -> Result<Option<NativePermohonan>, SipanseNativeError>;
    /// Records the applicant check: VERIFIKASI when it passed, TOLAK with reasons otherwise.
    fn catat_verifikasi(
        &self,
        no: &str,
        lolos: bool,
        catatan: &str,
    ) -> Result<(), SipanseNativeError>;
    /// Withdraws an undecided application (`WrongState` once decided).
    fn tarik(&self, no: &str, alasan: &str) -> Result<(), SipanseNativeError>;
    /// Corrects an undecided application (`WrongState` once decided).
    fn ubah(&self, no: &str, p: &NativePermohonan) -> Result<(), SipanseNativeError>;
    fn log_status(&self, after: i64, max: usize) -> Result<Vec<StatusChange>, SipanseNativeError>;
}

/// Mapping out: a canonical application from `sender` → SIPANSE's row.
pub fn to_native(sender: &str, id: Uuid, d: &Value) -> Result<NativePermohonan, MappingError> {
    let s = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
    let kbli: Vec<&str> = d["kbli"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if kbli.is_empty() {
        return Err(MappingError::one("kbli", "needs at least one code"));
    }
    Ok(NativePermohonan {
        no_registrasi: String::new(),
        referensi: format!("{sender}|{id}"),
        nib: s("nib"),
        npwp: s("npwp"),
        nik_pemohon: d["pemohon"]["nik"].as_str().unwrap_or_default().to_owned(),
        nama_pemohon: d["pemohon"]["nama"].as_str().unwrap_or_default().to_owned(),
        jenis_izin: s("jenis_izin"),
        kbli: kbli.join(","),
        kode_lokasi: s("lokasi"),
        lampiran: d.get("lampiran").cloned().unwrap_or(json!([])).to_string(),
        status: String::new(),
        no_izin: None,
    })
}

/// Mapping in: one status-log entry → the notice for the applicant, or `None` for entries
/// that are answered synchronously instead (a withdrawal is answered to the query itself).
pub fn notice(member: &str, c: &StatusChange) -> Result<Option<Value>, MappingError> {
    let status = NativeStatus::from_code(&c.status)
        .map_err(|e| MappingError::one("status", e.to_string()))?;
    if status == NativeStatus::Ditarik {
        return Ok(None);
    }
    let (to, id) = c
        .referensi
        .split_once('|')
        .and_then(|(to, id)| Some((to, Uuid::parse_str(id).ok()?)))
        .ok_or_else(|| MappingError::one("referensi", "is not a bus application reference"))?;
    let mut data = json!({ "permohonan_id": id.to_string(), "status": status.canonical() });
    if status == NativeStatus::Tolak {
        let reasons: Vec<&str> = c
            .catatan
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        data["alasan"] = json!(if reasons.is_empty() {
            vec!["ditolak"]
        } else {
            reasons
        });
    }
    if status == NativeStatus::Terbit {
        let no = c
            .no_izin
            .clone()
            .ok_or_else(|| MappingError::one("no_izin", "is missing for TERBIT"))?;
        data["nomor_izin"] = json!(no);
    }
    let eid = derived_id(&[member, "status", &c.seq.to_string()]);
    Ok(Some(envelope(eid, "sipanse.izin.status", data, Some(to))))
}

pub struct SipanseAdapter {
    native: Arc<dyn SipanseSystem>,
    pub link: Link,
}

impl Agency for SipanseAdapter {
    const MEMBER: &'static str = "GOV/dpmptsp";
    const PRODUCES: &'static [&'static str] = &["sipanse.izin.status", "siak.penduduk.verify"];
    const CONSUMES: &'static [&'static str] = &[
        "sipanse.izin.permohonan",
        "sipanse.izin.penarikan",
        "sipanse.izin.perbaikan",
        "siak.penduduk.meninggal",
        "siak.penduduk.pindah",
    ];
}

const CURSOR: &str = "sipanse.status_cursor";

impl SipanseAdapter {
    pub fn new(native: Arc<dyn SipanseSystem>, link: Link) -> SipanseAdapter {
        SipanseAdapter { native, link }
    }

    pub async fn serve_inbox(&self, wait: Duration) -> Result<usize, AdapterError> {
        let msgs = self.link.pull(10, wait).await?;
        let n = msgs.len();
        for m in msgs {
            self.handle(m).await?;
        }
        self.publish_status().await?;
        Ok(n)
    }

    async fn handle(&self, m: Leased) -> Result<(), AdapterError> {
        match m.type_.as_str() {
            "sipanse.izin.permohonan" => self.application(m).await,
            "sipanse.izin.penarikan" | "sipanse.izin.perbaikan" => {
                let answer = self.amend(&m)?;
                let result = format!(
                    "{} ({})",
                    answer["hasil"].as_str().unwrap_or_default(),
                    answer["status"].as_str().unwrap_or_default()
                );
                self.link.reply(m.id, &answer).await?;
                self.link.trace.hop(
                    Self::MEMBER,
                    &m.source,
                    &m.type_,
                    &format!("reply: {result}"),
                );
                Ok(())
            }
            _ => {
                // Events SIPANSE subscribes to (deaths, moves) are acknowledged; a real
                // deployment would flag open applications of the person.
                self.link.ack(m.id).await
            }
        }
    }

    async fn application(&self, m: Leased) -> Result<(), AdapterError> {
        let me = Self::MEMBER;
        // A business applies under its own NIB only: the certificate says who it is.
        let own_nib = m.source.strip_prefix("COM/").unwrap_or_default();
        if m.data["nib"].as_str() != Some(own_nib) {
            let reason = "nib in the application is not the sender's NIB";
            self.link.nack(m.id, reason).await?;
            self.link.trace.hop(
                me,
                &m.source,
                "sipanse.izin.permohonan",
                &format!("refused: {reason}"),
            );
            return Ok(());
        }
        let native = to_native(&m.source, m.id, &m.data)?;
        let no = self.native.daftar(&native)?;
        let current = self.native.cari(&no)?.ok_or(SipanseNativeError::NotFound)?;
        if current.status == NativeStatus::Baru.code() {
            self.check_applicant(&no, &native).await?;
        }
        self.link.ack(m.id).await?;
        Ok(())
    }

    /// G2G: asks Dukcapil whether the applicant's NIK and name match, and records the answer.
    async fn check_applicant(&self, no: &str, p: &NativePermohonan) -> Result<(), AdapterError> {
        let req = json!({ "nik": p.nik_pemohon, "nama": p.nama_pemohon });
        let ans = self.link.ask("siak.penduduk.verify", req).await?;
        let status = ans["status"].as_str().unwrap_or_default();
        let nama = ans["hasil"]["nama"]["hasil"].as_str().unwrap_or_default();
        self.link.trace.hop(
            Self::MEMBER,
            "GOV/dukcapil",
            "siak.penduduk.verify",
            &format!(
                "NIK {}: status {status}, nama {nama}",
                mask_id(&p.nik_pemohon)
            ),
        );
        let mut reasons = Vec::new();
        match status {
            "aktif" => {}
            "meninggal" => reasons.push("NIK pemohon tercatat meninggal di Dukcapil"),
            "ganda" => reasons.push("NIK pemohon tercatat ganda di Dukcapil; hubungi Disdukcapil"),
            _ => reasons.push("NIK pemohon tidak ditemukan di Dukcapil"),
        }
        if status != "tidak_ditemukan" && nama != "sesuai" {
            reasons.push("nama pemohon tidak sesuai dengan data Dukcapil");
        }
        self.native
            .catat_verifikasi(no, reasons.is_empty(), &reasons.join("; "))?;
        Ok(())
    }

    /// Withdrawal or correction, allowed until the application is decided.
    fn amend(&self, m: &Leased) -> Result<Value, AdapterError> {
        let id = m.data["permohonan_id"].as_str().unwrap_or_default();
        let referensi = format!("{}|{}", m.source, id);
        // Only the applicant's own reference matches, so another business learns nothing.
        let Some(p) = self.native.cari_referensi(&referensi)? else {
            return Ok(json!({ "hasil": "ditolak", "alasan": "permohonan tidak ditemukan" }));
        };
        let result = if m.type_ == "sipanse.izin.penarikan" {
            self.native.tarik(
                &p.no_registrasi,
                m.data["alasan"].as_str().unwrap_or_default(),
            )
        } else {
            let mut changed = p.clone();
            let ch = &m.data["perubahan"];
            if let Some(v) = ch["jenis_izin"].as_str() {
                changed.jenis_izin = v.to_owned();
            }
            if let Some(v) = ch["kbli"].as_array() {
                changed.kbli = v
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",");
            }
            if let Some(v) = ch["lokasi"].as_str() {
                changed.kode_lokasi = v.to_owned();
            }
            if let Some(v) = ch.get("lampiran") {
                changed.lampiran = v.to_string();
            }
            self.native.ubah(&p.no_registrasi, &changed)
        };
        let now = self
            .native
            .cari(&p.no_registrasi)?
            .ok_or(SipanseNativeError::NotFound)?;
        let status = NativeStatus::from_code(&now.status)?.canonical();
        Ok(match result {
            Ok(()) => json!({ "hasil": "diterima", "status": status }),
            Err(SipanseNativeError::WrongState(_)) => json!({
                "hasil": "ditolak",
                "status": status,
                "alasan": format!("permohonan sudah {status}; penarikan atau perbaikan hanya sebelum diputuskan"),
            }),
            Err(e) => return Err(e.into()),
        })
    }

    /// SIPANSE's status log → notices to each applicant, through the outbox.
    pub async fn publish_status(&self) -> Result<usize, AdapterError> {
        let mut after: i64 = self
            .link
            .outbox
            .meta(CURSOR)?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut queued = 0;
        loop {
            let batch = self.native.log_status(after, 100)?;
            if batch.is_empty() {
                break;
            }
            for c in batch {
                match notice(Self::MEMBER, &c) {
                    Ok(Some(ev)) => {
                        if self.link.queue(&ev)? {
                            queued += 1;
                            let to = ev["to"].as_str().unwrap_or_default();
                            let st = ev["data"]["status"].as_str().unwrap_or_default();
                            self.link.trace.hop(
                                Self::MEMBER,
                                to,
                                "sipanse.izin.status",
                                &format!("queued: {st}"),
                            );
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(seq = c.seq, error = %e, "status not mapped");
                        self.link
                            .trace
                            .note(&format!("  SIPANSE status {} not mapped: {e}", c.seq));
                    }
                }
                after = c.seq;
                self.link.outbox.set_meta(CURSOR, &after.to_string())?;
            }
        }
        if let Err(e) = self.link.flush().await {
            tracing::warn!(error = %e, "bus unreachable; notices stay in the outbox");
        }
        Ok(queued)
    }

    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        while !*stop.borrow() {
            tokio::select! {
                r = self.serve_inbox(Duration::from_secs(1)) => {
                    if let Err(e) = r { tracing::warn!(error = %e, "SIPANSE inbox"); tokio::time::sleep(Duration::from_millis(200)).await; }
                }
                _ = stop.changed() => break,
            }
        }
    }
}
