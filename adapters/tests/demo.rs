//! `simpul demo`'s flows, run in-process (real bus, real mTLS with the dev PKI), checking what
//! each flow established rather than the printed trace.

use std::path::Path;

use adapters::demo;
use adapters::trace::Trace;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_establishes_each_flows_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Path::new(env!("CARGO_MANIFEST_DIR")).join("../registry.toml");
    let trace = Trace::quiet();
    let s = demo::run(&registry, dir.path(), trace.clone())
        .await
        .unwrap();

    // G2G
    assert_eq!(s.verify_status, "aktif");
    assert_eq!(s.duplicate_status, "ganda");
    let mut granted = s.get_fields_for_dpmptsp.clone();
    granted.sort();
    assert_eq!(
        granted,
        [
            "alamat",
            "jenis_kelamin",
            "kode_wilayah",
            "nama",
            "nik",
            "rt",
            "rw",
            "status",
            "tanggal_lahir",
            "tempat_lahir"
        ]
    );
    assert_eq!(s.hr_deaths, 1);
    // G2B
    assert_eq!(
        s.permit_statuses,
        ["diterima", "diverifikasi", "disetujui", "terbit"]
    );
    assert!(s.permit_number.as_deref().unwrap().contains("DPMPTSP"));
    assert_eq!(s.late_withdrawal["hasil"], "ditolak");
    assert_eq!(s.late_withdrawal["status"], "terbit");
    // G2C
    // Each of SLAWE's nine services, to Dukcapil and back.
    assert_eq!(s.portal_statuses.len(), 9, "{:?}", s.portal_statuses);
    for (layanan, statuses) in &s.portal_statuses {
        assert_eq!(statuses, &["diterima", "selesai"], "{layanan}");
    }
    assert_eq!(
        s.dukling_booking,
        json!({ "KODE_DESA": "3204052001", "LOKASI": "Balai Desa", "TGL_JADWAL": "14-12-2026",
                "JML_PESERTA": 40 })
    );
    // G2E
    assert_eq!(s.attendance_first_import, 4);
    assert_eq!(s.attendance_reimport_new, 0);
    assert_eq!(s.hr_feed_events, 5);
    assert_eq!(
        s.recap["pegawai"][0],
        json!({ "nip": "197803122005011002", "jumlah": 2, "masuk": "07:01:02", "pulang": "16:05:10" })
    );
    // The trace names every hop and shows no ID in clear.
    let lines = trace.lines().join("\n");
    assert!(
        lines.contains("COM/8120000123456    → GOV/dpmptsp"),
        "{lines}"
    );
    assert!(!lines.contains("3273012208850001") && !lines.contains("197803122005011002"));
}
