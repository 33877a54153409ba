//! Arbitrary bytes as a CloudEvent: JSON parse, then the envelope checks, then every check the
//! bus runs before storing (type, producer ACL, `dataschema`, recipients, schema and formats)
//! against the repository's own registry. None of it may panic: bad input gets a problem.

#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use axum::response::IntoResponse;
use bus::core::ingest;
use bus::envelope::Envelope;
use bus::error::ApiError;
use bus::identity::MemberId;
use bus::registry::Registry;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// `registry.toml` at the repository root, with its `schemas/`, loaded once.
static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../registry.toml");
    Registry::load(&path).unwrap_or_else(|e| panic!("{e}"))
});

/// A business allowed to send permit applications (`sipanse.izin.permohonan`, `COM/*`).
static MEMBER: LazyLock<MemberId> =
    LazyLock::new(|| MemberId::parse("COM/8120000123456").expect("member id"));

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let reg = &*REGISTRY;
    let member = &*MEMBER;
    let _ = Envelope::parse(value.clone(), Some(member), &reg.instance);
    let _ = Envelope::parse(value.clone(), None, "simpul.dev");
    // As the sender, and offline as `simpul check` does (no ACL). A refusal becomes the
    // problem+json answer the sender would get (pointers escaped, digit runs masked).
    if let Err(refusal) = ingest::check(reg, value.clone(), Some(member)) {
        let _ = ApiError::from(refusal).into_response();
    }
    let _ = ingest::check(reg, value.clone(), None);
    // A batch envelope is an array of events.
    if value.is_array() {
        if let Err(refusal) = ingest::prepare_batch(reg, value, member) {
            let _ = ApiError::from(refusal).into_response();
        }
    }
});
