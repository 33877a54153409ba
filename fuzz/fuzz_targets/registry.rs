//! Arbitrary text as a registry: TOML parse, then the whole validation (instance, trust files,
//! schemas dir, members, rates, types, ACLs, grants). An operator's typo must give errors,
//! never a panic.
//!
//! Relative paths resolve against a scratch directory made once, holding a few of the
//! repository's schemas (compiling all of them on every input would make the target 10x
//! slower for no extra code reached) and empty trust files `ca.pem` and `crl.pem`.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use bus::identity::MemberId;
use bus::registry::Registry;
use libfuzzer_sys::fuzz_target;

/// The schemas the seed registries name: one per kind (event, message, query and reply).
const SCHEMAS: [&str; 5] = [
    "siak.penduduk.meninggal.v1",
    "sipanse.izin.permohonan.v1",
    "sipanse.izin.status.v1",
    "siak.penduduk.verify.request.v1",
    "siak.penduduk.verify.response.v1",
];

static BASE: LazyLock<(tempfile::TempDir, PathBuf)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::create_dir(dir.path().join("schemas")).expect("schemas dir");
    for s in SCHEMAS {
        let name = format!("{s}.json");
        std::fs::copy(
            repo.join("schemas").join(&name),
            dir.path().join("schemas").join(&name),
        )
        .expect("copy schema");
    }
    std::fs::write(dir.path().join("ca.pem"), "").expect("ca.pem");
    std::fs::write(dir.path().join("crl.pem"), "").expect("crl.pem");
    let path = dir.path().to_owned();
    (dir, path)
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Registry::parse(text, &BASE.1) {
        Ok(reg) => {
            // Walk what the bus reads at start-up and per request.
            for m in reg.members() {
                let _ = reg.member(&m.id);
                let _ = m.id.to_spiffe_uri(&reg.instance);
                let _ = m.id.file_stem();
            }
            let probe = MemberId::parse("COM/8120000123456").expect("member id");
            for t in reg.types() {
                let _ = reg.type_def(&t.name);
                let _ = t.producers.allows(&probe) || t.consumers.allows(&probe);
                let _ = t.matches_schema(&t.schema.id);
            }
        }
        Err(errors) => assert!(!errors.is_empty(), "refused with no reason"),
    }
});
