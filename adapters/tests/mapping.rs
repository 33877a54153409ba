//! Mapping of every native variant seen in the field, the registry agreeing with each
//! adapter's declared types, and the schema examples validating.

use std::path::{Path, PathBuf};

use adapters::eabsen::attlog;
use adapters::eabsen::simulator::EabsenSimulator;
use adapters::siak::SiakAdapter;
use adapters::siak::mapping::penduduk;
use adapters::siak::simulator::{SiakSimulator, seed};
use adapters::{Agency, Declared};
use bus::identity::MemberId;
use bus::registry::{Kind, Registry};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn registry() -> Registry {
    Registry::load(&repo().join("registry.toml")).expect("registry")
}

/// A complete native record in the "reference" spelling.
fn base() -> Value {
    json!({
        "NIK": "3273012208850001", "NO_KK": "3273012001150003", "NAMA_LGKP": "BUDI SANTOSO",
        "TMPT_LHR": "BANDUNG", "TGL_LHR": "1985-08-22", "JENIS_KLMIN": "LAKI-LAKI",
        "AGAMA": "ISLAM", "STATUS_KAWIN": "KAWIN", "ALAMAT": "JL. MERDEKA NO. 10",
        "NO_RT": "001", "NO_RW": "002", "NO_PROP": "32", "NO_KAB": "73", "NO_KEC": "01", "NO_KEL": "1001",
        "PROP_NAME": "JAWA BARAT", "KAB_NAME": "KOTA BANDUNG", "KEC_NAME": "SUKASARI",
        "KEL_NAME": "SARIJADI", "JENIS_PKRJN": "WIRASWASTA", "PDDK_AKH": "SLTP/SEDERAJAT",
        "GOL_DARAH": "O", "STAT_HBKEL": "KEPALA KELUARGA", "NAMA_LGKP_IBU": "SUMARNI"
    })
}

fn with(changes: Value, remove: &[&str]) -> Value {
    let mut r = base();
    for k in remove {
        r.as_object_mut().unwrap().remove(*k);
    }
    for (k, v) in changes.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

#[test]
fn every_native_variant_maps_to_the_same_canonical_record() {
    let reference = penduduk(&base()).unwrap();
    assert_eq!(reference.kode_wilayah.as_deref(), Some("3273011001"));
    assert_eq!(reference.pendidikan, Some("sltp"));
    let variants = [
        (
            "STAT_KWN",
            with(json!({ "STAT_KWN": "KAWIN" }), &["STATUS_KAWIN"]),
        ),
        ("GOL_DRH", with(json!({ "GOL_DRH": "O" }), &["GOL_DARAH"])),
        (
            "NKK",
            with(json!({ "NKK": "3273012001150003" }), &["NO_KK"]),
        ),
        (
            "NIK as number",
            with(json!({ "NIK": 3273012208850001u64 }), &[]),
        ),
        (
            "NO_KK as number",
            with(json!({ "NO_KK": 3273012001150003u64 }), &[]),
        ),
        (
            "RT/RW and region parts as numbers",
            with(
                json!({ "NO_RT": 1, "NO_RW": 2, "NO_PROP": 32, "NO_KAB": 73, "NO_KEC": 1, "NO_KEL": 1001 }),
                &[],
            ),
        ),
        (
            "RT/RW as short strings",
            with(json!({ "NO_RT": "1", "NO_RW": "02" }), &[]),
        ),
        ("DD-MM-YYYY", with(json!({ "TGL_LHR": "22-08-1985" }), &[])),
        ("DD/MM/YYYY", with(json!({ "TGL_LHR": "22/08/1985" }), &[])),
        (
            "gender mixed case",
            with(json!({ "JENIS_KLMIN": "Laki-laki" }), &[]),
        ),
        (
            "gender with spaces",
            with(json!({ "JENIS_KLMIN": " laki - laki " }), &[]),
        ),
        (
            "schooling with spaces",
            with(json!({ "PDDK_AKH": "SLTP / SEDERAJAT" }), &[]),
        ),
        (
            "schooling lower case",
            with(json!({ "PDDK_AKH": "sltp / sederajat" }), &[]),
        ),
        (
            "marital status mixed case",
            with(json!({ "STATUS_KAWIN": "Kawin" }), &[]),
        ),
        (
            "religion lower case",
            with(json!({ "AGAMA": "islam" }), &[]),
        ),
        (
            "family relation spacing",
            with(json!({ "STAT_HBKEL": "Kepala  Keluarga" }), &[]),
        ),
        (
            "invisible characters in NIK and NO_KK",
            with(
                json!({ "NIK": "\u{FEFF}3273\u{200B}0122 0885\u{200D}0001", "NO_KK": "3273.0120.0115.0003\u{2060}" }),
                &[],
            ),
        ),
        (
            "name with extra spaces",
            with(json!({ "NAMA_LGKP": "  BUDI   SANTOSO " }), &[]),
        ),
    ];
    for (what, rec) in variants {
        let got = penduduk(&rec).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got, reference, "{what}");
    }
}

#[test]
fn vocabularies_map_in_any_spelling() {
    let cases = [
        (json!({ "JENIS_KLMIN": "PEREMPUAN" }), "jenis_kelamin", "P"),
        (json!({ "JENIS_KLMIN": "Perempuan" }), "jenis_kelamin", "P"),
        (json!({ "AGAMA": "KATHOLIK" }), "agama", "katolik"),
        (json!({ "AGAMA": "Budha" }), "agama", "buddha"),
        (
            json!({ "STATUS_KAWIN": "CERAI HIDUP" }),
            "status_kawin",
            "cerai_hidup",
        ),
        (
            json!({ "STATUS_KAWIN": "KAWIN TERCATAT" }),
            "status_kawin",
            "kawin",
        ),
        (
            json!({ "PDDK_AKH": "TAMAT SD / SEDERAJAT" }),
            "pendidikan",
            "sd",
        ),
        (
            json!({ "PDDK_AKH": "AKADEMI/ DIPLOMA III/S. MUDA" }),
            "pendidikan",
            "d3",
        ),
        (
            json!({ "PDDK_AKH": "Diploma IV/Strata I" }),
            "pendidikan",
            "s1_d4",
        ),
        (json!({ "GOL_DARAH": "ab+" }), "golongan_darah", "AB+"),
        (
            json!({ "GOL_DARAH": "TIDAK TAHU" }),
            "golongan_darah",
            "tidak_tahu",
        ),
        (
            json!({ "STAT_HBKEL": "ORANG TUA" }),
            "hubungan_keluarga",
            "orang_tua",
        ),
    ];
    for (change, field, want) in cases {
        let rec = with(change.clone(), &[]);
        let got = serde_json::to_value(penduduk(&rec).unwrap()).unwrap();
        assert_eq!(got[field], want, "{change}");
    }
}

#[test]
fn unmappable_values_are_errors_naming_every_native_field() {
    let rec = with(
        json!({
            "STAT_KWN": "NIKAH SIRI", "TGL_LHR": "31-02-1985", "NO_KK": "3273A12001150003",
            "GOL_DRH": "Z", "NO_KEL": 9999, "NO_RT": 12345
        }),
        &["STATUS_KAWIN", "GOL_DARAH"],
    );
    let e = penduduk(&rec).unwrap_err();
    let mut fields = e.fields();
    fields.sort();
    assert_eq!(
        fields,
        ["GOL_DRH", "NO_KEL", "NO_KK", "NO_RT", "STAT_KWN", "TGL_LHR"],
        "{e}"
    );
    // The field is named as this export spelled it, and no ID digits leak into the message.
    assert!(!e.to_string().contains("3273"), "{e}");
    let e = penduduk(&with(json!({}), &["NIK"])).unwrap_err();
    assert_eq!(e.fields(), ["NIK"]);
    let e = penduduk(&with(json!({ "NIK": "3273013208850001" }), &[])).unwrap_err();
    assert_eq!(e.fields(), ["NIK"], "day 32 is no day: {e}");
}

#[test]
fn every_seeded_resident_maps_and_is_a_valid_get_answer() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SiakSimulator::open_seeded(&dir.path().join("siak.db")).unwrap();
    let reg = registry();
    let schema = reg.schemas.get("siak.penduduk.get.response.v1").unwrap();
    for nik in [
        seed::BUDI,
        seed::SITI,
        seed::AHMAD,
        seed::DEWI_1,
        seed::DEWI_2,
    ] {
        let rec = sim.cari_nik(nik).unwrap().expect("seeded");
        let p = penduduk(&rec).unwrap();
        assert_eq!(p.nik, nik);
        let mut v = serde_json::to_value(&p).unwrap();
        v["status"] = json!("aktif");
        let verdict = schema.validate(&v);
        assert!(verdict.errors.is_empty(), "{nik}: {:?}", verdict.errors);
    }
}

#[test]
fn every_schema_has_an_example_and_every_example_validates() {
    let reg = registry();
    let dir = repo().join("schemas/examples");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let id = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let schema = reg
            .schemas
            .get(&id)
            .unwrap_or_else(|| panic!("example {id} has no schema"));
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let verdict = schema.validate(&doc);
        assert!(verdict.errors.is_empty(), "{id}: {:?}", verdict.errors);
        seen.push(id);
    }
    for s in reg.schemas.iter() {
        assert!(seen.contains(&s.id), "schema {} has no example", s.id);
    }
    // And an example with a broken field is refused, so the check above means something.
    let bad = json!({ "nik": "3204054501900003", "layanan": "paspor" });
    let v = reg
        .schemas
        .get("layanan.permohonan.v1")
        .unwrap()
        .validate(&bad);
    assert!(!v.errors.is_empty());
}

fn check_agency(a: &Declared, reg: &Registry) {
    let me = MemberId::parse(a.member).unwrap();
    assert!(reg.member(&me).is_some(), "{me} is not a member");
    for t in a.produces {
        let def = reg
            .type_def(t)
            .unwrap_or_else(|| panic!("{t} not in the registry"));
        assert!(def.producers.allows(&me), "{me} may not produce {t}");
    }
    for t in a.consumes {
        let def = reg
            .type_def(t)
            .unwrap_or_else(|| panic!("{t} not in the registry"));
        let ok = match def.kind {
            Kind::Query => def.provider.as_ref() == Some(&me),
            Kind::Event => def.consumers.allows(&me),
            Kind::Message => def.provider.as_ref() == Some(&me) || def.consumers.allows(&me),
        };
        assert!(ok, "{me} does not receive {t}");
    }
}

#[test]
fn the_registry_agrees_with_every_adapters_declared_types() {
    let reg = registry();
    for a in &adapters::AGENCIES {
        check_agency(a, &reg);
    }
}

#[test]
fn the_device_simulator_exports_padded_crlf_attlog_that_parses_back() {
    let dir = tempfile::tempdir().unwrap();
    let dev = EabsenSimulator::open(&dir.path().join("dev.db"), "1", "CQZ7231160002").unwrap();
    dev.scan("1", "2026-11-23 07:01:02", 0, 1).unwrap();
    dev.scan("105", "2026-11-23 07:45:10", 0, 15).unwrap();
    let text = dev.export_attlog().unwrap();
    assert!(
        text.starts_with("        1\t2026-11-23 07:01:02\t1\t0\t1\t0\r\n"),
        "{text:?}"
    );
    assert_eq!(text.matches("\r\n").count(), 2);
    let (ok, bad) = attlog::parse_attlog(&text);
    assert!(bad.is_empty());
    assert_eq!(
        ok.iter().map(|p| p.pin.as_str()).collect::<Vec<_>>(),
        ["1", "105"]
    );
    let push = dev.next_push().unwrap();
    let (ok2, bad) = attlog::parse_push(&dev.serial, &push);
    assert!(bad.is_empty());
    assert_eq!(ok2.len(), 2);
    assert_eq!((ok2[1].status, ok2[1].verify), (0, 15));
    assert_eq!(ok2[1].local, ok[1].local);
    // A pushed punch is not pushed again.
    assert!(dev.next_push().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmappable_siak_change_is_set_aside_with_the_field_not_dropped() {
    use std::sync::Arc;

    use adapters::link::Link;
    use adapters::siak::SiakConfig;
    use adapters::trace::Trace;

    let dir = tempfile::tempdir().unwrap();
    // Real certificates, but no bus: the link is down, which the outbox must absorb.
    let reg = registry();
    let members: Vec<MemberId> = reg.members().map(|m| m.id.clone()).collect();
    bus::pki::DevCa::init(&dir.path().join("certs"), &reg.instance, &members, false).unwrap();
    let sim = Arc::new(SiakSimulator::open_seeded(&dir.path().join("siak.db")).unwrap());
    let link = Link::open(
        "https://127.0.0.1:9",
        &dir.path().join("certs"),
        SiakAdapter::MEMBER,
        &dir.path().join("outbox.db"),
        Trace::quiet(),
    )
    .unwrap();
    let siak = SiakAdapter::new(SiakConfig::default(), sim.clone(), link);
    sim.catat_kematian(seed::AHMAD, "31-02-2026", "RSUD", "AKTA-1")
        .unwrap();
    sim.catat_kematian(seed::SITI, "20-11-2026", "RSUD", "AKTA-2")
        .unwrap();
    assert_eq!(adapters::runner::publish(&siak).await.unwrap(), 1);
    let h = siak.link.outbox.health().unwrap();
    assert_eq!((h.backlog, h.rejected), (1, 1), "{h:?}");
    let set_aside = siak.link.outbox.rejected().unwrap();
    assert_eq!(set_aside[0].0, "siak.log/1");
    assert!(set_aside[0].1.contains("TGL_MATI"), "{set_aside:?}");
    // Reading the log again queues nothing new and sets nothing aside twice.
    assert_eq!(adapters::runner::publish(&siak).await.unwrap(), 0);
    assert_eq!(siak.link.outbox.health().unwrap().rejected, 1);
}
