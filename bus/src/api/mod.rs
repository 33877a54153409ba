//! The HTTP API. `app()` builds the router without a socket, so tests and the server share it.
//!
//! Handlers read the caller from [`Peer`], which the TLS listener sets once per connection
//! from the verified certificate; nothing in a header or body can change who the caller is.

mod admin;
mod body;
mod console;
mod feeds;
mod inbox;
mod limits;
mod messages;
pub mod openapi;
mod queries;
mod schemas;
mod subjects;

use openapi::ProblemResponse;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use tokio::sync::{Semaphore, watch};

use crate::core::limits::{RateLimiter, Slot, Slots};
use crate::core::node::{Keys, Node};
use crate::error::ApiError;
use crate::identity::{MemberId, Peer};
use crate::problem::FieldError;
use crate::registry::Registry;
use crate::store::Store;

/// Limits and timings of the API; every one is a `simpul serve` flag.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub max_body: usize,
    pub query_timeout: Duration,
    pub max_attempts: u32,
    pub default_lease: Duration,
    pub max_wait: Duration,
    /// Requests that may be writing to the store at once before the bus answers 503.
    pub max_inflight: usize,
    /// Bytes of request bodies (decompressed) held in memory at once, across all requests.
    pub max_buffered: usize,
    /// Time for a whole request body to arrive.
    pub body_timeout: Duration,
    /// Long polls one member may have waiting at once.
    pub max_long_polls: usize,
    /// Queries one member may have waiting for their reply at once.
    pub max_queries: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body: 1 << 20,
            query_timeout: Duration::from_secs(30),
            max_attempts: 5,
            default_lease: Duration::from_secs(30),
            max_wait: Duration::from_secs(30),
            max_inflight: 4096,
            max_buffered: 256 << 20,
            body_timeout: Duration::from_secs(30),
            max_long_polls: 8,
            max_queries: 64,
        }
    }
}

/// What one member may hold or spend at once on this node.
pub struct MemberLimits {
    pub rate: RateLimiter,
    pub polls: Slots,
    pub queries: Slots,
}

impl MemberLimits {
    fn busy(what: &str, slots: &Slots, m: &MemberId) -> ApiError {
        ApiError::Busy(format!(
            "{m} already has {} {what} open (the most allowed at once)",
            slots.cap()
        ))
    }

    /// A slot for a long poll (429 when the member has `--max-long-polls` waiting).
    pub fn poll(&self, m: &MemberId) -> Result<Slot<'_>, ApiError> {
        self.polls
            .take(m)
            .ok_or_else(|| Self::busy("long polls", &self.polls, m))
    }

    /// A slot for a query awaiting its reply (429 over `--max-queries`).
    pub fn query(&self, m: &MemberId) -> Result<Slot<'_>, ApiError> {
        self.queries
            .take(m)
            .ok_or_else(|| Self::busy("queries", &self.queries, m))
    }
}

/// A readiness condition besides the store's (say, a CRL that went stale): `Err` says why.
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

pub struct AppState {
    /// The registry, the store and this node's waiters, with the operations on them.
    pub node: Node,
    pub config: ApiConfig,
    pub inflight: Semaphore,
    /// Bytes of request bodies that may be buffered at once (`--max-buffered`).
    pub buffered: Semaphore,
    pub limits: MemberLimits,
    readiness: Mutex<Vec<ReadyCheck>>,
    /// Conditions that leave the bus ready but worth naming (a transport that is down while
    /// accepts go on into its outbox).
    degradations: Mutex<Vec<ReadyCheck>>,
    /// Set when the server starts shutting down, so long polls answer at once instead of
    /// holding the shutdown up for their whole wait.
    pub closing: watch::Sender<bool>,
    /// Gauges read when `/metrics` is scraped.
    pub gauges: crate::telemetry::Gauges,
}

impl AppState {
    pub fn new(
        registry: Arc<Registry>,
        store: Arc<dyn Store>,
        config: ApiConfig,
        keys: Keys,
    ) -> Arc<Self> {
        Arc::new(AppState {
            inflight: Semaphore::new(config.max_inflight),
            buffered: Semaphore::new(config.max_buffered.min(Semaphore::MAX_PERMITS)),
            limits: MemberLimits {
                rate: RateLimiter::default(),
                polls: Slots::new(config.max_long_polls),
                queries: Slots::new(config.max_queries),
            },
            readiness: Mutex::default(),
            degradations: Mutex::default(),
            node: Node::new(registry, store, config.query_timeout, keys),
            config,
            closing: watch::Sender::new(false),
            gauges: Default::default(),
        })
    }
}

impl AppState {
    /// Adds a condition `/readyz` checks besides the store.
    pub fn add_readiness(&self, check: ReadyCheck) {
        self.readiness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(check);
    }

    /// Adds a condition `/readyz` names without failing.
    pub fn add_degradation(&self, check: ReadyCheck) {
        self.degradations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(check);
    }

    /// `Ok` with the degradations, if any, when every readiness condition holds; otherwise
    /// every reason.
    pub async fn ready(&self) -> Result<Vec<String>, String> {
        let mut why: Vec<String> = self.node.store.health().await.err().into_iter().collect();
        let failing = |checks: &Mutex<Vec<ReadyCheck>>| -> Vec<String> {
            let checks = checks.lock().unwrap_or_else(|p| p.into_inner()).clone();
            checks.iter().filter_map(|c| c().err()).collect()
        };
        why.extend(failing(&self.readiness));
        if why.is_empty() {
            Ok(failing(&self.degradations))
        } else {
            Err(why.join("; "))
        }
    }
}

pub type SharedState = Arc<AppState>;

/// `GET /v1/receipts/keys`: the certificates that sign receipts and audit checkpoints, as a
/// JWK set with `x5c`, the current one and every one before it.
/// The keys receipts are signed with (a JWK set), for verifying them offline.
#[utoipa::path(get, path = "/v1/receipts/keys", tag = "receipts",
    responses((status = 200, description = "Success", body = Object, content_type = "application/jwk-set+json"), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
async fn receipt_keys(State(st): State<SharedState>) -> Response {
    let jwks = st.node.signer.jwks();
    (
        [(axum::http::header::CONTENT_TYPE, "application/jwk-set+json")],
        axum::Json(jwks.as_ref().clone()),
    )
        .into_response()
}

/// Reads the [`Peer`] the listener attached to the request (`server::http`; `ConnectInfo<Peer>`
/// with `axum::serve`), so a handler never derives identity itself. Without one the request
/// did not come through the mTLS listener: 401.
impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ext = &parts.extensions;
        ext.get::<Peer>()
            .cloned()
            .or_else(|| ext.get::<ConnectInfo<Peer>>().map(|c| c.0.clone()))
            .ok_or(ApiError::Unauthenticated)
    }
}

pub fn app(state: SharedState) -> Router {
    Router::new()
        .route("/v1/messages", post(messages::post))
        .route("/v1/messages/{id}", get(messages::status))
        .route("/v1/queries/{id}/reply", post(queries::reply))
        .route("/v1/inbox", get(inbox::pull))
        .route("/v1/inbox/ack", post(inbox::ack_many))
        .route("/v1/inbox/{id}/ack", post(inbox::ack))
        .route("/v1/inbox/{id}/nack", post(inbox::nack))
        .route("/v1/feeds/{type}", get(feeds::read))
        .route("/v1/schemas", get(schemas::list))
        .route("/v1/receipts/keys", get(receipt_keys))
        .route("/v1/audit/subjects/{id}", get(subjects::report))
        .route("/v1/schemas/{id}", get(schemas::one))
        .route(
            "/v1/admin/dead-letters/{recipient}",
            get(admin::dead_letters),
        )
        .route(
            "/v1/admin/dead-letters/{recipient}/redrive",
            post(admin::redrive),
        )
        .route("/v1/admin/messages/{id}/trace", get(admin::trace))
        .route("/v1/admin/overview", get(console::overview))
        .route("/console", get(console::page))
        .route("/console/{asset}", get(console::file))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(openapi::routes(
            state.node.registry.clone(),
            state.config.max_wait,
        ))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Offices on slow links send gzip batch envelopes (`Content-Encoding: gzip`). The
        // body limit still applies to the decompressed bytes, so a zip bomb gets 413. Other
        // encodings are refused (415) by `admission` before they get here.
        .layer(
            tower_http::decompression::RequestDecompressionLayer::new()
                .pass_through_unaccepted(true),
        )
        .layer(axum::extract::DefaultBodyLimit::max(state.config.max_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::admission,
        ))
        .with_state(state)
}

/// `GET /metrics`: the Prometheus text format, for members the registry names `operator`.
/// Prometheus metrics, for operators.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Success", body = String, content_type = "text/plain"), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
async fn metrics(State(st): State<SharedState>, peer: Peer) -> Result<Response, ApiError> {
    st.node.operator(&peer.member)?;
    Ok(metrics_text(&st).await)
}

/// The exposition, with the store's queue gauges read now; also what the plain
/// `--metrics-listen` listener serves.
pub async fn metrics_text(st: &AppState) -> Response {
    match st.node.store.queues().await {
        Ok(queues) => {
            let now = std::time::SystemTime::now();
            for m in st.node.registry.members() {
                let q = queues.iter().find(|q| q.recipient == m.id);
                let oldest = q
                    .and_then(|q| q.oldest)
                    .and_then(|t| now.duration_since(t).ok())
                    .unwrap_or_default();
                crate::telemetry::queue(&m.id, q.map_or(0, |q| q.depth), oldest);
            }
        }
        Err(e) => tracing::warn!(error = %e, "queue depths not read for /metrics"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render(&st.gauges),
    )
        .into_response()
}

/// Readiness: 200 `ready` (or `ready; degraded: …`), 503 naming every reason.
#[utoipa::path(get, path = "/readyz", tag = "meta",
    responses((status = 200, description = "Success", body = String, content_type = "text/plain"), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
async fn ready(State(st): State<SharedState>) -> Response {
    match st.ready().await {
        Ok(notes) if notes.is_empty() => (StatusCode::OK, "ready").into_response(),
        Ok(notes) => (
            StatusCode::OK,
            format!("ready; degraded: {}", notes.join("; ")),
        )
            .into_response(),
        Err(why) => ApiError::NotReady(why).into_response(),
    }
}

/// Liveness: `ok` while the process answers.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, description = "Success", body = String, content_type = "text/plain"), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
async fn healthz() -> &'static str {
    "ok"
}

/// A point in time as the API writes it (RFC 3339, UTC).
fn rfc3339(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A query-string value outside its documented range: 400 naming the parameter.
fn bad_param(name: &str, detail: &str) -> ApiError {
    ApiError::Malformed {
        detail: format!("query parameter {name}: {detail}"),
        errors: vec![FieldError::new(format!("/query/{name}"), detail)],
    }
}

/// Checks that a query-string value lies in `range`, naming the parameter when it does not.
fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    value: Option<T>,
    range: std::ops::RangeInclusive<T>,
    default: T,
) -> Result<T, ApiError> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(&v) => Ok(v),
        Some(v) => Err(bad_param(
            name,
            &format!("{v} is out of range ({} to {})", range.start(), range.end()),
        )),
    }
}

/// Parses a path id, answering 404 (not 400) for ids that cannot exist.
fn parse_id(id: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(id).map_err(|_| ApiError::NotFound(format!("no message {id}")))
}

/// Maps an extractor rejection (bad query string, bad JSON) to a problem+json 400.
fn malformed(e: impl std::fmt::Display) -> ApiError {
    ApiError::Malformed {
        detail: crate::formats::mask_digit_runs(&e.to_string()),
        errors: Vec::new(),
    }
}

/// A JSON body that could not be read: over `--max-body` is 413, anything else 400.
fn unreadable_json(st: &SharedState) -> impl Fn(JsonRejection) -> ApiError + '_ {
    |e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge {
            limit: st.config.max_body,
        },
        _ => malformed(e),
    }
}
