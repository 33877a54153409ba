//! SIAK's change log → CloudEvents: lahir, meninggal, pindah, KK change, and service
//! status notices for the portal. Ids derive from the log sequence (under the adapter's id
//! key), so re-reading the log never queues anything twice.

use serde_json::{Value, json};
use uuid::Uuid;

use super::{CURSOR, NativeError, Perubahan, SiakAdapter, mapping};
use crate::agency::{AdapterError, Agency, MappingError, Problems, envelope};
use crate::normal;
use crate::runner::ChangeLog;

impl ChangeLog for SiakAdapter {
    type Entry = Perubahan;
    const CURSOR: &'static str = CURSOR;

    async fn entries(&self, after: i64, max: usize) -> Result<Vec<Perubahan>, AdapterError> {
        Ok(self.native.log_perubahan(after, max).await?)
    }

    fn seq(entry: &Perubahan) -> i64 {
        entry.seq
    }

    fn named(entry: &Perubahan) -> (String, String) {
        (format!("siak.log/{}", entry.seq), entry.jenis.clone())
    }

    async fn map(&self, entry: &Perubahan) -> Result<Option<Value>, AdapterError> {
        self.map_change(entry).await.map(Some)
    }
}

impl SiakAdapter {
    /// One SIAK change-log entry → the CloudEvent it becomes.
    pub async fn map_change(&self, entry: &Perubahan) -> Result<Value, AdapterError> {
        let d = &entry.data;
        let id = self
            .link
            .ids
            .derive(&[Self::MEMBER, "log", &entry.seq.to_string(), &entry.jenis]);
        let nik_of = |d: &Value| -> Result<String, MappingError> {
            let (n, v) = mapping::field(d, &["NIK"])
                .ok_or_else(|| MappingError::one("NIK", "is missing"))?;
            normal::personal_id(n, v, bus::formats::Format::Nik)
        };
        let ev = match entry.jenis.as_str() {
            "LAHIR" => {
                let p = mapping::penduduk(d)?;
                let mut data = json!({
                    "nik": p.nik, "nama": p.nama, "tanggal_lahir": p.tanggal_lahir,
                    "jenis_kelamin": p.jenis_kelamin,
                });
                put(&mut data, "no_kk", p.no_kk);
                put(&mut data, "tempat_lahir", p.tempat_lahir);
                put(&mut data, "kode_wilayah", p.kode_wilayah);
                put(&mut data, "nama_ibu", p.nama_ibu);
                envelope(id, "siak.penduduk.lahir", data, None)
            }
            "MATI" => {
                let nik = nik_of(d)?;
                let (p, _) = self.lookup(&nik).await?.ok_or(NativeError::NotFound)?;
                let mut pr = Problems::default();
                let tgl = pr.take(normal::date("TGL_MATI", &d["TGL_MATI"]));
                let mut data = json!({
                    "nik": p.nik, "nama": p.nama, "tanggal_lahir": p.tanggal_lahir,
                    "jenis_kelamin": p.jenis_kelamin, "tanggal_meninggal": tgl,
                });
                put(&mut data, "no_kk", p.no_kk);
                put(&mut data, "kode_wilayah", p.kode_wilayah);
                put(
                    &mut data,
                    "tempat_meninggal",
                    d["TMPT_MATI"].as_str().map(str::to_owned),
                );
                put(
                    &mut data,
                    "nomor_akta_kematian",
                    d["NO_AKTA_MATI"].as_str().map(str::to_owned),
                );
                pr.finish(|| envelope(id, "siak.penduduk.meninggal", data, None))?
            }
            "PINDAH" => {
                let nik = nik_of(d)?;
                let (p, _) = self.lookup(&nik).await?.ok_or(NativeError::NotFound)?;
                let mut pr = Problems::default();
                let asal = mapping::kode_wilayah(&d["ASAL"], &mut pr);
                let tujuan = mapping::kode_wilayah(&d["TUJUAN"], &mut pr);
                let tgl = pr.take(normal::date("TGL_PINDAH", &d["TGL_PINDAH"]));
                let mut data = json!({
                    "nik": p.nik, "nama": p.nama, "tanggal_pindah": tgl,
                    "kode_wilayah_asal": asal, "kode_wilayah_tujuan": tujuan,
                });
                put(&mut data, "no_kk", p.no_kk);
                put(
                    &mut data,
                    "alamat_tujuan",
                    d["TUJUAN"]["ALAMAT"].as_str().map(str::to_owned),
                );
                pr.finish(|| envelope(id, "siak.penduduk.pindah", data, None))?
            }
            "UBAH_KK" => {
                let nik = nik_of(d)?;
                let mut pr = Problems::default();
                let lama = pr.take(normal::personal_id(
                    "NKK_LAMA",
                    &d["NKK_LAMA"],
                    bus::formats::Format::NoKk,
                ));
                let baru = pr.take(normal::personal_id(
                    "NKK_BARU",
                    &d["NKK_BARU"],
                    bus::formats::Format::NoKk,
                ));
                let tgl = pr.take(normal::date("TGL_UBAH", &d["TGL_UBAH"]));
                let mut data =
                    json!({ "nik": nik, "no_kk_lama": lama, "no_kk_baru": baru, "tanggal": tgl });
                put(
                    &mut data,
                    "alasan",
                    d["ALASAN"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
                pr.finish(|| envelope(id, "siak.kk.berubah", data, None))?
            }
            "LAYANAN" => {
                let referensi = d["REFERENSI"].as_str().unwrap_or_default();
                let (to, permohonan) = referensi
                    .split_once('|')
                    .and_then(|(to, id)| Some((to, Uuid::parse_str(id).ok()?)))
                    .ok_or_else(|| {
                        MappingError::one("REFERENSI", "is not a bus request reference")
                    })?;
                let mut data = json!({
                    "permohonan_id": permohonan.to_string(),
                    "layanan": mapping::layanan_canonical(d["JENIS_LAYANAN"].as_str().unwrap_or_default())?,
                    "status": mapping::layanan_status(d["STATUS"].as_str().unwrap_or_default())?,
                    "nomor_registrasi": d["NO_REG"].as_str().unwrap_or_default(),
                });
                put(
                    &mut data,
                    "catatan",
                    d["CATATAN"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
                envelope(id, "layanan.status", data, Some(to))
            }
            other => {
                return Err(MappingError::one("JENIS", format!("unknown change {other:?}")).into());
            }
        };
        Ok(ev)
    }
}

fn put(data: &mut Value, key: &str, v: Option<String>) {
    if let Some(v) = v {
        data[key] = Value::String(v);
    }
}
