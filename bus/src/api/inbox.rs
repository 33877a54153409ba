//! Pull delivery: a consumer leases messages from its own inbox, then acks or nacks each.
//!
//! Pull works from behind NAT and over links that drop; a lease that runs out without an ack
//! makes the message visible again, so nothing is lost when a consumer dies mid-way.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::openapi::ProblemResponse;
use super::{SharedState, in_range, malformed, parse_id, unreadable_json};
use crate::error::ApiError;
use crate::identity::Peer;
use crate::problem::FieldError;
use crate::store::{LeaseRequest, Leased, Settled, Ticket};

/// How often a waiting poll looks again for leases that ran out (arrivals wake it at once).
const RECHECK: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullParams {
    /// Most messages to lease (1–100, default 10).
    max: Option<usize>,
    /// Seconds to wait for a message when the inbox is empty (long poll).
    wait: Option<u64>,
    /// Seconds the lease lasts before the message is delivered again.
    lease: Option<u64>,
}

/// A pull's answer, serialised straight from the stored envelopes: through `json!` each one
/// would be parsed into a `Value` and printed again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Pulled {
    messages: Vec<PulledMessage>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PulledMessage {
    attempt: u32,
    /// Names this lease on ack or nack (`?lease=`): once it runs out and the message is leased
    /// again, an ack naming it is refused (409) instead of settling the later lease.
    lease: uuid::Uuid,
    lease_expires_at: String,
    #[schema(value_type = Object)]
    event: Box<serde_json::value::RawValue>,
}

impl From<Leased> for PulledMessage {
    fn from(l: Leased) -> Self {
        PulledMessage {
            attempt: l.attempt,
            lease: l.token,
            lease_expires_at: super::rfc3339(l.expires_at),
            event: l.event,
        }
    }
}

/// Lease messages from the caller's inbox, waiting up to `wait` seconds for one.
#[utoipa::path(get, path = "/v1/inbox", tag = "inbox",
    params(("max" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Default 10"),
           ("wait" = Option<u32>, Query, description = "Seconds to wait when empty (default 0; at most `simpul serve --max-wait`)"),
           ("lease" = Option<u32>, Query, minimum = 1, maximum = 3600, description = "Lease seconds")),
    responses((status = 200, description = "Success", body = Pulled), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn pull(
    State(st): State<SharedState>,
    peer: Peer,
    params: Result<Query<PullParams>, QueryRejection>,
) -> Result<Json<Pulled>, ApiError> {
    let Query(p) = params.map_err(malformed)?;
    let cfg = &st.config;
    let req = LeaseRequest {
        max: in_range("max", p.max, 1..=100, 10)?,
        lease: Duration::from_secs(in_range(
            "lease",
            p.lease,
            1..=3600,
            cfg.default_lease.as_secs(),
        )?),
        max_attempts: cfg.max_attempts,
    };
    let wait = Duration::from_secs(in_range("wait", p.wait, 0..=cfg.max_wait.as_secs(), 0)?);
    // Only a poll that may wait holds a slot: a busy consumer's quick pulls are not capped.
    let _slot = match wait.is_zero() {
        true => None,
        false => Some(st.limits.poll(&peer.member)?),
    };
    let deadline = Instant::now() + wait;
    let signal = st.node.wakeups.inbox(&peer.member);
    let mut closing = st.closing.subscribe();
    let mut parked = false;
    // Woken for a new message: lease at once. Otherwise look with a read first, so an empty
    // inbox costs the writer nothing (a busy consumer pays one read per pull of 100).
    let mut arrived = false;
    loop {
        let notified = signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let messages = if arrived || st.node.store.has_ready(&peer.member).await? {
            st.node.lease(&peer.member, req).await?
        } else {
            Vec::new()
        };
        let now = Instant::now();
        if !messages.is_empty() || now >= deadline || *closing.borrow() {
            let messages = messages.into_iter().map(PulledMessage::from).collect();
            return Ok(Json(Pulled { messages }));
        }
        if !parked {
            tracing::debug!(member = %peer.member, ?wait, "waiting for messages");
            parked = true;
        }
        arrived = tokio::select! {
            _ = notified => true,
            _ = closing.changed() => false,
            _ = tokio::time::sleep(RECHECK.min(deadline - now)) => false,
        };
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseParams {
    /// The lease a pull gave; without it, the current lease is meant.
    lease: Option<String>,
}

/// What `POST /v1/inbox/{id}/ack|nack[?lease=…]` names.
fn ticket(
    id: &str,
    params: Result<Query<LeaseParams>, QueryRejection>,
) -> Result<Ticket, ApiError> {
    let id = parse_id(id)?;
    let Query(p) = params.map_err(malformed)?;
    let lease = match p.lease.as_deref().map(uuid::Uuid::parse_str) {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(_)) => return Err(bad_lease()),
    };
    Ok(Ticket { id, lease })
}

fn bad_lease() -> ApiError {
    super::bad_param("lease", "must be the lease a pull gave (a UUID)")
}

#[utoipa::path(post, path = "/v1/inbox/{id}/ack", tag = "inbox",
    params(("id" = String, Path), ("lease" = Option<String>, Query, description = "The lease a pull gave")),
    responses((status = 200, description = "Success", body = super::openapi::SettledDoc), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn ack(
    State(st): State<SharedState>,
    peer: Peer,
    Path(id): Path<String>,
    params: Result<Query<LeaseParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let t = ticket(&id, params)?;
    let outcome = st.node.ack(&peer.member, vec![t]).await?;
    settled(outcome[0], t.id, &peer, "acked")
}

/// Most ids in one `POST /v1/inbox/ack`: ten pulls of the largest size.
const MAX_ACKS: usize = 1000;

#[derive(Debug, Deserialize)]
pub struct AckBody {
    /// Taken as JSON values so that every id that is not one can be named.
    ids: Vec<Value>,
}

/// `POST /v1/inbox/ack`: acks every id of a pull in one request and one commit, so a consumer
/// on a slow link does not pay a round trip per message. Each id gets its own answer, the same
/// as `POST /v1/inbox/{id}/ack` would give: a state, or a problem (not found, conflict).
#[utoipa::path(post, path = "/v1/inbox/ack", tag = "inbox",
    request_body = super::openapi::AckRequestDoc,
    responses((status = 200, description = "Success", body = super::openapi::AckResultsDoc), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn ack_many(
    State(st): State<SharedState>,
    peer: Peer,
    body: Result<Json<AckBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(unreadable_json(&st))?;
    let tickets = parse_tickets(&body.ids)?;
    let outcomes = st.node.ack(&peer.member, tickets.clone()).await?;
    let results: Vec<Value> = tickets
        .into_iter()
        .zip(outcomes)
        .map(|(t, o)| match settled(o, t.id, &peer, "acked") {
            Ok(Json(v)) => v,
            Err(e) => json!({ "id": t.id, "problem": e.problem() }),
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

/// The messages of a batch ack, each an id or `{"id": …, "lease": …}`, or a problem naming
/// every entry that is neither.
fn parse_tickets(values: &[Value]) -> Result<Vec<Ticket>, ApiError> {
    if values.is_empty() || values.len() > MAX_ACKS {
        return Err(ApiError::Malformed {
            detail: format!("a batch ack holds 1 to {MAX_ACKS} message ids"),
            errors: vec![FieldError::new("/ids", "has too few or too many ids")],
        });
    }
    let uuid = |v: &Value| v.as_str().and_then(|s| uuid::Uuid::parse_str(s).ok());
    let mut tickets = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let t = match v {
            Value::Object(o) => match (o.get("id").and_then(uuid), o.get("lease").map(uuid)) {
                (Some(id), Some(Some(lease))) if o.len() == 2 => Some(Ticket {
                    id,
                    lease: Some(lease),
                }),
                (Some(id), None) if o.len() == 1 => Some(id.into()),
                _ => None,
            },
            other => uuid(other).map(Ticket::from),
        };
        match t {
            Some(t) => tickets.push(t),
            None => errors.push(FieldError::new(
                format!("/ids/{i}"),
                "must be a message id (a UUID string), or {\"id\": …, \"lease\": …} from a pull",
            )),
        }
    }
    if errors.is_empty() {
        Ok(tickets)
    } else {
        Err(ApiError::Malformed {
            detail: "invalid message ids; nothing was acked".into(),
            errors,
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct NackBody {
    reason: String,
}

#[utoipa::path(post, path = "/v1/inbox/{id}/nack", tag = "inbox",
    params(("id" = String, Path), ("lease" = Option<String>, Query, description = "The lease a pull gave")),
    request_body = super::openapi::NackRequestDoc,
    responses((status = 200, description = "Success", body = super::openapi::SettledDoc), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn nack(
    State(st): State<SharedState>,
    peer: Peer,
    Path(id): Path<String>,
    params: Result<Query<LeaseParams>, QueryRejection>,
    body: Result<Json<NackBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let t = ticket(&id, params)?;
    let Json(body) = body.map_err(unreadable_json(&st))?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.len() > 2000 {
        return Err(ApiError::Malformed {
            detail: "a nack needs a reason".into(),
            errors: vec![FieldError::new("/reason", "must be 1 to 2000 bytes")],
        });
    }
    let outcome = st.node.nack(&peer.member, t, reason).await?;
    settled(outcome, t.id, &peer, "dead_lettered")
}

fn settled(
    outcome: Settled,
    id: uuid::Uuid,
    peer: &Peer,
    state: &str,
) -> Result<Json<Value>, ApiError> {
    match outcome {
        Settled::Done | Settled::AlreadyDone => Ok(Json(json!({ "id": id, "state": state }))),
        Settled::NotFound => Err(ApiError::NotFound(format!(
            "no leased message {id} in the inbox of {}",
            peer.member
        ))),
        Settled::Conflict => Err(ApiError::Conflict(format!(
            "message {id} was already settled otherwise"
        ))),
        Settled::Stale => Err(ApiError::Conflict(format!(
            "your lease of message {id} ran out and the message was leased again; the later \
             lease settles it"
        ))),
    }
}
