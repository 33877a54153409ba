//! The SIPANSE adapter (DPMPTSP licensing, member `GOV/dpmptsp`).
//!
//! G2B: businesses send `sipanse.izin.permohonan`; the adapter registers it in SIPANSE, checks
//! the applicant with Dukcapil over the bus (`siak.penduduk.verify`, G2G), and turns SIPANSE's
//! status log into `sipanse.izin.status` notices addressed to the applicant only. Withdrawal
//! (`sipanse.izin.penarikan`) and correction (`sipanse.izin.perbaikan`) are queries, so the
//! business gets its answer, or a clear refusal once the application is decided, at once.

pub mod api;
pub mod mapping;
pub mod native;
pub mod simulator;

pub use mapping::{notice, to_native};
pub use native::{NativePermohonan, NativeStatus, SipanseNativeError, SipanseSystem, StatusChange};

use std::sync::Arc;

use bus::formats::mask_id;
use serde_json::{Value, json};

use crate::agency::{AdapterError, Agency};
use crate::link::{Leased, Link};
use crate::runner::{ChangeLog, InboxHandler};

pub struct SipanseAdapter {
    native: Arc<dyn SipanseSystem>,
    pub link: Link,
}

impl Agency for SipanseAdapter {
    const NAME: &'static str = "SIPANSE";
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
        let no = self.native.daftar(&native).await?;
        let current = self
            .native
            .cari(&no)
            .await?
            .ok_or(SipanseNativeError::NotFound)?;
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
            .catat_verifikasi(no, reasons.is_empty(), &reasons.join("; "))
            .await?;
        Ok(())
    }

    /// Withdrawal or correction, allowed until the application is decided.
    async fn amend(&self, m: &Leased) -> Result<Value, AdapterError> {
        let id = m.data["permohonan_id"].as_str().unwrap_or_default();
        let referensi = format!("{}|{}", m.source, id);
        // Only the applicant's own reference matches, so another business learns nothing.
        let Some(p) = self.native.cari_referensi(&referensi).await? else {
            return Ok(json!({ "hasil": "ditolak", "alasan": "permohonan tidak ditemukan" }));
        };
        let result = if m.type_ == "sipanse.izin.penarikan" {
            self.native
                .tarik(
                    &p.no_registrasi,
                    m.data["alasan"].as_str().unwrap_or_default(),
                )
                .await
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
            self.native.ubah(&p.no_registrasi, &changed).await
        };
        let now = self
            .native
            .cari(&p.no_registrasi)
            .await?
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
}

impl InboxHandler for SipanseAdapter {
    fn link(&self) -> &Link {
        &self.link
    }

    async fn handle(&self, m: Leased) -> Result<(), AdapterError> {
        match m.type_.as_str() {
            "sipanse.izin.permohonan" => self.application(m).await,
            "sipanse.izin.penarikan" | "sipanse.izin.perbaikan" => {
                let answer = self.amend(&m).await?;
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

    /// Decisions in SIPANSE's status log go out to each applicant after each poll.
    async fn after_poll(&self) -> Result<(), AdapterError> {
        crate::runner::publish(self).await.map(drop)
    }
}

/// SIPANSE's status log → a notice to each applicant.
impl ChangeLog for SipanseAdapter {
    type Entry = StatusChange;
    const CURSOR: &'static str = CURSOR;

    async fn entries(&self, after: i64, max: usize) -> Result<Vec<StatusChange>, AdapterError> {
        Ok(self.native.log_status(after, max).await?)
    }

    fn seq(entry: &StatusChange) -> i64 {
        entry.seq
    }

    fn named(entry: &StatusChange) -> (String, String) {
        (
            format!("sipanse.status/{}", entry.seq),
            entry.status.clone(),
        )
    }

    async fn map(&self, entry: &StatusChange) -> Result<Option<Value>, AdapterError> {
        Ok(notice(&self.link.ids, Self::MEMBER, entry)?)
    }
}
