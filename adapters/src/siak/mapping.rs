//! Mapping SIAK's native records (Dukcapil web-service JSON, upper-case fields) to the
//! canonical `penduduk` shape, and canonical service names back to SIAK's.
//!
//! Field variants seen in the field are accepted: `STAT_KWN` for `STATUS_KAWIN`, `GOL_DRH` for
//! `GOL_DARAH`, `NKK` for `NO_KK`; IDs and codes sent as JSON numbers; both date orders;
//! vocabularies in any case and spacing; invisible characters in exported IDs. Anything that
//! cannot be mapped is a [`MappingError`] naming every bad native field.

use bus::formats::{Format, region_exists};
use serde::Serialize;
use serde_json::Value;

use crate::agency::{MappingError, Problems};
use crate::normal;

/// A resident in canonical form: the payload of `siak.penduduk.get` and the source of every
/// SIAK event. Field names are the shared schema's, values are canonical (ISO dates, digit
/// strings, lower-case vocabularies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Penduduk {
    pub nik: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_kk: Option<String>,
    pub nama: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tempat_lahir: Option<String>,
    pub tanggal_lahir: String,
    pub jenis_kelamin: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agama: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_kawin: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alamat: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rw: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kode_wilayah: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kelurahan: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kecamatan: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kabupaten: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provinsi: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pekerjaan: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pendidikan: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub golongan_darah: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hubungan_keluarga: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nama_ibu: Option<String>,
}

pub const JENIS_KELAMIN: &[(&str, &str)] = &[
    ("LAKI-LAKI", "L"),
    ("LAKILAKI", "L"),
    ("PRIA", "L"),
    ("L", "L"),
    ("1", "L"),
    ("PEREMPUAN", "P"),
    ("WANITA", "P"),
    ("P", "P"),
    ("2", "P"),
];

pub const AGAMA: &[(&str, &str)] = &[
    ("ISLAM", "islam"),
    ("1", "islam"),
    ("KRISTEN", "kristen"),
    ("2", "kristen"),
    ("KATHOLIK", "katolik"),
    ("KATOLIK", "katolik"),
    ("3", "katolik"),
    ("HINDU", "hindu"),
    ("4", "hindu"),
    ("BUDHA", "buddha"),
    ("BUDDHA", "buddha"),
    ("5", "buddha"),
    ("KONGHUCU", "konghucu"),
    ("KHONGHUCU", "konghucu"),
    ("KONGHUCHU", "konghucu"),
    ("6", "konghucu"),
    ("KEPERCAYAANTERHADAPTUHANYME", "kepercayaan"),
    ("KEPERCAYAAN", "kepercayaan"),
    ("7", "kepercayaan"),
];

pub const STATUS_KAWIN: &[(&str, &str)] = &[
    ("BELUMKAWIN", "belum_kawin"),
    ("1", "belum_kawin"),
    ("KAWIN", "kawin"),
    ("KAWINTERCATAT", "kawin"),
    ("KAWINBELUMTERCATAT", "kawin"),
    ("2", "kawin"),
    ("CERAIHIDUP", "cerai_hidup"),
    ("3", "cerai_hidup"),
    ("CERAIMATI", "cerai_mati"),
    ("4", "cerai_mati"),
];

pub const PENDIDIKAN: &[(&str, &str)] = &[
    ("TIDAK/BELUMSEKOLAH", "tidak_sekolah"),
    ("BELUMTAMATSD/SEDERAJAT", "belum_tamat_sd"),
    ("TAMATSD/SEDERAJAT", "sd"),
    ("SLTP/SEDERAJAT", "sltp"),
    ("SLTA/SEDERAJAT", "slta"),
    ("DIPLOMAI/II", "d1_d2"),
    ("AKADEMI/DIPLOMAIII/S.MUDA", "d3"),
    ("DIPLOMAIV/STRATAI", "s1_d4"),
    ("STRATAII", "s2"),
    ("STRATAIII", "s3"),
];

pub const GOLONGAN_DARAH: &[(&str, &str)] = &[
    ("A", "A"),
    ("B", "B"),
    ("AB", "AB"),
    ("O", "O"),
    ("A+", "A+"),
    ("A-", "A-"),
    ("B+", "B+"),
    ("B-", "B-"),
    ("AB+", "AB+"),
    ("AB-", "AB-"),
    ("O+", "O+"),
    ("O-", "O-"),
    ("TIDAKTAHU", "tidak_tahu"),
    ("-", "tidak_tahu"),
];

pub const HUBUNGAN_KELUARGA: &[(&str, &str)] = &[
    ("KEPALAKELUARGA", "kepala_keluarga"),
    ("SUAMI", "suami"),
    ("ISTRI", "istri"),
    ("ANAK", "anak"),
    ("MENANTU", "menantu"),
    ("CUCU", "cucu"),
    ("ORANGTUA", "orang_tua"),
    ("MERTUA", "mertua"),
    ("FAMILILAIN", "famili_lain"),
    ("PEMBANTU", "pembantu"),
    ("LAINNYA", "lainnya"),
];

/// The first of `names` present in the record (with a non-null value), and which it was, so
/// an error names the field the way this export spelled it.
pub fn field<'a>(rec: &'a Value, names: &[&'static str]) -> Option<(&'static str, &'a Value)> {
    names
        .iter()
        .find_map(|n| rec.get(*n).filter(|v| !v.is_null()).map(|v| (*n, v)))
}

fn required<'a>(
    rec: &'a Value,
    names: &[&'static str],
    p: &mut Problems,
) -> Option<(&'static str, &'a Value)> {
    let f = field(rec, names);
    if f.is_none() {
        p.push(names[0], "is missing");
    }
    f
}

/// The 10-digit village code from the four native region parts, checked against the shipped
/// Kemendagri table. `prefix`/`suffix` select e.g. `NO_PROP_TUJUAN`.
pub fn kode_wilayah(rec: &Value, p: &mut Problems) -> Option<String> {
    let parts = [("NO_PROP", 2), ("NO_KAB", 2), ("NO_KEC", 2), ("NO_KEL", 4)];
    if parts.iter().all(|(n, _)| rec.get(*n).is_none()) {
        return None;
    }
    let mut code = String::new();
    for (name, len) in parts {
        let v = rec.get(name).unwrap_or(&Value::Null);
        code.push_str(&p.take(normal::code(name, v, len))?);
    }
    if !region_exists(&code) {
        p.push(
            "NO_KEL",
            "NO_PROP/NO_KAB/NO_KEC/NO_KEL do not name an existing village",
        );
        return None;
    }
    Some(code)
}

fn opt_text(rec: &Value, names: &[&'static str], p: &mut Problems) -> Option<String> {
    let (n, v) = field(rec, names)?;
    p.take(normal::text(n, v))
}

fn opt_vocab(
    rec: &Value,
    names: &[&'static str],
    table: &[(&str, &'static str)],
    p: &mut Problems,
) -> Option<&'static str> {
    let (n, v) = field(rec, names)?;
    p.take(normal::vocab(n, v, table))
}

/// Native SIAK record → canonical resident. Reports every bad field at once.
pub fn penduduk(rec: &Value) -> Result<Penduduk, MappingError> {
    let mut p = Problems::default();
    if !rec.is_object() {
        return Err(MappingError::one("(record)", "is not a JSON object"));
    }
    let nik = required(rec, &["NIK"], &mut p)
        .and_then(|(n, v)| p.take(normal::personal_id(n, v, Format::Nik)));
    let no_kk = field(rec, &["NO_KK", "NKK"])
        .and_then(|(n, v)| p.take(normal::personal_id(n, v, Format::NoKk)));
    let nama = required(rec, &["NAMA_LGKP"], &mut p).and_then(|(n, v)| p.take(normal::text(n, v)));
    let tanggal_lahir =
        required(rec, &["TGL_LHR"], &mut p).and_then(|(n, v)| p.take(normal::date(n, v)));
    let jenis_kelamin = required(rec, &["JENIS_KLMIN"], &mut p)
        .and_then(|(n, v)| p.take(normal::vocab(n, v, JENIS_KELAMIN)));
    let rt = field(rec, &["NO_RT"]).and_then(|(n, v)| p.take(normal::code(n, v, 3)));
    let rw = field(rec, &["NO_RW"]).and_then(|(n, v)| p.take(normal::code(n, v, 3)));
    let out = Penduduk {
        nik: nik.unwrap_or_default(),
        no_kk,
        nama: nama.unwrap_or_default(),
        tempat_lahir: opt_text(rec, &["TMPT_LHR"], &mut p),
        tanggal_lahir: tanggal_lahir.unwrap_or_default(),
        jenis_kelamin: jenis_kelamin.unwrap_or_default(),
        agama: opt_vocab(rec, &["AGAMA"], AGAMA, &mut p),
        status_kawin: opt_vocab(rec, &["STATUS_KAWIN", "STAT_KWN"], STATUS_KAWIN, &mut p),
        alamat: opt_text(rec, &["ALAMAT"], &mut p),
        rt,
        rw,
        kode_wilayah: kode_wilayah(rec, &mut p),
        kelurahan: opt_text(rec, &["KEL_NAME"], &mut p),
        kecamatan: opt_text(rec, &["KEC_NAME"], &mut p),
        kabupaten: opt_text(rec, &["KAB_NAME"], &mut p),
        provinsi: opt_text(rec, &["PROP_NAME"], &mut p),
        pekerjaan: opt_text(rec, &["JENIS_PKRJN"], &mut p).map(|s| s.to_uppercase()),
        pendidikan: opt_vocab(rec, &["PDDK_AKH"], PENDIDIKAN, &mut p),
        golongan_darah: opt_vocab(rec, &["GOL_DARAH", "GOL_DRH"], GOLONGAN_DARAH, &mut p),
        hubungan_keluarga: opt_vocab(rec, &["STAT_HBKEL"], HUBUNGAN_KELUARGA, &mut p),
        nama_ibu: opt_text(rec, &["NAMA_LGKP_IBU"], &mut p),
    };
    p.finish(|| out)
}

/// Canonical service (`layanan.permohonan`'s `layanan`, SLAWE's nine) ↔ SIAK's service code.
const LAYANAN: [(&str, &str); 9] = [
    ("ktp", "KTP-EL"),
    ("kia", "KIA"),
    ("sinkronisasi_data", "SINKRONISASI DATA"),
    ("suket_perekaman", "SUKET PEREKAMAN"),
    ("akta_kelahiran", "AKTA LAHIR"),
    ("akta_kematian", "AKTA MATI"),
    ("kk", "KK"),
    ("surat_pindah", "SKPWNI"),
    ("mobil_dukling", "MOBIL DUKLING"),
];

/// Canonical service → SIAK's service code.
pub fn layanan_native(layanan: &str) -> Result<&'static str, MappingError> {
    LAYANAN
        .iter()
        .find(|(canonical, _)| *canonical == layanan)
        .map(|(_, native)| *native)
        .ok_or_else(|| MappingError::one("layanan", "unknown service"))
}

/// SIAK's service code → canonical service.
pub fn layanan_canonical(native: &str) -> Result<&'static str, MappingError> {
    let key = normal::vocab_key(native);
    LAYANAN
        .iter()
        .find(|(_, n)| normal::vocab_key(n) == key)
        .map(|(canonical, _)| *canonical)
        .ok_or_else(|| MappingError::one("JENIS_LAYANAN", "unknown service code"))
}

/// A request's own fields (`layanan.permohonan` beyond `nik` and `layanan`) → SIAK's names
/// for them, dates as SIAK writes them (`DD-MM-YYYY`). What SIAK has no field for is left out.
pub fn layanan_rincian(data: &Value) -> Value {
    const FIELDS: [(&str, &str); 14] = [
        ("alasan", "ALASAN"),
        ("keterangan", "KETERANGAN"),
        ("nik_anak", "NIK_ANAK"),
        ("nama_anak", "NAMA_LGKP_ANAK"),
        ("tanggal_lahir", "TGL_LHR"),
        ("nik_almarhum", "NIK_JENAZAH"),
        ("tanggal_meninggal", "TGL_MATI"),
        ("instansi", "INSTANSI"),
        ("kode_wilayah_tujuan", "KODE_WIL_TUJUAN"),
        ("alamat_tujuan", "ALAMAT_TUJUAN"),
        ("kode_desa", "KODE_DESA"),
        ("lokasi", "LOKASI"),
        ("tanggal", "TGL_JADWAL"),
        ("perkiraan_peserta", "JML_PESERTA"),
    ];
    let mut out = serde_json::Map::new();
    for (canonical, native) in FIELDS {
        let Some(v) = data.get(canonical) else {
            continue;
        };
        let v = match v.as_str() {
            // Dates arrive checked (`format: date`); SIAK writes them day first.
            Some(s) if canonical.starts_with("tanggal") => {
                let mut parts: Vec<&str> = s.split('-').collect();
                parts.reverse();
                Value::String(parts.join("-"))
            }
            _ => v.clone(),
        };
        out.insert(native.to_owned(), v);
    }
    Value::Object(out)
}

/// SIAK's service status → canonical (`layanan.status`).
pub fn layanan_status(native: &str) -> Result<&'static str, MappingError> {
    Ok(match normal::vocab_key(native).as_str() {
        "DITERIMA" | "BARU" => "diterima",
        "DIPROSES" | "PROSES" => "diproses",
        "SELESAI" | "TERBIT" => "selesai",
        "DITOLAK" | "TOLAK" => "ditolak",
        _ => return Err(MappingError::one("STATUS", "unknown service status")),
    })
}
