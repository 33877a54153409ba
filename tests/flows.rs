//! The four flows end to end: the real `simpul` binary, real certificates, the adapters and
//! their simulators talking to it over mTLS as ordinary members.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use adapters::Agency;
use adapters::eabsen::simulator::{EabsenSimulator, PEGAWAI};
use adapters::eabsen::{EabsenAdapter, EabsenConfig};
use adapters::hr::HrReader;
use adapters::link::Link;
use adapters::portal::Portal;
use adapters::siak::simulator::{SiakSimulator, seed};
use adapters::siak::{SiakAdapter, SiakConfig, SiakSystem};
use adapters::sipanse::simulator::SipanseSimulator;
use adapters::sipanse::{SipanseAdapter, SipanseSystem};
use adapters::trace::Trace;
use bus::client::Client;
use common::*;
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

fn link(bus: &Bus, dir: &Path, member: &str) -> Link {
    let file = dir.join(format!("{}.db", member.replace('/', "_")));
    Link::open(&bus.base, &bus.certs(), member, &file, Trace::quiet()).unwrap()
}

struct Siak {
    sim: Arc<SiakSimulator>,
    adapter: Arc<SiakAdapter>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start_siak(bus: &Bus, dir: &Path) -> Siak {
    let sim = Arc::new(SiakSimulator::open_seeded(&dir.join("sim-siak.db")).unwrap());
    let adapter = Arc::new(SiakAdapter::new(
        SiakConfig::default(),
        sim.clone() as Arc<dyn SiakSystem>,
        link(bus, dir, SiakAdapter::MEMBER),
    ));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(adapters::runner::run(adapter.clone(), rx));
    Siak {
        sim,
        adapter,
        stop,
        task,
    }
}

impl Siak {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread")]
async fn g2g_verify_get_and_population_events() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let siak = start_siak(&bus, dir.path());
    let hr = HrReader::new(link(&bus, dir.path(), HR)).unwrap();
    let dpm = link(&bus, dir.path(), DPMPTSP);

    // Fuzzy name and address with score and threshold; exact date and gender.
    let a = hr
        .link
        .ask(
            "siak.penduduk.verify",
            json!({ "nik": seed::BUDI, "nama": "Budi Santosa", "tanggal_lahir": "1985-08-22",
                    "jenis_kelamin": "L", "alamat": "Jalan Merdeka No 10" }),
        )
        .await
        .unwrap();
    assert_eq!(
        keys(&a),
        ["hasil", "status"],
        "HR's grant has no diperiksa_pada: {a}"
    );
    assert_eq!(a["status"], "aktif");
    let nama = &a["hasil"]["nama"];
    assert_eq!(nama["hasil"], "sesuai");
    assert!(
        nama["skor"].as_f64().unwrap() < 1.0 && nama["skor"].as_f64() >= nama["ambang"].as_f64()
    );
    for f in ["tanggal_lahir", "jenis_kelamin", "alamat"] {
        assert_eq!(a["hasil"][f]["hasil"], "sesuai", "{f}: {a}");
    }
    let a = hr
        .link
        .ask(
            "siak.penduduk.verify",
            json!({ "nik": seed::BUDI, "nama": "SITI AMINAH", "tanggal_lahir": "1985-08-23" }),
        )
        .await
        .unwrap();
    assert_eq!(a["hasil"]["nama"]["hasil"], "tidak_sesuai");
    assert_eq!(a["hasil"]["tanggal_lahir"]["hasil"], "tidak_sesuai");
    // The record itself never comes back from verify.
    assert!(!a.to_string().contains("SUMARNI") && !a.to_string().contains("MERDEKA"));

    // The same person under two NIKs is "ganda", from either NIK; an unknown NIK is not found.
    for nik in [seed::DEWI_1, seed::DEWI_2] {
        let a = dpm
            .ask(
                "siak.penduduk.verify",
                json!({ "nik": nik, "nama": "DEWI LESTARI" }),
            )
            .await
            .unwrap();
        assert_eq!(a["status"], "ganda", "{a}");
    }
    let a = dpm
        .ask(
            "siak.penduduk.verify",
            json!({ "nik": "3273010101900001", "nama": "X" }),
        )
        .await
        .unwrap();
    assert_eq!(a["status"], "tidak_ditemukan");

    // get: the bus cuts the record to each requester's grant.
    let g = dpm
        .ask("siak.penduduk.get", json!({ "nik": seed::SITI }))
        .await
        .unwrap();
    assert_eq!(g["nama"], "SITI AMINAH");
    assert_eq!(g["kode_wilayah"], "3204052001");
    assert_eq!(g["rt"], "003");
    for hidden in [
        "no_kk",
        "agama",
        "nama_ibu",
        "golongan_darah",
        "pendidikan",
        "status_kawin",
    ] {
        assert!(
            g.get(hidden).is_none(),
            "DPMPTSP must not see {hidden}: {g}"
        );
    }
    let g = hr
        .link
        .ask("siak.penduduk.get", json!({ "nik": seed::SITI }))
        .await
        .unwrap();
    assert_eq!(g["no_kk"], "3204052001100007");
    assert_eq!(g["status_kawin"], "belum_kawin");
    assert!(
        g.get("nama_ibu").is_none() && g.get("golongan_darah").is_none(),
        "{g}"
    );
    // The portal may not ask for records at all.
    let portal = link(&bus, dir.path(), PORTAL);
    let e = portal
        .ask("siak.penduduk.get", json!({ "nik": seed::SITI }))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");

    // SIAK's change log becomes events.
    siak.sim
        .catat_kematian(seed::AHMAD, "20-11-2026", "RSUD", "AKTA-7")
        .unwrap();
    siak.sim
        .catat_kelahiran(&json!({
            "NIK": 3273011510260001u64, "NKK": "3273012001150003", "NAMA_LGKP": "Rafa Santoso",
            "TMPT_LHR": "BANDUNG", "TGL_LHR": "15-10-2026", "JENIS_KLMIN": "Laki-Laki",
            "NO_PROP": 32, "NO_KAB": 73, "NO_KEC": 1, "NO_KEL": 1001, "NAMA_LGKP_IBU": "SITI AMINAH"
        }))
        .unwrap();
    siak.sim
        .catat_pindah(
            seed::DEWI_1,
            &json!({ "ALAMAT": "JL. CIKUTRA 5", "NO_PROP": 32, "NO_KAB": 4, "NO_KEC": 5, "NO_KEL": 2004 }),
        )
        .unwrap();
    siak.sim
        .ubah_kk(seed::SITI, "3273012001150003", "menikah")
        .unwrap();
    let mut got: Vec<(String, Value)> = Vec::new();
    for _ in 0..40 {
        got.extend(hr.take_inbox(Duration::from_millis(500)).await.unwrap());
        if got.len() >= 4 {
            break;
        }
    }
    let types: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        siak.adapter.link.outbox.rejected().unwrap(),
        Vec::<(String, String)>::new()
    );
    assert_eq!(
        types,
        [
            "siak.penduduk.meninggal",
            "siak.penduduk.lahir",
            "siak.penduduk.pindah",
            "siak.kk.berubah"
        ]
    );
    assert_eq!(got[0].1["nik"], seed::AHMAD);
    assert_eq!(got[0].1["tanggal_meninggal"], "2026-11-20");
    assert_eq!(got[1].1["nik"], "3273011510260001");
    assert_eq!(got[1].1["tanggal_lahir"], "2026-10-15");
    assert_eq!(got[2].1["kode_wilayah_asal"], "3273011002");
    assert_eq!(got[2].1["kode_wilayah_tujuan"], "3204052004");
    assert_eq!(got[3].1["no_kk_lama"], "3204052001100007");
    // DPMPTSP subscribes to deaths and moves only, in the same order.
    let d = dpm.pull(10, Duration::from_secs(5)).await.unwrap();
    let dt: Vec<&str> = d.iter().map(|m| m.type_.as_str()).collect();
    assert_eq!(dt, ["siak.penduduk.meninggal", "siak.penduduk.pindah"]);
    // After the death, verify says so.
    let a = hr
        .link
        .ask(
            "siak.penduduk.verify",
            json!({ "nik": seed::AHMAD, "nama": "AHMAD HIDAYAT" }),
        )
        .await
        .unwrap();
    assert_eq!(a["status"], "meninggal");
    siak.stop().await;
}

fn application(nib: &str, nik: &str, nama: &str) -> Value {
    json!({
        "specversion": "1.0", "id": Uuid::now_v7().to_string(), "type": "sipanse.izin.permohonan",
        "data": {
            "nib": nib, "npwp": "013121660091000",
            "pemohon": { "nik": nik, "nama": nama },
            "jenis_izin": "Izin Usaha Mikro Kecil", "kbli": ["47111"], "kbli_versi": "2020",
            "lokasi": "3273011001"
        }
    })
}

/// Pulls `who`'s inbox until `n` notices arrived (bounded), acking each.
async fn notices(who: &Client, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    for _ in 0..30 {
        let a = who
            .pull(10, Duration::from_secs(1), Duration::from_secs(30))
            .await
            .unwrap();
        for m in a.body["messages"].as_array().unwrap() {
            got.push(m["event"]["data"].clone());
            who.ack(Uuid::parse_str(m["event"]["id"].as_str().unwrap()).unwrap())
                .await
                .unwrap();
        }
        if got.len() >= n {
            break;
        }
    }
    got
}

fn statuses(n: &[Value]) -> Vec<&str> {
    n.iter().map(|d| d["status"].as_str().unwrap()).collect()
}

async fn ask(who: &Client, type_: &str, data: Value) -> Value {
    let a = who.send(&event(type_, data)).await.unwrap();
    assert_status(&a, 200);
    a.body["data"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn g2b_application_check_notices_correction_and_withdrawal() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let siak = start_siak(&bus, dir.path());
    let sim = Arc::new(SipanseSimulator::open(&dir.path().join("sim-sipanse.db")).unwrap());
    let sipanse = Arc::new(SipanseAdapter::new(
        sim.clone() as Arc<dyn SipanseSystem>,
        link(&bus, dir.path(), DPMPTSP),
    ));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(adapters::runner::run(sipanse, rx));
    let biz = bus.client(BIZ);
    let biz2 = bus.client(BIZ2);

    let app = application("8120000123456", seed::BUDI, "Budi Santoso");
    let id = id_of(&app);
    assert_status(&biz.send(&app).await.unwrap(), 202);
    let n = notices(&biz, 2).await;
    assert_eq!(statuses(&n), ["diterima", "diverifikasi"]);
    assert!(n.iter().all(|d| d["permohonan_id"] == id.to_string()));
    let no = sim
        .cari_referensi(&format!("{BIZ}|{id}"))
        .unwrap()
        .unwrap()
        .no_registrasi;

    // Correction before the decision is taken into SIPANSE.
    let fix =
        json!({ "permohonan_id": id.to_string(), "perubahan": { "kbli": ["47111", "47112"] } });
    let a = ask(&biz, "sipanse.izin.perbaikan", fix.clone()).await;
    assert_eq!(a, json!({ "hasil": "diterima", "status": "diverifikasi" }));
    assert_eq!(sim.cari(&no).unwrap().unwrap().kbli, "47111,47112");
    // Another business cannot touch it, and learns nothing about it.
    let w = json!({ "permohonan_id": id.to_string() });
    let a = ask(&biz2, "sipanse.izin.penarikan", w.clone()).await;
    assert_eq!(a["hasil"], "ditolak");
    assert!(a.get("status").is_none(), "{a}");
    assert_eq!(sim.cari(&no).unwrap().unwrap().status, "VERIFIKASI");

    // Decision and issue.
    sim.putuskan(&no, true, "lengkap").unwrap();
    let nomor = sim.terbitkan(&no).unwrap();
    let n = notices(&biz, 2).await;
    assert_eq!(statuses(&n), ["disetujui", "terbit"]);
    assert_eq!(n[1]["nomor_izin"], nomor);

    // After the decision, withdrawal and correction get a clear refusal.
    let a = ask(&biz, "sipanse.izin.penarikan", w).await;
    assert_eq!(a["hasil"], "ditolak");
    assert_eq!(a["status"], "terbit");
    assert!(
        a["alasan"].as_str().unwrap().contains("sebelum diputuskan"),
        "{a}"
    );
    assert_eq!(
        ask(&biz, "sipanse.izin.perbaikan", fix).await["hasil"],
        "ditolak"
    );
    assert_eq!(sim.cari(&no).unwrap().unwrap().status, "TERBIT");

    // An undecided application can be withdrawn.
    let app2 = application("8120000123456", seed::SITI, "SITI AMINAH");
    assert_status(&biz.send(&app2).await.unwrap(), 202);
    assert_eq!(
        statuses(&notices(&biz, 2).await),
        ["diterima", "diverifikasi"]
    );
    let a = ask(
        &biz,
        "sipanse.izin.penarikan",
        json!({ "permohonan_id": id_of(&app2).to_string() }),
    )
    .await;
    assert_eq!(a, json!({ "hasil": "diterima", "status": "ditarik" }));

    // The applicant check goes to Dukcapil: a dead applicant's application is refused, with why.
    siak.sim
        .catat_kematian(seed::AHMAD, "20-11-2026", "RSUD", "AKTA-7")
        .unwrap();
    let app3 = application("9120000654321", seed::AHMAD, "AHMAD HIDAYAT");
    assert_status(&biz2.send(&app3).await.unwrap(), 202);
    let n = notices(&biz2, 2).await;
    assert_eq!(statuses(&n), ["diterima", "ditolak"]);
    assert!(
        n[1]["alasan"][0].as_str().unwrap().contains("meninggal"),
        "{}",
        n[1]
    );
    // ...and the first business saw none of the second's notices (nor the reverse).
    let a = pull_now(&biz).await;
    assert!(leased_ids(&a).is_empty(), "{:#}", a.body);
    assert_status(&biz2.status(id).await.unwrap(), 404);

    // A business cannot apply under another business's NIB: the adapter refuses it.
    let forged = application("9120000654321", seed::BUDI, "BUDI SANTOSO");
    assert_status(&biz.send(&forged).await.unwrap(), 202);
    let mut dead = false;
    for _ in 0..30 {
        let s = biz.status(id_of(&forged)).await.unwrap();
        if s.body["status"] == "dead_lettered" {
            assert!(
                s.body["deliveries"][0]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("NIB")
            );
            dead = true;
            break;
        }
        // Paces the loop without sleeping: the business's inbox is empty, so this long-polls.
        let a = biz
            .pull(1, Duration::from_secs(1), Duration::from_secs(30))
            .await
            .unwrap();
        assert!(leased_ids(&a).is_empty(), "{:#}", a.body);
    }
    assert!(dead, "the forged application was not refused");
    stop.send(true).unwrap();
    task.await.unwrap();
    siak.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn g2c_portal_request_and_status_notices() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let siak = start_siak(&bus, dir.path());
    let portal = Portal::new(link(&bus, dir.path(), PORTAL)).unwrap();
    let id = portal
        .ajukan(seed::SITI, "ktp", json!({ "alasan": "rusak" }))
        .unwrap();
    assert_eq!(portal.status(id).unwrap().as_deref(), Some("dikirim"));
    let mut got = Vec::new();
    for _ in 0..40 {
        got.extend(portal.sync(Duration::from_millis(500)).await.unwrap());
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(statuses(&got), ["diterima"]);
    assert_eq!(got[0]["permohonan_id"], id.to_string());
    assert_eq!(got[0]["layanan"], "ktp");
    let no = got[0]["nomor_registrasi"].as_str().unwrap().to_owned();
    siak.sim.proses_layanan(&no, "DIPROSES", "").unwrap();
    siak.sim
        .proses_layanan(&no, "SELESAI", "ambil di kecamatan")
        .unwrap();
    for _ in 0..40 {
        got.extend(portal.sync(Duration::from_millis(500)).await.unwrap());
        if got.len() >= 3 {
            break;
        }
    }
    assert_eq!(statuses(&got), ["diterima", "diproses", "selesai"]);
    assert_eq!(got[2]["catatan"], "ambil di kecamatan");
    assert_eq!(portal.status(id).unwrap().as_deref(), Some("selesai"));
    // The request was registered in SIAK once, under the portal's reference.
    assert_eq!(no, "1");
    siak.stop().await;
}

/// Each of SLAWE's services takes its own fields: a request missing one, or carrying another
/// service's, is refused naming each field, and nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_request_names_each_field_its_service_lacks_or_does_not_take() {
    let bus = Bus::start(&[]);
    let portal = bus.client(PORTAL);
    let bad = event(
        "layanan.permohonan",
        json!({ "nik": NIK, "layanan": "mobil_dukling", "lokasi": "Balai Desa",
                "alasan": "rusak" }),
    );
    let a = portal.send(&bad).await.unwrap();
    assert_status(&a, 422);
    let mut named = a.pointers();
    named.sort();
    assert_eq!(
        named,
        ["/data/alasan", "/data/kode_desa", "/data/tanggal"],
        "{}",
        a.body
    );
    let kept = portal.status(id_of(&bad)).await.unwrap();
    assert_status(&kept, 404);
    // Every service's example request is valid as the portal sends it.
    for (layanan, fields) in adapters::demo::slawe_requests() {
        let mut data = json!({ "nik": NIK, "layanan": layanan });
        data.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let ok = portal
            .send(&event("layanan.permohonan", data))
            .await
            .unwrap();
        assert_status(&ok, 202);
    }
}

/// v2 of the attendance schema is served alongside v1: an event chooses it with
/// `dataschema`; one that names no version is checked against v1, and one that names a
/// version the type does not have is refused, naming those it has.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_chooses_its_schema_version_with_dataschema() {
    let bus = Bus::start(&[]);
    let eabsen = bus.client(EABSEN);
    let check_in = json!({ "nip": "199009132025242014", "waktu": "2026-11-23T08:55:00+08:00",
                           "sumber": "mobile", "lokasi": { "lat": -6.9, "lon": 107.6 },
                           "foto_sha256": "ab".repeat(32) });
    let with = |schema: Option<&str>, data: &Value| {
        let mut ev = event("eabsen.kehadiran.tercatat", data.clone());
        if let Some(s) = schema {
            ev["dataschema"] = json!(s);
        }
        ev
    };
    let v2 = Some(adapters::eabsen::CHECK_IN_SCHEMA);
    assert_status(&eabsen.send(&with(v2, &check_in)).await.unwrap(), 202);
    // v1 has no photo hash.
    let a = eabsen.send(&with(None, &check_in)).await.unwrap();
    assert_status(&a, 422);
    assert_eq!(a.pointers(), ["/data/foto_sha256"], "{}", a.body);
    // Under v2 a mobile check-in must carry its location and photo hash.
    let mut bare = check_in.clone();
    bare.as_object_mut().unwrap().remove("foto_sha256");
    bare.as_object_mut().unwrap().remove("lokasi");
    let a = eabsen.send(&with(v2, &bare)).await.unwrap();
    assert_status(&a, 422);
    let mut named = a.pointers();
    named.sort();
    assert_eq!(named, ["/data/foto_sha256", "/data/lokasi"], "{}", a.body);
    let v3 = Some("urn:simpul:schema:eabsen.kehadiran.tercatat.v3");
    let a = eabsen.send(&with(v3, &check_in)).await.unwrap();
    assert_status(&a, 400);
    let says = a.body.to_string();
    assert!(
        says.contains("eabsen.kehadiran.tercatat.v1 or eabsen.kehadiran.tercatat.v2"),
        "{says}"
    );
    // The schema list says which types each version serves.
    let (_, list) = bus.get_text(HR, "/v1/schemas").await;
    let list: Value = serde_json::from_str(&list).unwrap();
    let v2_entry = list
        .as_array()
        .or(list["schemas"].as_array())
        .unwrap()
        .iter()
        .find(|s| s["id"] == "eabsen.kehadiran.tercatat.v2")
        .cloned()
        .unwrap();
    assert_eq!(v2_entry["types"], json!(["eabsen.kehadiran.tercatat"]));
}

fn eabsen(bus: &Bus, outbox: &Path) -> EabsenAdapter {
    let l = Link::open(&bus.base, &bus.certs(), EABSEN, outbox, Trace::quiet()).unwrap();
    let a = EabsenAdapter::new(EabsenConfig::default(), l).unwrap();
    for (pin, nip, unit, _) in PEGAWAI {
        a.set_pegawai(pin, nip, unit).unwrap();
    }
    a
}

async fn whole_feed(c: &Client) -> Vec<Value> {
    let a = c.feed("eabsen.kehadiran.tercatat", 0, 1000).await.unwrap();
    assert_status(&a, 200);
    a.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn g2e_attendance_feed_resume_reimport_and_recap() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let dev = EabsenSimulator::open(&dir.path().join("dev.db"), "1", "CQZ7231160002").unwrap();
    for (pin, t, st) in [
        ("1", "07:01:02", 0),
        ("2", "07:12:40", 0),
        ("23", "07:30:00", 0),
        ("105", "07:31:00", 0),
        ("1", "16:05:10", 1),
        ("2", "16:10:00", 1),
    ] {
        dev.scan(pin, &format!("2026-11-23 {t}"), st, 1).unwrap();
    }
    let mut export = dev.export_attlog().unwrap();
    export.push_str("      999\t2026-11-23 08:00:00\t1\t0\t1\t0\r\n"); // a PIN nobody mapped
    let ea = Arc::new(eabsen(&bus, &dir.path().join("eabsen.db")));
    let r = ea.import_attlog(&export).unwrap();
    assert_eq!((r.parsed, r.queued, r.repeats), (7, 6, 0));
    assert_eq!(r.errors.len(), 1);
    assert_eq!((r.errors[0].line, r.errors[0].field), (7, "PIN"));
    ea.link.flush().await.unwrap();

    let feed = whole_feed(&bus.client(HR)).await;
    assert_eq!(feed.len(), 6);
    assert_eq!(feed[0]["data"]["nip"], "197803122005011002");
    assert_eq!(feed[0]["data"]["waktu"], "2026-11-23T07:01:02+07:00");
    assert_eq!(feed[0]["data"]["status_kode"], 0);
    assert_eq!(feed[4]["data"]["status_kode"], 1);
    assert_eq!(feed[0]["data"]["sumber"], "mesin");

    // HR reads two events, stops (a new reader on the same file, as after a restart), resumes.
    let hr_file = dir.path().join("hr.db");
    let hr_link = || Link::open(&bus.base, &bus.certs(), HR, &hr_file, Trace::quiet()).unwrap();
    let first = HrReader::new(hr_link())
        .unwrap()
        .read_feed("eabsen.kehadiran.tercatat", 2, 1)
        .await
        .unwrap();
    assert_eq!(first.new, 2);
    let hr = HrReader::new(hr_link()).unwrap();
    let rest = hr
        .read_feed("eabsen.kehadiran.tercatat", 2, 100)
        .await
        .unwrap();
    assert_eq!((rest.new, rest.repeats), (4, 0));
    let ids: Vec<&str> = feed.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let held: Vec<Value> = hr.received("eabsen.kehadiran.tercatat").unwrap();
    assert_eq!(
        held.iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ids
    );

    // Re-importing the export, or receiving the same punches by push, adds nothing.
    let again = ea.import_attlog(&export).unwrap();
    assert_eq!((again.queued, again.repeats), (0, 6));
    let pushed = ea
        .import_push(&dev.serial, &dev.next_push().unwrap())
        .unwrap();
    assert_eq!((pushed.queued, pushed.repeats), (0, 6));
    // Even from a fresh outbox (a reinstalled adapter, or another PC given the adapter's id
    // key) the ids are the same, and the bus's idempotency drops every repeat.
    let other = eabsen(&bus, &dir.path().join("eabsen-reinstalled.db"));
    assert_eq!(other.import_attlog(&export).unwrap().queued, 6);
    let f = other.link.flush().await.unwrap();
    assert_eq!((f.accepted, f.duplicates), (0, 6));
    assert_eq!(whole_feed(&bus.client(HR)).await.len(), 6);

    // A mobile check-in with its zone and location.
    assert!(
        ea.check_in(
            &json!({ "nip": "199009132025242014", "waktu": "2026-11-23T08:55:00+08:00",
                           "lat": -6.9175, "lon": 107.6191, "foto_sha256": "ab".repeat(32) })
        )
        .unwrap()
    );
    let bad = ea.check_in(
        &json!({ "nip": "1990", "waktu": "kemarin", "lat": 91.0, "lon": 0.0, "foto_sha256": "x" }),
    );
    let e = bad.unwrap_err().to_string();
    for f in ["nip", "waktu", "lat", "foto_sha256"] {
        assert!(e.contains(f), "{e}");
    }
    ea.link.flush().await.unwrap();
    let more = hr
        .read_feed("eabsen.kehadiran.tercatat", 2, 100)
        .await
        .unwrap();
    assert_eq!((more.new, more.repeats), (1, 0));
    let mobile = hr
        .received("eabsen.kehadiran.tercatat")
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(mobile["data"]["sumber"], "mobile");
    assert_eq!(mobile["data"]["lokasi"]["lat"], -6.9175);
    // Under v2 of the schema, with the photo's hash; punches from the terminals stay v1.
    assert_eq!(mobile["dataschema"], adapters::eabsen::CHECK_IN_SCHEMA);
    assert_eq!(mobile["data"]["foto_sha256"], "ab".repeat(32));

    // Daily recap per unit, asked by HR over the bus.
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(adapters::runner::run(ea.clone(), rx));
    let recap = ask(
        &bus.client(HR),
        "eabsen.rekap.harian",
        json!({ "unit": "BAPPEDA", "tanggal": "2026-11-23" }),
    )
    .await;
    assert_eq!(recap["zona"], "+07:00");
    assert_eq!(
        recap["pegawai"],
        json!([
            { "nip": "198811172019031004", "jumlah": 1, "masuk": "07:30:00" },
            // The 08:55+08:00 check-in is 07:55 office time.
            { "nip": "199009132025242014", "jumlah": 2, "masuk": "07:31:00", "pulang": "07:55:00" }
        ])
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// Run where there is no checkout (no `registry.toml`), the demo uses its built-in registry.
#[test]
fn simpul_demo_runs_the_four_flows_from_anywhere_and_prints_a_masked_trace() {
    let elsewhere = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin())
        .arg("demo")
        .current_dir(elsewhere.path())
        .env_remove("SIMPUL_REGISTRY")
        .env("SIMPUL_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "built-in example registry",
        "== G2G",
        "== G2B",
        "== G2C",
        "== G2E",
        "siak.penduduk.meninggal",
        "sipanse.izin.status",
        "terbit",
        "ganda",
        "layanan.status",
        "selesai",
        "eabsen.rekap.harian",
        "demo finished",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    for nik in [
        seed::BUDI,
        seed::SITI,
        seed::AHMAD,
        seed::DEWI_1,
        seed::DEWI_2,
        "197803122005011002",
    ] {
        assert!(
            !stdout.contains(nik),
            "an ID in clear in the trace:\n{stdout}"
        );
    }
}
