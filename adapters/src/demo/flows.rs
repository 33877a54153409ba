//! The four flows of the demo, each a short script over the running adapters.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bus::client::Client;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{BIZ, DemoError, LIMIT, Summary, sim, until};
use crate::agency::{AdapterError, Agency, envelope};
use crate::eabsen::EabsenAdapter;
use crate::eabsen::simulator::EabsenSimulator;
use crate::hr::HrReader;
use crate::link::{Link, expect};
use crate::portal::Portal;
use crate::siak::simulator::{SiakSimulator, seed};
use crate::sipanse::SipanseAdapter;
use crate::sipanse::simulator::SipanseSimulator;
use crate::trace::Trace;

pub(super) async fn g2g(
    s: &mut Summary,
    siak_sim: &SiakSimulator,
    hr: &HrReader,
    dpmptsp: &Link,
    trace: &Trace,
) -> Result<(), DemoError> {
    trace.note("\n== G2G: agencies ask Dukcapil, and are told about deaths ==");
    let a = hr
        .link
        .ask(
            "siak.penduduk.verify",
            json!({ "nik": seed::AHMAD, "nama": "Ahmad Hidayat", "tanggal_lahir": "1978-03-12" }),
        )
        .await?;
    s.verify_status = a["status"].as_str().unwrap_or_default().to_owned();
    trace.hop(
        HrReader::MEMBER,
        "GOV/dukcapil",
        "siak.penduduk.verify",
        &format!("answer {a}"),
    );
    let a = dpmptsp
        .ask(
            "siak.penduduk.verify",
            json!({ "nik": seed::DEWI_2, "nama": "DEWI LESTARI" }),
        )
        .await?;
    s.duplicate_status = a["status"].as_str().unwrap_or_default().to_owned();
    trace.hop(
        SipanseAdapter::MEMBER,
        "GOV/dukcapil",
        "siak.penduduk.verify",
        &format!(
            "answer status {} (same person under two NIKs)",
            s.duplicate_status
        ),
    );
    let a = dpmptsp
        .ask("siak.penduduk.get", json!({ "nik": seed::SITI }))
        .await?;
    s.get_fields_for_dpmptsp = a
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    trace.hop(
        SipanseAdapter::MEMBER,
        "GOV/dukcapil",
        "siak.penduduk.get",
        &format!("record cut to grant: fields {:?}", s.get_fields_for_dpmptsp),
    );

    siak_sim
        .catat_kematian(
            seed::AHMAD,
            "20-11-2026",
            "RSUD KOTA BANDUNG",
            "3204-KM-20112026-0007",
        )
        .map_err(sim)?;
    trace.note("  SIAK clerk records a death (native change log: MATI)");
    let deaths = until("HR receiving the death", LIMIT, || async move {
        let got = hr.take_inbox(Duration::from_secs(1)).await?;
        let n = got
            .iter()
            .filter(|(t, _)| t == "siak.penduduk.meninggal")
            .count();
        Ok((n > 0).then_some(n))
    })
    .await?;
    s.hr_deaths = deaths;
    trace.hop(
        "GOV/dukcapil",
        HrReader::MEMBER,
        "siak.penduduk.meninggal",
        "received and acked by HR",
    );
    Ok(())
}

pub(super) async fn g2b(
    s: &mut Summary,
    sipanse_sim: &SipanseSimulator,
    biz: &Client,
    trace: &Trace,
) -> Result<(), DemoError> {
    trace.note("\n== G2B: a business applies for a permit and follows it ==");
    let id = Uuid::now_v7();
    let ev = envelope(
        id,
        "sipanse.izin.permohonan",
        json!({
            "nib": "8120000123456", "npwp": "013121660091000",
            "pemohon": { "nik": seed::BUDI, "nama": "Budi Santoso" },
            "jenis_izin": "Izin Usaha Mikro Kecil", "kbli": ["47111"], "kbli_versi": "2020",
            "lokasi": "3273011001",
            "lampiran": [{ "nama": "denah.pdf", "uri": "https://berkas.contoh.id/denah.pdf",
                           "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }]
        }),
        None,
    );
    let a = biz.send(&ev).await.map_err(AdapterError::from)?;
    expect(&a, 202)?;
    trace.hop(
        BIZ,
        SipanseAdapter::MEMBER,
        "sipanse.izin.permohonan",
        "202 accepted",
    );
    let mut statuses: Vec<String> = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while !statuses
        .iter()
        .any(|s| s == "diverifikasi" || s == "ditolak")
    {
        for d in notices(biz, deadline, "the verification notice").await? {
            let st = d["status"].as_str().unwrap_or_default().to_owned();
            trace.hop(SipanseAdapter::MEMBER, BIZ, "sipanse.izin.status", &st);
            statuses.push(st);
        }
    }
    let p = sipanse_sim
        .cari_referensi(&format!("{BIZ}|{id}"))
        .map_err(sim)?
        .ok_or_else(|| sim("application not in SIPANSE"))?;
    sipanse_sim
        .putuskan(&p.no_registrasi, true, "memenuhi syarat")
        .map_err(sim)?;
    let no = sipanse_sim.terbitkan(&p.no_registrasi).map_err(sim)?;
    trace.note(&format!(
        "  SIPANSE officer approves {} and issues permit {no}",
        p.no_registrasi
    ));
    let deadline = Instant::now() + LIMIT;
    while !statuses.iter().any(|s| s == "terbit") {
        for d in notices(biz, deadline, "the issue notice").await? {
            let st = d["status"].as_str().unwrap_or_default().to_owned();
            if let Some(n) = d["nomor_izin"].as_str() {
                s.permit_number = Some(n.to_owned());
            }
            trace.hop(
                SipanseAdapter::MEMBER,
                BIZ,
                "sipanse.izin.status",
                &format!("{st} {}", d["nomor_izin"].as_str().unwrap_or_default()),
            );
            statuses.push(st);
        }
    }
    s.permit_statuses = statuses;
    let w = envelope(
        Uuid::now_v7(),
        "sipanse.izin.penarikan",
        json!({ "permohonan_id": id.to_string(), "alasan": "salah lokasi" }),
        None,
    );
    let a = biz.send(&w).await.map_err(AdapterError::from)?;
    expect(&a, 200)?;
    s.late_withdrawal = a.body["data"].clone();
    trace.hop(
        BIZ,
        SipanseAdapter::MEMBER,
        "sipanse.izin.penarikan",
        &format!("answer {}", s.late_withdrawal),
    );
    Ok(())
}

/// A request for each of SLAWE's nine services, with the fields each takes.
pub fn slawe_requests() -> [(&'static str, Value); 9] {
    [
        (
            "ktp",
            json!({ "alasan": "rusak", "keterangan": "KTP rusak, cetak ulang" }),
        ),
        ("kia", json!({ "nik_anak": "3204051502200001" })),
        ("sinkronisasi_data", json!({ "instansi": "BPJS Kesehatan" })),
        ("suket_perekaman", json!({})),
        (
            "akta_kelahiran",
            json!({ "nama_anak": "PUTRI AMINAH", "tanggal_lahir": "2020-02-15" }),
        ),
        (
            "akta_kematian",
            json!({ "nik_almarhum": seed::AHMAD, "tanggal_meninggal": "2026-11-20" }),
        ),
        ("kk", json!({ "alasan": "perubahan_data" })),
        (
            "surat_pindah",
            json!({ "kode_wilayah_tujuan": "3273", "alamat_tujuan": "JL. DAGO NO. 1, BANDUNG" }),
        ),
        (
            "mobil_dukling",
            json!({ "kode_desa": "3204052001", "lokasi": "Balai Desa", "tanggal": "2026-12-14",
                    "perkiraan_peserta": 40 }),
        ),
    ]
}

/// Takes the portal's notices until `done` holds, recording each request's statuses.
async fn notices_until(
    portal: &Portal,
    seen: &mut BTreeMap<String, Vec<String>>,
    numbers: &mut BTreeMap<String, String>,
    what: &'static str,
    done: impl Fn(&BTreeMap<String, Vec<String>>) -> bool,
) -> Result<(), DemoError> {
    let deadline = Instant::now() + LIMIT;
    while !done(seen) {
        for n in portal.sync(Duration::from_millis(500)).await? {
            let layanan = n["layanan"].as_str().unwrap_or_default().to_owned();
            let status = n["status"].as_str().unwrap_or_default().to_owned();
            if let Some(no) = n["nomor_registrasi"].as_str() {
                numbers.insert(layanan.clone(), no.to_owned());
            }
            seen.entry(layanan).or_default().push(status);
        }
        if Instant::now() >= deadline {
            return Err(DemoError::Timeout(what, LIMIT));
        }
    }
    Ok(())
}

pub(super) async fn g2c(
    s: &mut Summary,
    siak_sim: &SiakSimulator,
    portal: &Portal,
    trace: &Trace,
) -> Result<(), DemoError> {
    trace.note("\n== G2C: the city portal files a citizen's requests for SLAWE's nine services to Dukcapil ==");
    let requests = slawe_requests();
    let mut ids = Vec::new();
    for (layanan, fields) in &requests {
        ids.push(portal.ajukan(seed::SITI, layanan, fields.clone())?);
    }
    let (mut seen, mut numbers) = (BTreeMap::new(), BTreeMap::new());
    let count = requests.len();
    let all = |status: &'static str| {
        move |seen: &BTreeMap<String, Vec<String>>| {
            seen.len() == count && seen.values().all(|v| v.iter().any(|s| s == status))
        }
    };
    notices_until(
        portal,
        &mut seen,
        &mut numbers,
        "the requests to reach SIAK",
        all("diterima"),
    )
    .await?;
    if let Some(no) = numbers.get("mobil_dukling") {
        let (jenis, rincian) = siak_sim.layanan(no).map_err(sim)?;
        trace.note(&format!("  SIAK books the van ({jenis}): {rincian}"));
        s.dukling_booking = rincian;
    }
    for no in numbers.values() {
        siak_sim
            .proses_layanan(no, "SELESAI", "siap diambil")
            .map_err(sim)?;
    }
    trace.note("  SIAK clerks complete each request (native LAYANAN: SELESAI)");
    notices_until(
        portal,
        &mut seen,
        &mut numbers,
        "the completion notices",
        all("selesai"),
    )
    .await?;
    let citizen: Vec<String> = ids
        .iter()
        .zip(&requests)
        .map(|(id, (layanan, _))| {
            Ok(format!(
                "{layanan} {}",
                portal.status(*id)?.unwrap_or_default()
            ))
        })
        .collect::<Result<_, DemoError>>()?;
    trace.note(&format!("  the citizen sees: {}", citizen.join(", ")));
    s.portal_statuses = seen;
    Ok(())
}

pub(super) async fn g2e(
    s: &mut Summary,
    device: &EabsenSimulator,
    eabsen: &EabsenAdapter,
    hr: &HrReader,
    trace: &Trace,
) -> Result<(), DemoError> {
    trace.note("\n== G2E: attendance from a fingerprint device and a phone to HR ==");
    let day = "2026-11-23";
    for (pin, t, st) in [
        ("1", "07:01:02", 0),
        ("2", "07:12:40", 0),
        ("23", "07:30:00", 0),
        ("1", "16:05:10", 1),
    ] {
        device
            .scan(pin, &format!("{day} {t}"), st, 1)
            .map_err(sim)?;
    }
    let export = device.export_attlog().map_err(sim)?;
    let r = eabsen.import_attlog(&export)?;
    s.attendance_first_import = r.queued;
    let again = eabsen.import_attlog(&export)?;
    s.attendance_reimport_new = again.queued;
    let push = device.next_push().map_err(sim)?;
    eabsen.import_push(&device.serial, &push)?;
    eabsen.check_in(&json!({
        "nip": "199009132025242014", "waktu": format!("{day}T07:55:00+07:00"),
        "lat": -6.9175, "lon": 107.6191,
        "foto_sha256": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
    }))?;
    eabsen.link.flush().await?;
    let expected = s.attendance_first_import + 1;
    let mut total = 0;
    let deadline = Instant::now() + LIMIT;
    while total < expected {
        total += hr.read_feed("eabsen.kehadiran.tercatat", 2, 10).await?.new;
        if total < expected {
            if Instant::now() >= deadline {
                return Err(DemoError::Timeout("HR reading the attendance feed", LIMIT));
            }
            eabsen.link.flush().await?;
        }
    }
    s.hr_feed_events = total;
    trace.hop(
        "feed",
        HrReader::MEMBER,
        "eabsen.kehadiran.tercatat",
        &format!("{total} events read by cursor (pages of 2)"),
    );
    let recap = hr
        .link
        .ask(
            "eabsen.rekap.harian",
            json!({ "unit": "DISKOMINFO", "tanggal": day }),
        )
        .await?;
    trace.hop(
        HrReader::MEMBER,
        EabsenAdapter::MEMBER,
        "eabsen.rekap.harian",
        &format!("answer {recap}"),
    );
    s.recap = recap;
    Ok(())
}

/// One pull of the business's inbox (waiting up to a second), acknowledging what it got.
async fn notices(
    biz: &Client,
    deadline: Instant,
    what: &'static str,
) -> Result<Vec<Value>, DemoError> {
    let a = biz
        .pull(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .map_err(AdapterError::from)?;
    expect(&a, 200)?;
    let mut got = Vec::new();
    for m in a.body["messages"].as_array().into_iter().flatten() {
        let ev = &m["event"];
        got.push(ev["data"].clone());
        if let Some(id) = ev["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()) {
            biz.ack(id).await.map_err(AdapterError::from)?;
        }
    }
    if got.is_empty() && Instant::now() >= deadline {
        return Err(DemoError::Timeout(what, LIMIT));
    }
    Ok(got)
}
