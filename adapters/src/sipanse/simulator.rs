//! `SipanseSimulator`: a stand-in for SIPANSE, DPMPTSP's licensing system.
//!
//! It plays the agency system with an embedded SQLite database: applications in SIPANSE's own
//! row shape ([`NativePermohonan`]: lower-case columns, KBLI codes as one comma-separated
//! string, native status codes BARU / VERIFIKASI / TOLAK / SETUJU / TERBIT / DITARIK) and a
//! status log. The licensing officer's decisions are plain methods. A withdrawal or correction
//! after the decision is refused here, the way the agency's own rules would refuse it.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use super::native::{
    NativePermohonan, NativeStatus, SipanseNativeError, SipanseSystem, StatusChange,
};

pub struct SipanseSimulator {
    db: Mutex<Connection>,
}

const COLUMNS: &str = "no_registrasi, referensi, nib, npwp, nik_pemohon, nama_pemohon, \
                       jenis_izin, kbli, kode_lokasi, lampiran, status, no_izin";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NativePermohonan> {
    Ok(NativePermohonan {
        no_registrasi: r.get(0)?,
        referensi: r.get(1)?,
        nib: r.get(2)?,
        npwp: r.get(3)?,
        nik_pemohon: r.get(4)?,
        nama_pemohon: r.get(5)?,
        jenis_izin: r.get(6)?,
        kbli: r.get(7)?,
        kode_lokasi: r.get(8)?,
        lampiran: r.get(9)?,
        status: r.get(10)?,
        no_izin: r.get(11)?,
    })
}

impl SipanseSimulator {
    pub fn open(path: &Path) -> Result<SipanseSimulator, SipanseNativeError> {
        let c = Connection::open(path)?;
        c.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS permohonan (
                 no_registrasi TEXT PRIMARY KEY, referensi TEXT NOT NULL UNIQUE,
                 nib TEXT NOT NULL, npwp TEXT NOT NULL, nik_pemohon TEXT NOT NULL,
                 nama_pemohon TEXT NOT NULL, jenis_izin TEXT NOT NULL, kbli TEXT NOT NULL,
                 kode_lokasi TEXT NOT NULL, lampiran TEXT NOT NULL, status TEXT NOT NULL,
                 no_izin TEXT);
             CREATE TABLE IF NOT EXISTS log_status (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT, no_registrasi TEXT NOT NULL,
                 status TEXT NOT NULL, catatan TEXT NOT NULL DEFAULT '');",
        )?;
        Ok(SipanseSimulator { db: Mutex::new(c) })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_status(
        &self,
        no: &str,
        status: NativeStatus,
        catatan: &str,
    ) -> Result<(), SipanseNativeError> {
        let mut c = self.db();
        let tx = c.transaction()?;
        let n = tx.execute(
            "UPDATE permohonan SET status = ?2 WHERE no_registrasi = ?1",
            params![no, status.code()],
        )?;
        if n == 0 {
            return Err(SipanseNativeError::NotFound);
        }
        tx.execute(
            "INSERT INTO log_status (no_registrasi, status, catatan) VALUES (?1, ?2, ?3)",
            params![no, status.code(), catatan],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn expect_status(
        &self,
        no: &str,
        allowed: &[NativeStatus],
    ) -> Result<NativePermohonan, SipanseNativeError> {
        let p = self.cari(no)?.ok_or(SipanseNativeError::NotFound)?;
        let s = NativeStatus::from_code(&p.status)?;
        if allowed.contains(&s) {
            Ok(p)
        } else {
            Err(SipanseNativeError::WrongState(s))
        }
    }

    /// The officer approves (SETUJU) or rejects (TOLAK) a verified application.
    pub fn putuskan(
        &self,
        no: &str,
        setuju: bool,
        catatan: &str,
    ) -> Result<(), SipanseNativeError> {
        self.expect_status(no, &[NativeStatus::Verifikasi])?;
        let s = if setuju {
            NativeStatus::Setuju
        } else {
            NativeStatus::Tolak
        };
        self.set_status(no, s, catatan)
    }

    /// The officer issues the permit and SIPANSE numbers it.
    pub fn terbitkan(&self, no: &str) -> Result<String, SipanseNativeError> {
        let p = self.expect_status(no, &[NativeStatus::Setuju])?;
        let year = time::OffsetDateTime::now_utc().year();
        let no_izin = format!("503/{}/DPMPTSP/{year}", p.no_registrasi);
        self.db().execute(
            "UPDATE permohonan SET no_izin = ?2 WHERE no_registrasi = ?1",
            params![no, no_izin],
        )?;
        self.set_status(no, NativeStatus::Terbit, "")?;
        Ok(no_izin)
    }
}

/// SIPANSE's native calls, answered from the database: what [`SipanseSystem`] and the API
/// ([`super::api`]) both serve.
impl SipanseSimulator {
    pub fn daftar(&self, p: &NativePermohonan) -> Result<String, SipanseNativeError> {
        if let Some(existing) = self.cari_referensi(&p.referensi)? {
            return Ok(existing.no_registrasi);
        }
        let no = {
            let c = self.db();
            let n: i64 = c.query_row("SELECT COUNT(*) FROM permohonan", [], |r| r.get(0))?;
            let no = format!("REG-{:05}", n + 1);
            c.execute(
                &format!("INSERT INTO permohonan ({COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,NULL)"),
                params![no, p.referensi, p.nib, p.npwp, p.nik_pemohon, p.nama_pemohon,
                        p.jenis_izin, p.kbli, p.kode_lokasi, p.lampiran, NativeStatus::Baru.code()],
            )?;
            c.execute(
                "INSERT INTO log_status (no_registrasi, status) VALUES (?1, 'BARU')",
                [&no],
            )?;
            no
        };
        Ok(no)
    }

    pub fn cari(&self, no: &str) -> Result<Option<NativePermohonan>, SipanseNativeError> {
        Ok(self
            .db()
            .query_row(
                &format!("SELECT {COLUMNS} FROM permohonan WHERE no_registrasi = ?1"),
                [no],
                row,
            )
            .optional()?)
    }

    pub fn cari_referensi(
        &self,
        referensi: &str,
    ) -> Result<Option<NativePermohonan>, SipanseNativeError> {
        Ok(self
            .db()
            .query_row(
                &format!("SELECT {COLUMNS} FROM permohonan WHERE referensi = ?1"),
                [referensi],
                row,
            )
            .optional()?)
    }

    pub fn catat_verifikasi(
        &self,
        no: &str,
        lolos: bool,
        catatan: &str,
    ) -> Result<(), SipanseNativeError> {
        self.expect_status(no, &[NativeStatus::Baru])?;
        let s = if lolos {
            NativeStatus::Verifikasi
        } else {
            NativeStatus::Tolak
        };
        self.set_status(no, s, catatan)
    }

    pub fn tarik(&self, no: &str, alasan: &str) -> Result<(), SipanseNativeError> {
        self.expect_status(no, &[NativeStatus::Baru, NativeStatus::Verifikasi])?;
        self.set_status(no, NativeStatus::Ditarik, alasan)
    }

    pub fn ubah(&self, no: &str, p: &NativePermohonan) -> Result<(), SipanseNativeError> {
        self.expect_status(no, &[NativeStatus::Baru, NativeStatus::Verifikasi])?;
        self.db().execute(
            "UPDATE permohonan SET jenis_izin = ?2, kbli = ?3, kode_lokasi = ?4, lampiran = ?5
             WHERE no_registrasi = ?1",
            params![no, p.jenis_izin, p.kbli, p.kode_lokasi, p.lampiran],
        )?;
        Ok(())
    }

    pub fn log_status(
        &self,
        after: i64,
        max: usize,
    ) -> Result<Vec<StatusChange>, SipanseNativeError> {
        let c = self.db();
        let mut stmt = c.prepare(
            "SELECT l.seq, l.no_registrasi, l.status, l.catatan, p.referensi, p.no_izin
             FROM log_status l JOIN permohonan p USING (no_registrasi)
             WHERE l.seq > ?1 ORDER BY l.seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, max as i64], |r| {
            Ok(StatusChange {
                seq: r.get(0)?,
                no_registrasi: r.get(1)?,
                status: r.get(2)?,
                catatan: r.get(3)?,
                referensi: r.get(4)?,
                no_izin: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// In-process, with no network between: for the demo and fast tests.
#[async_trait::async_trait]
impl SipanseSystem for SipanseSimulator {
    async fn daftar(&self, p: &NativePermohonan) -> Result<String, SipanseNativeError> {
        SipanseSimulator::daftar(self, p)
    }

    async fn cari(&self, no: &str) -> Result<Option<NativePermohonan>, SipanseNativeError> {
        SipanseSimulator::cari(self, no)
    }

    async fn cari_referensi(
        &self,
        referensi: &str,
    ) -> Result<Option<NativePermohonan>, SipanseNativeError> {
        SipanseSimulator::cari_referensi(self, referensi)
    }

    async fn catat_verifikasi(
        &self,
        no: &str,
        lolos: bool,
        catatan: &str,
    ) -> Result<(), SipanseNativeError> {
        SipanseSimulator::catat_verifikasi(self, no, lolos, catatan)
    }

    async fn tarik(&self, no: &str, alasan: &str) -> Result<(), SipanseNativeError> {
        SipanseSimulator::tarik(self, no, alasan)
    }

    async fn ubah(&self, no: &str, p: &NativePermohonan) -> Result<(), SipanseNativeError> {
        SipanseSimulator::ubah(self, no, p)
    }

    async fn log_status(
        &self,
        after: i64,
        max: usize,
    ) -> Result<Vec<StatusChange>, SipanseNativeError> {
        SipanseSimulator::log_status(self, after, max)
    }
}
