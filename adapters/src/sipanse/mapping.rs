//! Mapping between canonical applications and notices and SIPANSE's rows and status log.

use serde_json::{Value, json};
use uuid::Uuid;

use super::native::{NativePermohonan, NativeStatus, StatusChange};
use crate::agency::{MappingError, envelope};
use crate::idkey::IdKey;

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
/// The notice's id is derived from the log sequence under the adapter's id key `ids`.
pub fn notice(ids: &IdKey, member: &str, c: &StatusChange) -> Result<Option<Value>, MappingError> {
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
    let eid = ids.derive(&[member, "status", &c.seq.to_string()]);
    Ok(Some(envelope(eid, "sipanse.izin.status", data, Some(to))))
}
