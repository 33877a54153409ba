//! Inputs the fuzz targets in `fuzz/` found to break the bus, replayed in the normal suite
//! (`fuzz/regressions/<target>/*`), and the gzip seeds through the real app.

use bus::formats::{Format, mask_digit_runs};
use serde_json::Value;

/// The inputs of a fuzz target that the suite replays: its seeds (`fuzz/seeds/<target>/`) and
/// every input a fuzzing run found to break the bus (`fuzz/regressions/<target>/`), fed the
/// way the target feeds them (see `fuzz/fuzz_targets/`).
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for e in entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
        {
            let name = format!("{kind}/{}", e.file_name().to_string_lossy());
            out.push((name, std::fs::read(e.path()).expect("readable")));
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no inputs for fuzz target {target}");
    out
}

#[test]
fn fuzz_regressions_formats() {
    for (name, bytes) in inputs("formats") {
        let s = String::from_utf8_lossy(&bytes);
        for f in Format::ALL {
            let _ = f.check(&s);
        }
        let _ = mask_digit_runs(&s);
        eprintln!("formats/{name}: ok");
    }
}

#[test]
fn fuzz_regressions_envelope() {
    let member = bus::identity::MemberId::parse("COM/8120000123456").unwrap();
    for (name, bytes) in inputs("envelope") {
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            let _ = bus::envelope::Envelope::parse(v, Some(&member), "simpul.dev");
        }
        eprintln!("envelope/{name}: ok");
    }
}

#[test]
fn fuzz_regressions_registry() {
    let base = tempfile::tempdir().expect("temp dir");
    for (name, bytes) in inputs("registry") {
        if let Ok(text) = std::str::from_utf8(&bytes)
            && let Err(errors) = bus::registry::Registry::parse(text, base.path())
        {
            assert!(
                !errors.is_empty(),
                "registry/{name}: refused with no reason"
            );
        }
        eprintln!("registry/{name}: ok");
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(bytes).expect("in memory");
    z.finish().expect("in memory")
}

/// The `gzip_body` target's inputs through the real app, with the target's assertions: never a
/// 5xx but 503 (or the documented 504 of a query nobody answers), every error problem+json,
/// the gzip bomb 413, the valid permits 202.
#[test]
fn fuzz_regressions_gzip_body() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt as _;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let registry = std::sync::Arc::new(
        bus::registry::Registry::load(&root.join("registry.toml")).expect("registry"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let store = std::sync::Arc::new(
        bus::store::SqliteStore::open(bus::store::StoreOptions::new(dir.path().join("s.db")))
            .expect("store"),
    );
    let config = bus::api::ApiConfig {
        query_timeout: std::time::Duration::from_millis(10),
        ..bus::api::ApiConfig::default()
    };
    bus::pki::DevCa::init(&dir.path().join("certs"), "simpul.test", &[], false).expect("pki");
    let signer = bus::trust::Signer::load(
        &dir.path().join("certs/server.pem"),
        &dir.path().join("certs/server.key"),
    )
    .expect("signer");
    let keys = bus::core::node::Keys {
        signer: std::sync::Arc::new(bus::trust::SignerCell::new(
            signer,
            &bus::trust::KeySet::default(),
        )),
        subjects: std::sync::Arc::new(
            bus::subjects::SubjectKey::load_or_create(&dir.path().join("certs")).expect("key"),
        ),
    };
    let app = bus::api::app(bus::api::AppState::new(registry, store, config, keys));
    let peer = bus::identity::Peer {
        member: bus::identity::MemberId::parse("COM/8120000123456").unwrap(),
        remote: std::net::SocketAddr::from(([127, 0, 0, 1], 40000)),
        cert: std::sync::Arc::from(&[][..]),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, data) in inputs("gzip_body") {
        let Some((&mode, rest)) = data.split_first() else {
            continue;
        };
        let body = if mode & 1 == 1 {
            gzip(rest)
        } else {
            rest.to_vec()
        };
        let ct = if mode & 2 == 2 {
            "application/cloudevents+json"
        } else {
            "application/cloudevents-batch+json"
        };
        let mut req = Request::post("/v1/messages")
            .header(header::CONTENT_TYPE, ct)
            .header(header::CONTENT_ENCODING, "gzip");
        if mode & 4 == 4 {
            req = req.header(header::CONTENT_LENGTH, body.len());
        }
        let mut req = req.body(Body::from(body)).unwrap();
        req.extensions_mut().insert(peer.clone());
        let (status, problem, text) = rt.block_on(async {
            let resp = app.clone().oneshot(req).await.unwrap();
            let problem = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, problem, String::from_utf8_lossy(&body).into_owned())
        });
        let query_timeout = status == StatusCode::GATEWAY_TIMEOUT
            && text.contains("\"urn:simpul:problem:query-timeout\"");
        assert!(
            !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE || query_timeout,
            "{name}: {status} {text}"
        );
        assert!(status.is_success() || problem, "{name}: {status} {text}");
        if name.contains("bomb") {
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{name}: {text}");
        }
        // The permit seeds are valid; the no-length batch also holds a death notice, which a
        // business may not produce (403).
        if name.contains("gzip-here") || name == "seeds/batch-pregzipped" {
            assert_eq!(status, StatusCode::ACCEPTED, "{name}: {text}");
        }
        eprintln!("gzip_body/{name}: {status}");
    }
}
