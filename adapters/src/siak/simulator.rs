//! `SiakSimulator`: a stand-in for SIAK/SPCP at Dukcapil, for the demo and the tests.
//!
//! It is not the adapter. It plays the agency system: an embedded SQLite database of
//! residents, a change log, and service requests, seeded with synthetic but valid residents
//! (NIKs with real Kemendagri district codes and real birth dates). Its native interface is a
//! function interface ([`SiakSystem`]) returning the upper-case JSON records SIAK's web
//! service returns, including the field variants real exports carry (`STAT_KWN`, numbers for
//! IDs, day-first dates, zero-width characters), so the adapter's mapping is exercised by the
//! demo itself. The clerk's actions (record a birth, a death, a move) are plain methods.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::{NativeError, Perubahan, SiakSystem};

pub struct SiakSimulator {
    db: Mutex<Connection>,
}

/// Seeded residents' NIKs, for tests and the demo.
pub mod seed {
    /// BUDI SANTOSO, Kota Bandung, male, 22-08-1985; owner of CV Contoh Usaha Mandiri.
    pub const BUDI: &str = "3273012208850001";
    /// SITI AMINAH, Kab. Bandung, female, 05-01-1990 (exported with a zero-width space).
    pub const SITI: &str = "3204054501900003";
    /// AHMAD HIDAYAT, Kab. Bandung, male, 12-03-1978, a civil servant (exported as numbers).
    pub const AHMAD: &str = "3204051203780002";
    /// DEWI LESTARI, female, 26-07-1992, registered twice under two NIKs (Banyuasin's problem).
    pub const DEWI_1: &str = "3273016607920004";
    pub const DEWI_2: &str = "3204056607920005";
}

fn records() -> Vec<Value> {
    vec![
        json!({
            "NIK": seed::BUDI, "NO_KK": "3273012001150003", "NAMA_LGKP": "BUDI SANTOSO",
            "TMPT_LHR": "BANDUNG", "TGL_LHR": "22-08-1985", "JENIS_KLMIN": "LAKI-LAKI",
            "AGAMA": "ISLAM", "STATUS_KAWIN": "KAWIN", "ALAMAT": "JL. MERDEKA NO. 10",
            "NO_RT": 1, "NO_RW": "002", "NO_PROP": 32, "NO_KAB": 73, "NO_KEC": 1, "NO_KEL": 1001,
            "PROP_NAME": "JAWA BARAT", "KAB_NAME": "KOTA BANDUNG", "KEC_NAME": "SUKASARI",
            "KEL_NAME": "SARIJADI", "JENIS_PKRJN": "WIRASWASTA", "PDDK_AKH": "SLTA / SEDERAJAT",
            "GOL_DARAH": "O", "STAT_HBKEL": "KEPALA KELUARGA", "NAMA_LGKP_IBU": "SUMARNI"
        }),
        json!({
            "NIK": "320405\u{200B}4501900003", "NKK": "3204052001100007", "NAMA_LGKP": "SITI AMINAH",
            "TMPT_LHR": "Bandung", "TGL_LHR": "1990-01-05", "JENIS_KLMIN": "Perempuan",
            "AGAMA": "Islam", "STAT_KWN": "Belum Kawin", "ALAMAT": "Gg. Mawar 3",
            "NO_RT": "03", "NO_RW": "05", "NO_PROP": "32", "NO_KAB": "04", "NO_KEC": "05", "NO_KEL": "2001",
            "PROP_NAME": "JAWA BARAT", "KAB_NAME": "KAB. BANDUNG", "KEC_NAME": "CIMENYAN",
            "KEL_NAME": "CIBEUNYING", "JENIS_PKRJN": "Karyawan Swasta",
            "PDDK_AKH": "DIPLOMA IV/ STRATA I", "GOL_DRH": "A", "STAT_HBKEL": "ANAK",
            "NAMA_LGKP_IBU": "ROHAYATI"
        }),
        json!({
            "NIK": 3204051203780002u64, "NO_KK": 3204052001100008u64, "NAMA_LGKP": "AHMAD HIDAYAT",
            "TMPT_LHR": "GARUT", "TGL_LHR": "12-03-1978", "JENIS_KLMIN": "laki-laki",
            "AGAMA": "KRISTEN", "STATUS_KAWIN": "KAWIN TERCATAT", "ALAMAT": "JL CIGADUNG RAYA 7",
            "NO_RT": 4, "NO_RW": 1, "NO_PROP": 32, "NO_KAB": 4, "NO_KEC": 5, "NO_KEL": 2003,
            "PROP_NAME": "JAWA BARAT", "KAB_NAME": "KAB. BANDUNG", "KEC_NAME": "CIMENYAN",
            "KEL_NAME": "MANDALAMEKAR", "JENIS_PKRJN": "PEGAWAI NEGERI SIPIL (PNS)",
            "PDDK_AKH": "STRATA II", "GOL_DARAH": "AB", "STAT_HBKEL": "KEPALA KELUARGA",
            "NAMA_LGKP_IBU": "ENENG"
        }),
        json!({
            "NIK": seed::DEWI_1, "NO_KK": "3273012001150004", "NAMA_LGKP": "DEWI LESTARI",
            "TMPT_LHR": "SUMEDANG", "TGL_LHR": "26-07-1992", "JENIS_KLMIN": "PEREMPUAN",
            "AGAMA": "ISLAM", "STATUS_KAWIN": "BELUM KAWIN", "ALAMAT": "JL. DAGO 12",
            "NO_RT": "001", "NO_RW": "001", "NO_PROP": "32", "NO_KAB": "73", "NO_KEC": "01", "NO_KEL": "1002",
            "PDDK_AKH": "AKADEMI/ DIPLOMA III/S. MUDA", "STAT_HBKEL": "KEPALA KELUARGA",
            "NAMA_LGKP_IBU": "SRI WAHYUNI"
        }),
        json!({
            "NIK": seed::DEWI_2, "NKK": "3204052001100009", "NAMA_LGKP": "Dewi  Lestari",
            "TMPT_LHR": "SUMEDANG", "TGL_LHR": "1992-07-26", "JENIS_KLMIN": "Perempuan",
            "AGAMA": "Islam", "STAT_KWN": "BELUM KAWIN", "ALAMAT": "GG. KENANGA 1",
            "NO_PROP": 32, "NO_KAB": 4, "NO_KEC": 5, "NO_KEL": 2002,
            "NAMA_LGKP_IBU": "Sri Wahyuni"
        }),
    ]
}

/// The simulator's own view of a record's key columns. Its table has proper columns, like
/// SIAK's database; the variants only appear in what its web service exports.
fn key_columns(rec: &Value) -> (String, String) {
    let nik = match &rec["NIK"] {
        Value::Number(n) => format!("{:0>16}", n),
        Value::String(s) => s.chars().filter(char::is_ascii_digit).collect(),
        _ => String::new(),
    };
    let nama = rec["NAMA_LGKP"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase();
    (nik, nama)
}

fn today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:02}-{:02}-{:04}", d.day(), d.month() as u8, d.year())
}

impl SiakSimulator {
    pub fn open(path: &Path) -> Result<SiakSimulator, NativeError> {
        let c = Connection::open(path)?;
        c.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS penduduk (
                 nik TEXT PRIMARY KEY, nama TEXT NOT NULL, record TEXT NOT NULL,
                 status TEXT NOT NULL DEFAULT 'HIDUP');
             CREATE INDEX IF NOT EXISTS penduduk_nama ON penduduk (nama);
             CREATE TABLE IF NOT EXISTS log (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT, jenis TEXT NOT NULL, data TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS layanan (
                 no_reg INTEGER PRIMARY KEY AUTOINCREMENT, nik TEXT NOT NULL, jenis TEXT NOT NULL,
                 referensi TEXT NOT NULL UNIQUE, status TEXT NOT NULL,
                 rincian TEXT NOT NULL DEFAULT '{}');",
        )?;
        // A database from before requests carried their details.
        let has_rincian: bool = c
            .prepare("SELECT 1 FROM pragma_table_info('layanan') WHERE name = 'rincian'")?
            .exists([])?;
        if !has_rincian {
            c.execute_batch("ALTER TABLE layanan ADD COLUMN rincian TEXT NOT NULL DEFAULT '{}'")?;
        }
        Ok(SiakSimulator { db: Mutex::new(c) })
    }

    /// Opens and, if empty, seeds the synthetic residents.
    pub fn open_seeded(path: &Path) -> Result<SiakSimulator, NativeError> {
        let s = SiakSimulator::open(path)?;
        let n: i64 = s
            .db()
            .query_row("SELECT COUNT(*) FROM penduduk", [], |r| r.get(0))?;
        if n == 0 {
            for r in records() {
                s.insert(&r)?;
            }
        }
        Ok(s)
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a record exactly as given (any export variant), replacing one with the same NIK.
    pub fn insert(&self, rec: &Value) -> Result<(), NativeError> {
        let (nik, nama) = key_columns(rec);
        self.db().execute(
            "INSERT INTO penduduk (nik, nama, record) VALUES (?1, ?2, ?3)
             ON CONFLICT (nik) DO UPDATE SET nama = excluded.nama, record = excluded.record",
            params![nik, nama, rec.to_string()],
        )?;
        Ok(())
    }

    fn log(&self, jenis: &str, data: Value) -> Result<i64, NativeError> {
        let c = self.db();
        c.execute(
            "INSERT INTO log (jenis, data) VALUES (?1, ?2)",
            params![jenis, data.to_string()],
        )?;
        Ok(c.last_insert_rowid())
    }

    /// The clerk records a birth: a new resident and a LAHIR entry in the change log.
    pub fn catat_kelahiran(&self, rec: &Value) -> Result<i64, NativeError> {
        self.insert(rec)?;
        self.log("LAHIR", rec.clone())
    }

    /// The clerk records a death (date as SIAK writes it, DD-MM-YYYY).
    pub fn catat_kematian(
        &self,
        nik: &str,
        tgl_mati: &str,
        tempat: &str,
        no_akta: &str,
    ) -> Result<i64, NativeError> {
        let n = self
            .db()
            .execute("UPDATE penduduk SET status = 'MATI' WHERE nik = ?1", [nik])?;
        if n == 0 {
            return Err(NativeError::NotFound);
        }
        self.log(
            "MATI",
            json!({ "NIK": nik, "TGL_MATI": tgl_mati, "TMPT_MATI": tempat, "NO_AKTA_MATI": no_akta }),
        )
    }

    /// The clerk records a move: the record takes the new address and region.
    pub fn catat_pindah(&self, nik: &str, tujuan: &Value) -> Result<i64, NativeError> {
        let mut rec = self.cari_nik(nik)?.ok_or(NativeError::NotFound)?;
        let asal: Value = ["NO_PROP", "NO_KAB", "NO_KEC", "NO_KEL", "ALAMAT"]
            .iter()
            .map(|k| (k.to_string(), rec[*k].clone()))
            .collect::<serde_json::Map<_, _>>()
            .into();
        for (k, v) in tujuan.as_object().into_iter().flatten() {
            rec[k] = v.clone();
        }
        self.insert(&rec)?;
        self.log(
            "PINDAH",
            json!({ "NIK": nik, "TGL_PINDAH": today(), "ASAL": asal, "TUJUAN": tujuan }),
        )
    }

    /// The clerk moves a resident to another family card.
    pub fn ubah_kk(&self, nik: &str, nkk_baru: &str, alasan: &str) -> Result<i64, NativeError> {
        let mut rec = self.cari_nik(nik)?.ok_or(NativeError::NotFound)?;
        let lama = rec
            .get("NO_KK")
            .or_else(|| rec.get("NKK"))
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(o) = rec.as_object_mut() {
            o.remove("NKK");
            o.insert("NO_KK".into(), json!(nkk_baru));
        }
        self.insert(&rec)?;
        self.log(
            "UBAH_KK",
            json!({ "NIK": nik, "NKK_LAMA": lama, "NKK_BARU": nkk_baru, "TGL_UBAH": today(), "ALASAN": alasan }),
        )
    }

    /// A registered service request as the clerk sees it: its service code and details.
    pub fn layanan(&self, no_reg: &str) -> Result<(String, Value), NativeError> {
        let (jenis, rincian): (String, String) = self
            .db()
            .query_row(
                "SELECT jenis, rincian FROM layanan WHERE no_reg = ?1",
                [no_reg],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or(NativeError::NotFound)?;
        Ok((jenis, serde_json::from_str(&rincian).unwrap_or_default()))
    }

    /// Every service request, as the clerk's list shows them (oldest first).
    pub fn daftar_layanan(&self) -> Result<Vec<Value>, NativeError> {
        let c = self.db();
        let mut stmt = c.prepare(
            "SELECT no_reg, nik, jenis, referensi, status, rincian FROM layanan ORDER BY no_reg",
        )?;
        let rows = stmt.query_map([], |r| {
            let rincian: String = r.get(5)?;
            Ok(json!({
                "NO_REG": r.get::<_, i64>(0)?.to_string(), "NIK": r.get::<_, String>(1)?,
                "JENIS_LAYANAN": r.get::<_, String>(2)?, "REFERENSI": r.get::<_, String>(3)?,
                "STATUS": r.get::<_, String>(4)?,
                "RINCIAN": serde_json::from_str::<Value>(&rincian).unwrap_or_default(),
            }))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The clerk moves a service request on (DIPROSES, SELESAI or DITOLAK).
    pub fn proses_layanan(
        &self,
        no_reg: &str,
        status: &str,
        catatan: &str,
    ) -> Result<i64, NativeError> {
        let row: Option<(String, String, String)> = self
            .db()
            .query_row(
                "SELECT nik, jenis, referensi FROM layanan WHERE no_reg = ?1",
                [no_reg],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (nik, jenis, referensi) = row.ok_or(NativeError::NotFound)?;
        self.db().execute(
            "UPDATE layanan SET status = ?2 WHERE no_reg = ?1",
            params![no_reg, status],
        )?;
        self.log(
            "LAYANAN",
            json!({ "NO_REG": no_reg, "NIK": nik, "JENIS_LAYANAN": jenis, "REFERENSI": referensi,
                    "STATUS": status, "CATATAN": catatan }),
        )
    }
}

/// SIAK's native calls, answered from the database: what [`SiakSystem`] and the web service
/// ([`super::webservice`]) both serve.
impl SiakSimulator {
    pub fn cari_nik(&self, nik: &str) -> Result<Option<Value>, NativeError> {
        let row: Option<(String, String)> = self
            .db()
            .query_row(
                "SELECT record, status FROM penduduk WHERE nik = ?1",
                [nik],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.map(|(rec, status)| {
            let mut v: Value = serde_json::from_str(&rec).unwrap_or(Value::Null);
            if status == "MATI" {
                v["STATUS_HIDUP"] = json!("MATI");
            }
            v
        }))
    }

    pub fn cari_nama(&self, nama: &str) -> Result<Vec<Value>, NativeError> {
        let key = nama
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_uppercase();
        let c = self.db();
        let mut stmt = c.prepare("SELECT record FROM penduduk WHERE nama = ?1 ORDER BY nik")?;
        let rows = stmt.query_map([key], |r| r.get::<_, String>(0))?;
        Ok(rows
            .filter_map(Result::ok)
            .filter_map(|s| serde_json::from_str(&s).ok())
            .collect())
    }

    pub fn log_perubahan(&self, after: i64, max: usize) -> Result<Vec<Perubahan>, NativeError> {
        let c = self.db();
        let mut stmt =
            c.prepare("SELECT seq, jenis, data FROM log WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let rows = stmt.query_map(params![after, max as i64], |r| {
            let data: String = r.get(2)?;
            Ok(Perubahan {
                seq: r.get(0)?,
                jenis: r.get(1)?,
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn terima_layanan(
        &self,
        nik: &str,
        jenis: &str,
        referensi: &str,
        rincian: &Value,
    ) -> Result<String, NativeError> {
        let existing: Option<i64> = self
            .db()
            .query_row(
                "SELECT no_reg FROM layanan WHERE referensi = ?1",
                [referensi],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(no) = existing {
            return Ok(no.to_string());
        }
        let no = {
            let c = self.db();
            c.execute(
                "INSERT INTO layanan (nik, jenis, referensi, status, rincian)
                 VALUES (?1, ?2, ?3, 'DITERIMA', ?4)",
                params![nik, jenis, referensi, rincian.to_string()],
            )?;
            c.last_insert_rowid().to_string()
        };
        self.log(
            "LAYANAN",
            json!({ "NO_REG": no, "NIK": nik, "JENIS_LAYANAN": jenis, "REFERENSI": referensi,
                    "STATUS": "DITERIMA", "CATATAN": "" }),
        )?;
        Ok(no)
    }
}

/// In-process, with no network between: for the demo and fast tests.
#[async_trait::async_trait]
impl SiakSystem for SiakSimulator {
    async fn cari_nik(&self, nik: &str) -> Result<Option<Value>, NativeError> {
        SiakSimulator::cari_nik(self, nik)
    }

    async fn cari_nama(&self, nama: &str) -> Result<Vec<Value>, NativeError> {
        SiakSimulator::cari_nama(self, nama)
    }

    async fn log_perubahan(&self, after: i64, max: usize) -> Result<Vec<Perubahan>, NativeError> {
        SiakSimulator::log_perubahan(self, after, max)
    }

    async fn terima_layanan(
        &self,
        nik: &str,
        jenis: &str,
        referensi: &str,
        rincian: &Value,
    ) -> Result<String, NativeError> {
        SiakSimulator::terima_layanan(self, nik, jenis, referensi, rincian)
    }
}
