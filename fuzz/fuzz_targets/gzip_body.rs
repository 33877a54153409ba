//! The bus's gzip request path, end to end through the real router and middleware:
//! `POST /v1/messages` with `Content-Encoding: gzip` and arbitrary bytes as the body (a
//! corrupt stream, a truncated one, a bomb, a valid gzip of garbage or of real events).
//!
//! The first input byte chooses how the rest is sent:
//! - bit 0: 1 = gzip the rest here (a valid stream of arbitrary content), 0 = send the rest
//!   as is while claiming gzip (a corrupt or hand-made stream);
//! - bit 1: 1 = a single event (`application/cloudevents+json`), 0 = a batch
//!   (`application/cloudevents-batch+json`);
//! - bit 2: 1 = declare `Content-Length`, 0 = leave it out (length unknown).
//!
//! Whatever comes in, the answer must not be a 5xx other than 503 (overloaded, store
//! unavailable) or a valid query's documented 504 `query-timeout`, and every non-2xx answer
//! must be `application/problem+json`.

#![no_main]

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bus::api::{ApiConfig, AppState, app};
use bus::identity::{MemberId, Peer};
use bus::registry::Registry;
use bus::store::{SqliteStore, StoreOptions};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

struct Bus {
    rt: tokio::runtime::Runtime,
    app: Router,
    peer: Peer,
    _dir: tempfile::TempDir,
}

/// The real app over a SQLite store in a scratch directory, built once (as `server::prepare`
/// does, without TLS: the peer is attached as a request extension, as the listener would).
static BUS: LazyLock<Bus> = LazyLock::new(|| {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let registry =
        Arc::new(Registry::load(&repo.join("registry.toml")).unwrap_or_else(|e| panic!("{e}")));
    // Under fuzz/target so the store a run leaves behind (statics are never dropped) goes
    // with `cargo clean`.
    let scratch = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/scratch");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let dir = tempfile::tempdir_in(&scratch).expect("temp dir");
    let store = Arc::new(
        SqliteStore::open(StoreOptions::new(dir.path().join("simpul.db"))).expect("store"),
    );
    // The defaults, except that a query nobody answers times out at once instead of after
    // 30 s: inputs that are valid queries are common (mutations of the seeds) and would
    // otherwise each hold the fuzzer for the whole query timeout.
    let config = ApiConfig {
        query_timeout: Duration::from_millis(10),
        ..ApiConfig::default()
    };
    let state = AppState::new(registry, store, config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    Bus {
        rt,
        app: app(state),
        peer: Peer {
            member: MemberId::parse("COM/8120000123456").expect("member id"),
            remote: SocketAddr::from(([127, 0, 0, 1], 40000)),
        },
        _dir: dir,
    }
});

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip to memory");
    e.finish().expect("gzip to memory")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let body = if mode & 1 == 1 {
        gzip(rest)
    } else {
        rest.to_vec()
    };
    let content_type = if mode & 2 == 2 {
        "application/cloudevents+json"
    } else {
        "application/cloudevents-batch+json"
    };
    let bus = &*BUS;
    let mut req = Request::builder()
        .method("POST")
        .uri("/v1/messages")
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_ENCODING, "gzip");
    if mode & 4 == 4 {
        req = req.header(header::CONTENT_LENGTH, body.len());
    }
    let mut req = req.body(Body::from(body)).expect("request");
    req.extensions_mut().insert(bus.peer.clone());

    let (status, content_type, text) = bus.rt.block_on(async {
        let resp = bus.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("<unreadable body: {e}>"));
        (status, ct, body)
    });
    // 503: overloaded or store unavailable (with Retry-After). 504: a valid query that the
    // provider (nobody, here) did not answer in time, documented as `query-timeout`.
    let query_timeout = status == StatusCode::GATEWAY_TIMEOUT
        && text.contains("\"urn:simpul:problem:query-timeout\"");
    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE || query_timeout,
        "{status} for mode {mode:#04x}: {text}"
    );
    if !status.is_success() {
        assert!(
            content_type
                .as_deref()
                .is_some_and(|ct| ct.starts_with("application/problem+json")),
            "{status} answered with content-type {content_type:?}: {text}"
        );
    }
});
