//! The agency systems over the network: the adapters' clients (SIAK's web service, SIPANSE's
//! API) against the simulators serving the same interfaces over real HTTP, answering exactly
//! what the simulators answer in-process, and failing with a reason the operator can act on.

use std::sync::Arc;

use adapters::agency::Account;
use adapters::siak::simulator::{SiakSimulator, seed};
use adapters::siak::webservice::{self, SiakWebService};
use adapters::siak::{NativeError, SiakSystem};
use adapters::sipanse::api::{self, SipanseApi};
use adapters::sipanse::simulator::SipanseSimulator;
use adapters::sipanse::{NativePermohonan, NativeStatus, SipanseNativeError, SipanseSystem};
use serde_json::{Value, json};

/// Serves `router` on a free loopback port; the base address.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn account(password: &str) -> Account {
    Account {
        user_id: "diskominfo".into(),
        password: password.into(),
    }
}

#[tokio::test]
async fn siak_over_its_web_service_answers_as_siak_does() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Arc::new(SiakSimulator::open_seeded(&dir.path().join("siak.db")).unwrap());
    let base = serve(webservice::router(sim.clone(), "diskominfo", "rahasia")).await;
    let ws = SiakWebService::new(
        &format!("{base}/dukcapil/get_json/DISKOMINFO"),
        account("rahasia"),
        "10.1.2.3",
    )
    .unwrap();

    // Every seeded export variant (numbers for IDs, zero-width characters, …) comes through
    // unchanged, so the adapter's mapping sees what SIAK sends.
    for nik in [
        seed::BUDI,
        seed::SITI,
        seed::AHMAD,
        seed::DEWI_1,
        seed::DEWI_2,
    ] {
        let direct = sim.cari_nik(nik).unwrap();
        assert!(direct.is_some());
        assert_eq!(ws.cari_nik(nik).await.unwrap(), direct, "{nik}");
    }
    assert_eq!(ws.cari_nik("3204050000000000").await.unwrap(), None);
    assert_eq!(
        ws.cari_nama("DEWI LESTARI").await.unwrap(),
        sim.cari_nama("DEWI LESTARI").unwrap()
    );
    assert_eq!(
        ws.cari_nama("TIDAK ADA").await.unwrap(),
        Vec::<Value>::new()
    );

    // The change log, by sequence number (sent as strings), in pages.
    sim.catat_kematian(seed::SITI, "20-11-2026", "RSUD", "AKTA-1")
        .unwrap();
    sim.ubah_kk(seed::BUDI, "3273012001150099", "PISAH KK")
        .unwrap();
    let all = ws.log_perubahan(0, 10).await.unwrap();
    let jenis: Vec<_> = all.iter().map(|p| p.jenis.as_str()).collect();
    assert_eq!(jenis, ["MATI", "UBAH_KK"]);
    assert_eq!(all[0].data, sim.log_perubahan(0, 1).unwrap()[0].data);
    let after_first = ws.log_perubahan(all[0].seq, 10).await.unwrap();
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0].seq, all[1].seq);
    assert!(ws.log_perubahan(all[1].seq, 10).await.unwrap().is_empty());

    // A service request is registered once per reference, with its details.
    let rincian = json!({ "KODE_DESA": "3204052001", "LOKASI": "Balai Desa" });
    let no = ws
        .terima_layanan(seed::SITI, "MOBIL_DUKLING", "GOV/portal|1", &rincian)
        .await
        .unwrap();
    let again = ws
        .terima_layanan(seed::SITI, "MOBIL_DUKLING", "GOV/portal|1", &rincian)
        .await
        .unwrap();
    assert_eq!(no, again);
    assert_eq!(sim.layanan(&no).unwrap(), ("MOBIL_DUKLING".into(), rincian));

    // A wrong password is SIAK's refusal, said as SIAK says it; nothing is taken for "not found".
    let wrong = SiakWebService::new(
        &format!("{base}/dukcapil/get_json/DISKOMINFO"),
        account("x"),
        "10.1.2.3",
    )
    .unwrap();
    match wrong.cari_nik(seed::BUDI).await {
        Err(NativeError::Service(why)) => {
            assert!(
                why.contains("CALL_NIK") && why.contains("Password"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A system that is down is an error naming the call, not an empty answer.
    let down = SiakWebService::new(
        "http://127.0.0.1:1/dukcapil/get_json/X",
        account("rahasia"),
        "10.1.2.3",
    )
    .unwrap();
    match down.cari_nik(seed::BUDI).await {
        // The address stays out of it: the reason may reach the asking agency.
        Err(NativeError::Service(why)) => {
            assert!(why.starts_with("CALL_NIK: "), "{why}");
            assert!(
                !why.contains("127.0.0.1") && !why.contains("get_json"),
                "{why}"
            );
        }
        other => panic!("{other:?}"),
    }
}

fn sipanse_account(password: &str) -> Account {
    Account {
        user_id: "dpmptsp".into(),
        password: password.into(),
    }
}

fn application(referensi: &str) -> NativePermohonan {
    NativePermohonan {
        no_registrasi: String::new(),
        referensi: referensi.into(),
        nib: "8120000123456".into(),
        npwp: "012345678901000".into(),
        nik_pemohon: seed::BUDI.into(),
        nama_pemohon: "BUDI SANTOSO".into(),
        jenis_izin: "SIUP".into(),
        kbli: "47111,56101".into(),
        kode_lokasi: "3273010001".into(),
        lampiran: "[]".into(),
        status: String::new(),
        no_izin: None,
    }
}

#[tokio::test]
async fn sipanse_over_its_api_answers_as_sipanse_does() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Arc::new(SipanseSimulator::open(&dir.path().join("sipanse.db")).unwrap());
    let base = serve(api::router(sim.clone(), "dpmptsp", "rahasia")).await;
    let api = SipanseApi::new(&base, sipanse_account("rahasia")).unwrap();

    let p = application("COM/8120000123456|a");
    let no = api.daftar(&p).await.unwrap();
    assert_eq!(
        api.daftar(&p).await.unwrap(),
        no,
        "registered once per reference"
    );
    let row = api.cari(&no).await.unwrap().unwrap();
    assert_eq!(Some(row.clone()), sim.cari(&no).unwrap());
    assert_eq!(row.status, "BARU");
    assert_eq!(row.kbli, "47111,56101");
    assert_eq!(
        api.cari_referensi("COM/8120000123456|a").await.unwrap(),
        Some(row)
    );
    assert_eq!(api.cari_referensi("COM/other|a").await.unwrap(), None);
    assert_eq!(api.cari("REG-99999").await.unwrap(), None);

    // Correct, verify, then the officer decides: a withdrawal is refused with the status.
    let mut changed = p.clone();
    changed.kbli = "47111".into();
    api.ubah(&no, &changed).await.unwrap();
    assert_eq!(sim.cari(&no).unwrap().unwrap().kbli, "47111");
    api.catat_verifikasi(&no, true, "").await.unwrap();
    sim.putuskan(&no, true, "lengkap").unwrap();
    match api.tarik(&no, "batal").await {
        Err(SipanseNativeError::WrongState(s)) => assert_eq!(s, NativeStatus::Setuju),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        api.tarik("REG-99999", "batal").await,
        Err(SipanseNativeError::NotFound)
    ));

    // The status log, as the simulator keeps it.
    let log = api.log_status(0, 10).await.unwrap();
    let statuses: Vec<_> = log.iter().map(|c| c.status.as_str()).collect();
    assert_eq!(statuses, ["BARU", "VERIFIKASI", "SETUJU"]);
    assert_eq!(api.log_status(log[1].seq, 10).await.unwrap().len(), 1);

    // Another account is refused, and says so.
    let wrong = SipanseApi::new(&base, sipanse_account("x")).unwrap();
    match wrong.cari(&no).await {
        Err(SipanseNativeError::Api(why)) => assert!(why.contains("401"), "{why}"),
        other => panic!("{other:?}"),
    }
}
