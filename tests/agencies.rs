//! The whole deployment as separate processes: the bus; SIAK's web service, SIPANSE's API and
//! a fingerprint terminal, each simulated as its own process (`simpul simulate`); and the SIAK,
//! SIPANSE, e-absen, portal and HR adapters (`simpul adapter run`), reaching those systems
//! over HTTP exactly as they would reach the real ones. The four flows run across them, and an
//! adapter stopped with SIGTERM and started again loses nothing and sends nothing twice.

mod common;

use std::path::Path;
use std::time::Duration;

use common::process::Running;
use common::*;
use serde_json::{Value, json};

const SN: &str = "CKJD201960001";
const NIP: &str = "197803122005011002";
const LIMIT: Duration = Duration::from_secs(30);
/// SIAK's seeded residents (see `adapters::siak::simulator::seed`).
const BUDI: &str = "3273012208850001";
const AHMAD: &str = "3204051203780002";
const DEWI: &str = "3273016607920004";

/// How many events of `type_` HR has received (its adapter keeps them in its state).
fn at_hr(dir: &Path, type_: &str) -> i64 {
    let Ok(c) = rusqlite::Connection::open(dir.join("hr").join("GOV_bkpsdm_hr.db")) else {
        return 0;
    };
    c.query_row(
        "SELECT count(*) FROM diterima WHERE type = ?1",
        [type_],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let r = http.post(&url).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

/// The business's `sipanse.izin.status` notices until one has `status`; acked as read.
async fn notice(biz: &bus::client::Client, status: &str) -> Value {
    let deadline = std::time::Instant::now() + LIMIT;
    while std::time::Instant::now() < deadline {
        let a = biz
            .pull(10, Duration::from_secs(1), Duration::from_secs(30))
            .await
            .unwrap();
        for m in a.body["messages"].as_array().cloned().unwrap_or_default() {
            let ev = &m["event"];
            biz.ack(ev["id"].as_str().unwrap().parse().unwrap())
                .await
                .unwrap();
            if ev["data"]["status"] == status {
                return ev["data"].clone();
            }
        }
    }
    panic!("no {status} notice");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_agency_systems_and_their_adapters_run_the_four_flows_as_processes() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let http = reqwest::Client::new();
    let db = |name: &str| d.join(name).display().to_string();
    let account = ["--user-id", "diskominfo", "--password", "rahasia"];

    // The agency systems, each on its own.
    let siak_db = db("siak.db");
    let siak_sim = Running::simulator(&[&["siak", "--db", &siak_db][..], &account].concat());
    let sipanse_db = db("sipanse.db");
    let sipanse_sim =
        Running::simulator(&[&["sipanse", "--db", &sipanse_db][..], &account].concat());
    // SIAK's password in a file of its own (as an operator would keep it), SIPANSE's inline.
    std::fs::write(d.join("siak.password"), "rahasia\n").unwrap();
    let siak_ws = format!(
        "[siak]\nurl = \"{}/dukcapil/get_json/DISKOMINFO\"\nuser_id = \"diskominfo\"\npassword_file = \"siak.password\"\n",
        siak_sim.addr("simulator")
    );
    let sipanse_api = format!(
        "[sipanse]\nurl = \"{}\"\nuser_id = \"diskominfo\"\npassword = \"rahasia\"\n",
        sipanse_sim.addr("simulator")
    );
    let eabsen_lan = format!(
        "[eabsen]\nlisten = \"127.0.0.1:0\"\n\n[[eabsen.device]]\nsn = \"{SN}\"\nunit = \"DISKOMINFO\"\n\n\
         [[eabsen.pegawai]]\npin = \"1\"\nnip = \"{NIP}\"\nunit = \"DISKOMINFO\"\n"
    );

    // Their adapters, and the portal and HR.
    let mut siak = Running::adapter(&bus, d, "siak", DUKCAPIL, &siak_ws, &["health"]);
    let mut sipanse = Running::adapter(&bus, d, "sipanse", DPMPTSP, &sipanse_api, &["health"]);
    let mut eabsen = Running::adapter(
        &bus,
        d,
        "eabsen",
        EABSEN,
        &eabsen_lan,
        &["health", "terminals"],
    );
    let terminal_db = db("terminal.db");
    let terminal = Running::simulator(&[
        "eabsen",
        "--db",
        &terminal_db,
        "--sn",
        SN,
        "--push",
        eabsen.addr("terminals"),
    ]);
    let portal = Running::adapter(
        &bus,
        d,
        "portal",
        PORTAL,
        "[portal]\nlisten = \"127.0.0.1:0\"\n",
        &["health", "portal application"],
    );
    let _hr = Running::adapter(&bus, d, "hr", HR, "", &["health"]);
    let (siak_at, sipanse_at) = (siak_sim.addr("simulator"), sipanse_sim.addr("simulator"));

    // G2G: HR verifies a civil servant; the answer is SIAK's, read over its web service.
    let hr = bus.client(HR);
    let ask = event(
        "siak.penduduk.verify",
        json!({ "nik": AHMAD, "nama": "Ahmad Hidayat", "tanggal_lahir": "1978-03-12" }),
    );
    let a = hr.send(&ask).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"]["status"], "aktif", "{}", a.body);
    assert_eq!(a.body["data"]["hasil"]["tanggal_lahir"]["hasil"], "sesuai");
    // … and a death SIAK's clerk records reaches HR from SIAK's change log.
    let death = json!({ "NIK": BUDI, "TGL_MATI": "20-11-2026", "TMPT_MATI": "RSUD", "NO_AKTA_MATI": "A-1" });
    post(&http, format!("{siak_at}/simulator/kematian"), death).await;
    let reached = wait_until(LIMIT, || async { at_hr(d, "siak.penduduk.meninggal") == 1 }).await;
    assert!(reached, "the death did not reach HR");

    // G2B: a business applies; SIPANSE's adapter registers it through SIPANSE's API, checks
    // the applicant with Dukcapil over the bus, and the officer's decisions come back.
    let biz = bus.client(BIZ);
    let application = event(
        "sipanse.izin.permohonan",
        json!({
            "nib": "8120000123456", "npwp": "013121660091000",
            "pemohon": { "nik": AHMAD, "nama": "Ahmad Hidayat" },
            "jenis_izin": "Izin Usaha Mikro Kecil", "kbli": ["47111"], "kbli_versi": "2020",
            "lokasi": "3273011001",
            "lampiran": [{ "nama": "denah.pdf", "uri": "https://berkas.contoh.id/denah.pdf",
                           "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }]
        }),
    );
    let a = biz.send(&application).await.unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    notice(&biz, "diverifikasi").await;
    // The officer decides while SIPANSE's adapter is stopped: the decision waits in SIPANSE's
    // status log, and the adapter started again sends it.
    assert!(sipanse.terminate().success());
    // SIPANSE remembers the application by `<sender>|<id>`, here URL-encoded.
    let referensi = format!("{BIZ}|{}", application["id"].as_str().unwrap())
        .replace('/', "%2F")
        .replace('|', "%7C");
    let row: Value = http
        .get(format!(
            "{sipanse_at}/api/v1/permohonan?referensi={referensi}"
        ))
        .basic_auth("diskominfo", Some("rahasia"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let no = row["data"]["no_registrasi"].as_str().unwrap().to_owned();
    let officer = format!("{sipanse_at}/simulator/permohonan/{no}");
    post(
        &http,
        format!("{officer}/putusan"),
        json!({ "setuju": true }),
    )
    .await;
    let issued = post(&http, format!("{officer}/terbit"), json!({})).await;
    let _sipanse = Running::adapter(&bus, d, "sipanse", DPMPTSP, &sipanse_api, &["health"]);
    let terbit = notice(&biz, "terbit").await;
    assert_eq!(terbit["nomor_izin"], issued["data"]["no_izin"], "{terbit}");

    // G2C: a citizen's request at the portal is registered in SIAK, and the clerk's
    // decision reaches the portal.
    let intake = portal.addr("portal application");
    let filed = post(
        &http,
        format!("{intake}/permohonan"),
        json!({ "nik": AHMAD, "layanan": "akta_kelahiran", "nama_anak": "PUTRI HIDAYAT",
                "tanggal_lahir": "2020-02-15" }),
    )
    .await;
    let id = filed["id"].as_str().unwrap().to_owned();
    let status_is = |want: &'static str| {
        let (http, url) = (&http, format!("{intake}/permohonan/{id}"));
        async move {
            let v: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
            v["status"] == want
        }
    };
    assert!(wait_until(LIMIT, || status_is("diterima")).await);
    let list: Value = http
        .get(format!("{siak_at}/simulator/layanan"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["JENIS_LAYANAN"], "AKTA LAHIR", "{list}");
    let no_reg = list[0]["NO_REG"].as_str().unwrap();
    post(
        &http,
        format!("{siak_at}/simulator/layanan/{no_reg}"),
        json!({ "STATUS": "SELESAI", "CATATAN": "siap diambil" }),
    )
    .await;
    assert!(wait_until(LIMIT, || status_is("selesai")).await);

    // G2E: a finger on the terminal; the terminal pushes to e-absen, and HR reads the feed.
    let scan = |time: &str| json!({ "pin": "1", "time": time, "status": 0, "verify": 1 });
    let reader = format!("{}/simulator/scan", terminal.addr("simulator"));
    post(&http, reader.clone(), scan("2026-12-07 07:01:02")).await;
    let attendance = "eabsen.kehadiran.tercatat";
    assert!(wait_until(LIMIT, || async { at_hr(d, attendance) == 1 }).await);

    // SIGTERM e-absen's and SIAK's adapters; meanwhile two more punches and another death.
    assert!(eabsen.terminate().success());
    assert!(siak.terminate().success());
    post(&http, reader.clone(), scan("2026-12-07 16:02:03")).await;
    post(&http, reader, scan("2026-12-07 16:05:00")).await;
    let death = json!({ "NIK": DEWI, "TGL_MATI": "21-11-2026", "TMPT_MATI": "RUMAH", "NO_AKTA_MATI": "A-2" });
    post(&http, format!("{siak_at}/simulator/kematian"), death).await;
    // Started again on the same state, they pick up where they stopped: the terminal resumes
    // from the stamp the adapter kept, SIAK's log from the adapter's cursor.
    let terminals_before = eabsen.addr("terminals").to_owned();
    let siak = Running::adapter(&bus, d, "siak", DUKCAPIL, &siak_ws, &["health"]);
    let lan = eabsen_lan.replace(
        "127.0.0.1:0",
        terminals_before.trim_start_matches("http://"),
    );
    let _eabsen = Running::adapter(&bus, d, "eabsen", EABSEN, &lan, &["health", "terminals"]);
    assert!(wait_until(LIMIT, || async { at_hr(d, attendance) == 3 }).await);
    assert!(wait_until(LIMIT, || async { at_hr(d, "siak.penduduk.meninggal") == 2 }).await);
    // Nothing twice: the feed holds each punch once, and HR its one recap answer.
    let (_, feed) = bus
        .get_text(HR, "/v1/feeds/eabsen.kehadiran.tercatat?after=0")
        .await;
    assert_eq!(feed.matches(NIP).count(), 3, "{feed}");
    let recap = event(
        "eabsen.rekap.harian",
        json!({ "unit": "DISKOMINFO", "tanggal": "2026-12-07" }),
    );
    let a = hr.send(&recap).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let pegawai = &a.body["data"]["pegawai"][0];
    assert_eq!(pegawai["nip"], NIP);
    assert_eq!(pegawai["jumlah"], 3);
    assert_eq!(pegawai["masuk"], "07:01:02");
    assert_eq!(pegawai["pulang"], "16:05:00");
    assert_eq!(at_hr(d, "siak.penduduk.meninggal"), 2);

    // SIAK down: its adapter's health says so, and it stays on its bus node.
    drop(siak_sim);
    let health = format!("{}/healthz", siak.addr("health"));
    let health_now = || async {
        let r = http.get(&health).send().await.unwrap();
        r.json::<Value>().await.unwrap()
    };
    let told = wait_until(LIMIT, || async {
        health_now().await["last_error"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("SIAK web service: LOG_PERUBAHAN"))
    })
    .await;
    let h = health_now().await;
    assert!(told, "{h}");
    assert_eq!(h["bus"], bus.base);
    // An agency asking meanwhile is told at once (502) that SIAK could not be reached, and
    // not where SIAK is.
    let again = event(
        "siak.penduduk.verify",
        json!({ "nik": AHMAD, "nama": "Ahmad Hidayat" }),
    );
    let a = hr.send(&again).await.unwrap();
    assert_eq!(a.status, 502, "{}", a.body);
    let why = a.body.to_string();
    assert!(why.contains("SIAK web service: CALL_NIK"), "{why}");
    assert!(!why.contains("get_json"), "{why}");
}
