//! The HTTP API. `app()` builds the router without a socket, so tests and the server share it.
//!
//! Handlers read the caller from [`Peer`], which the TLS listener sets once per connection
//! from the verified certificate; nothing in a header or body can change who the caller is.

mod feeds;
mod inbox;
mod messages;
mod queries;
mod schemas;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Notify, Semaphore, watch};

use crate::error::ApiError;
use crate::identity::MemberId;
use crate::registry::Registry;
use crate::store::Store;

pub use queries::PendingQueries;

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
        }
    }
}

/// Wakes long-polling consumers when something lands in their inbox.
#[derive(Default)]
pub struct InboxSignals(Mutex<HashMap<MemberId, Arc<Notify>>>);

impl InboxSignals {
    pub fn get(&self, m: &MemberId) -> Arc<Notify> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(m.clone()).or_default().clone()
    }

    /// One new message wakes one waiting poll, not all of them: a provider with four pollers
    /// would otherwise have four of them race to lease one query, three for nothing. A poll
    /// that is woken but returns with other messages passes its wake-up on (tokio's `Notify`).
    pub fn wake(&self, m: &MemberId) {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get(m) {
            n.notify_one();
        }
    }
}

pub struct AppState {
    pub registry: Arc<Registry>,
    pub store: Arc<dyn Store>,
    pub config: ApiConfig,
    pub signals: InboxSignals,
    pub queries: PendingQueries,
    pub inflight: Semaphore,
    /// Set when the server starts shutting down, so long polls answer at once instead of
    /// holding the shutdown up for their whole wait.
    pub closing: watch::Sender<bool>,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, store: Arc<dyn Store>, config: ApiConfig) -> Arc<Self> {
        Arc::new(AppState {
            inflight: Semaphore::new(config.max_inflight),
            registry,
            store,
            config,
            signals: InboxSignals::default(),
            queries: PendingQueries::default(),
            closing: watch::Sender::new(false),
        })
    }
}

pub type SharedState = Arc<AppState>;

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
        .route("/v1/schemas/{id}", get(schemas::one))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Offices on slow links send gzip batch envelopes (`Content-Encoding: gzip`). The
        // body limit still applies to the decompressed bytes, so a zip bomb gets 413. Other
        // encodings pass through undecoded and get the usual problem+json 400 (not JSON).
        .layer(
            tower_http::decompression::RequestDecompressionLayer::new()
                .pass_through_unaccepted(true),
        )
        .with_state(state)
}

async fn ready(State(st): State<SharedState>) -> Response {
    if st.store.ready().await {
        (StatusCode::OK, "ready").into_response()
    } else {
        ApiError::StoreUnavailable {
            detail: "store is not accepting writes".into(),
            retry_after: Duration::from_secs(1),
        }
        .into_response()
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
