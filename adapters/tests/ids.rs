//! Derived event ids are keyed: every adapter derives them under the id key kept next to its
//! outbox, so they are stable across restarts (and a fresh outbox in the same state directory)
//! but cannot be recomputed from the guessable natural key alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use adapters::Agency;
use adapters::IdKey;
use adapters::eabsen::simulator::PEGAWAI;
use adapters::eabsen::{EabsenAdapter, EabsenConfig, attlog};
use adapters::link::Link;
use adapters::siak::simulator::{SiakSimulator, seed};
use adapters::siak::{SiakAdapter, SiakConfig};
use adapters::sipanse::{SipanseAdapter, StatusChange, notice};
use adapters::trace::Trace;
use bus::identity::MemberId;
use bus::registry::Registry;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Development certificates for every member, outside the adapters' state directories.
fn certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../registry.toml"))
        .expect("registry");
    let members: Vec<MemberId> = reg.members().map(|m| m.id.clone()).collect();
    bus::pki::DevCa::init(dir.path(), &reg.instance, &members, false).unwrap();
    dir
}

/// A link whose bus is down (nothing here needs it), with its outbox at `outbox`.
fn link(certs: &Path, member: &str, outbox: &Path) -> Link {
    Link::open("https://127.0.0.1:9", certs, member, outbox, Trace::quiet()).unwrap()
}

/// The derivation used before ids were keyed: a plain SHA-256 of the natural key.
fn unkeyed(parts: &[&str]) -> Uuid {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.finalize()[..16]);
    Uuid::new_v8(b)
}

fn id_of(ev: &Value) -> Uuid {
    Uuid::parse_str(ev["id"].as_str().unwrap()).unwrap()
}

const EXPORT: &str = "        1\t2026-11-23 07:01:02\t1\t0\t1\t0\r\n";

fn punch_id(certs: &Path, outbox: &Path) -> Uuid {
    let ea = EabsenAdapter::new(
        EabsenConfig::default(),
        link(certs, EabsenAdapter::MEMBER, outbox),
    )
    .unwrap();
    for (pin, nip, unit, _) in PEGAWAI {
        ea.set_pegawai(pin, nip, unit).unwrap();
    }
    let (punches, bad) = attlog::parse_attlog(EXPORT);
    assert!(bad.is_empty());
    id_of(&ea.map_punch(&punches[0]).unwrap())
}

#[test]
fn e_absen_ids_are_stable_in_one_state_directory_and_differ_in_another() {
    let certs = certs();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let id = punch_id(certs.path(), &a.path().join("eabsen.db"));
    // A restart on the same outbox, and a reinstall with a fresh outbox next to the key.
    assert_eq!(punch_id(certs.path(), &a.path().join("eabsen.db")), id);
    assert_eq!(
        punch_id(certs.path(), &a.path().join("eabsen-reinstalled.db")),
        id
    );
    // Another adapter with its own state directory, hence its own key.
    assert_ne!(punch_id(certs.path(), &b.path().join("eabsen.db")), id);
    // Nobody can recompute the id from the NIP and the punch time.
    let natural = [
        "eabsen.kehadiran",
        "197803122005011002",
        "2026-11-23T07:01:02+07:00",
    ];
    assert_ne!(id, unkeyed(&natural));
    let key = IdKey::load_or_create(&a.path().join("GOV_bkpsdm_eabsen.idkey")).unwrap();
    assert_eq!(key.derive(&natural), id, "the id is the key's derivation");
    assert_eq!(id.get_version_num(), 8);
}

#[cfg(unix)]
#[test]
fn the_key_file_is_created_next_to_the_outbox_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let certs = certs();
    let state = tempfile::tempdir().unwrap();
    let key: PathBuf = state.path().join("GOV_dukcapil.idkey");
    assert!(!key.exists());
    let l = link(
        certs.path(),
        SiakAdapter::MEMBER,
        &state.path().join("siak.db"),
    );
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
    assert_eq!(l.ids, IdKey::load_or_create(&key).unwrap());
}

#[test]
fn a_damaged_key_file_stops_the_link_instead_of_changing_every_id() {
    let certs = certs();
    let state = tempfile::tempdir().unwrap();
    let key = state.path().join("GOV_dukcapil.idkey");
    std::fs::write(&key, b"0123456789abcdef").unwrap();
    let e = Link::open(
        "https://127.0.0.1:9",
        certs.path(),
        SiakAdapter::MEMBER,
        &state.path().join("siak.db"),
        Trace::quiet(),
    )
    .err()
    .expect("a 16-byte key is refused");
    let msg = e.to_string();
    assert!(msg.contains(&key.display().to_string()), "{msg}");
    assert!(msg.contains("16 bytes"), "{msg}");
    assert_eq!(std::fs::read(&key).unwrap(), b"0123456789abcdef");
}

#[test]
fn siak_and_sipanse_ids_are_keyed_too() {
    let certs = certs();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sim = Arc::new(SiakSimulator::open_seeded(&a.path().join("sim-siak.db")).unwrap());
    sim.catat_kematian(seed::SITI, "20-11-2026", "RSUD", "AKTA-2")
        .unwrap();
    let entry = sim.log_perubahan(0, 10).unwrap().remove(0);
    // Mapping a death looks the person up in SIAK, which is async (a network call in production).
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let siak_id = |dir: &Path, outbox: &str| {
        let s = SiakAdapter::new(
            SiakConfig::default(),
            sim.clone(),
            link(certs.path(), SiakAdapter::MEMBER, &dir.join(outbox)),
        );
        id_of(&rt.block_on(s.map_change(&entry)).unwrap())
    };
    let id = siak_id(a.path(), "siak.db");
    assert_eq!(siak_id(a.path(), "siak.db"), id);
    assert_eq!(siak_id(a.path(), "siak-2.db"), id);
    assert_ne!(siak_id(b.path(), "siak.db"), id);
    let seq = entry.seq.to_string();
    assert_ne!(
        id,
        unkeyed(&[SiakAdapter::MEMBER, "log", &seq, &entry.jenis])
    );

    let change = StatusChange {
        seq: 3,
        no_registrasi: "1".into(),
        status: "VERIFIKASI".into(),
        catatan: String::new(),
        referensi: format!("{}|{}", "COM/8120000123456", Uuid::now_v7()),
        no_izin: None,
    };
    let sipanse_id = |dir: &Path| {
        let l = link(
            certs.path(),
            SipanseAdapter::MEMBER,
            &dir.join("sipanse.db"),
        );
        id_of(
            &notice(&l.ids, SipanseAdapter::MEMBER, &change)
                .unwrap()
                .unwrap(),
        )
    };
    let id = sipanse_id(a.path());
    assert_eq!(sipanse_id(a.path()), id);
    assert_ne!(sipanse_id(b.path()), id);
    assert_ne!(id, unkeyed(&[SipanseAdapter::MEMBER, "status", "3"]));
}

/// A punch sent before ids were keyed (kept locally under its old, unkeyed id) is not sent again
/// under its new id when the same export is imported after the upgrade, and the daily recap
/// still counts it once.
#[test]
fn a_punch_kept_under_its_pre_upgrade_id_is_not_sent_again() {
    let certs = certs();
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("eabsen.db");
    let ea = EabsenAdapter::new(
        EabsenConfig::default(),
        link(certs.path(), EabsenAdapter::MEMBER, &outbox),
    )
    .unwrap();
    for (pin, nip, unit, _) in PEGAWAI {
        ea.set_pegawai(pin, nip, unit).unwrap();
    }
    let (punches, _) = attlog::parse_attlog(EXPORT);
    let ev = ea.map_punch(&punches[0]).unwrap();
    let (nip, waktu) = (
        ev["data"]["nip"].as_str().unwrap(),
        ev["data"]["waktu"].as_str().unwrap(),
    );
    let old = unkeyed(&["eabsen.kehadiran", nip, waktu]);
    ea.link
        .outbox
        .conn()
        .execute(
            "INSERT INTO kehadiran (id, nip, waktu, tanggal, jam, sumber) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![old.to_string(), nip, waktu, "2026-11-23", "07:01:02", "mesin"],
        )
        .unwrap();
    let report = ea.import_attlog(EXPORT).unwrap();
    assert_eq!((report.queued, report.repeats), (0, 1));
    let rows: i64 = ea
        .link
        .outbox
        .conn()
        .query_row("SELECT COUNT(*) FROM kehadiran", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
    // A punch not seen before still goes out.
    let later = EXPORT.replace("07:01:02", "16:30:00");
    assert_eq!(ea.import_attlog(&later).unwrap().queued, 1);
}
