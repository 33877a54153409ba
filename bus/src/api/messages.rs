//! `POST /v1/messages` (the hot path) and `GET /v1/messages/{id}` (status for the sender).
//!
//! Hot path: parse once, run the core's checks (envelope, type in O(1), ACL, precompiled
//! schema), serialise the envelope once, hand it to the group-commit writer, and answer 202
//! only when the writer says the batch is durable.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::openapi::ProblemResponse;
use super::{SharedState, parse_id};
use crate::core::delivery;
use crate::core::ingest;
use crate::core::node::Receipted;
use crate::envelope::{BATCH_CONTENT_TYPE, CONTENT_TYPE};
use crate::error::ApiError;
use crate::identity::{MemberId, Peer};
use crate::problem::FieldError;
use crate::registry::Kind;
use crate::store::{Appended, DeliveryState, MessageRecord};
use serde::Serialize;

/// `POST /v1/messages`; a refusal is audited with its problem class, and every answer counted.
/// Send an event, message or query (structured or binary mode), or a batch.
#[utoipa::path(post, path = "/v1/messages", tag = "messages",
    responses((status = 202, description = "Durable (request body and answer completed in the document)"),
              (status = 200, description = "A query's answer", body = super::openapi::QueryAnswerDoc),
              (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn post(
    State(st): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let mut type_ = None;
    let answer = submit(&st, &peer, headers, body, &mut type_).await;
    match &answer {
        Ok(r) if r.status() == StatusCode::ACCEPTED => {
            crate::telemetry::accept_latency(started.elapsed())
        }
        Ok(_) => {}
        Err(e) => {
            let t = type_.as_deref().unwrap_or("-");
            crate::telemetry::rejected(t, &peer.member, e.slug());
            if e.is_refusal() {
                st.node
                    .refused(&peer.member, "message", None, e.slug())
                    .await;
            }
        }
    }
    answer
}

/// Structured mode (one event or a batch) or binary mode (`ce-*` headers, the data as the
/// body). `type_` is set, for the metrics, once the event names a registered type (`batch`
/// for a batch): a label never holds what a sender made up.
async fn submit(
    st: &SharedState,
    peer: &Peer,
    headers: HeaderMap,
    body: Body,
    type_: &mut Option<String>,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    let binary = headers.contains_key("ce-specversion");
    let batch = match mime {
        CONTENT_TYPE => false,
        BATCH_CONTENT_TYPE => true,
        "" | "application/json" if binary => false,
        m if binary && m.starts_with("application/") && m.ends_with("+json") => false,
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "{content_type:?}; send {CONTENT_TYPE} or {BATCH_CONTENT_TYPE} (structured \
                 mode), or the event's ce-* headers with its JSON data as the body (binary \
                 mode, Content-Type: application/json)"
            )));
        }
    };
    let binary = binary && !matches!(mime, CONTENT_TYPE | BATCH_CONTENT_TYPE);
    let bytes = super::body::read_body(st, &headers, body).await?;
    // Taken after the body is read: a sender on a slow link must not hold a slot while its
    // bytes trickle in, or a few thousand slow offices would lock everyone out.
    let permit = st
        .inflight
        .try_acquire()
        .map_err(|_| ApiError::Overloaded {
            retry_after: std::time::Duration::from_secs(1),
        })?;
    let mut value: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::Malformed {
        detail: format!("body is not valid JSON: {e}"),
        errors: Vec::new(),
    })?;
    drop(bytes);
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    if binary {
        let ce = headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
        value = crate::envelope::from_binary(ce, value).map_err(|errors| ApiError::Malformed {
            detail: format!("{} bad ce-* header(s)", errors.len()),
            errors,
        })?;
    }
    crate::envelope::adopt_traceparent(&mut value, traceparent);
    if binary {
        return single(st, peer, value, permit, type_)
            .await
            .map_err(name_headers);
    }
    if !batch {
        return single(st, peer, value, permit, type_).await;
    }
    *type_ = Some("batch".to_owned());
    let reg = &st.node.registry;
    let prepared = ingest::prepare_batch(reg, value, &peer.member, Some(&peer.cert))?;
    let ids: Vec<_> = prepared
        .iter()
        .map(|p| (p.msg.id, p.warnings.clone()))
        .collect();
    let results = st.node.accept(prepared).await?;
    tracing::debug!(member = %peer.member, count = results.len(), "accepted batch");
    let body: Vec<Value> = ids
        .into_iter()
        .zip(&results)
        .map(|((id, w), r)| accepted(id, &peer.member, r, w))
        .collect();
    Ok((StatusCode::ACCEPTED, Json(json!({ "results": body }))).into_response())
}

/// One event, structured or binary: a query waits for its answer, anything else for 202.
async fn single(
    st: &SharedState,
    peer: &Peer,
    value: Value,
    permit: tokio::sync::SemaphorePermit<'_>,
    type_: &mut Option<String>,
) -> Result<Response, ApiError> {
    let reg = &st.node.registry;
    *type_ = value
        .get("type")
        .and_then(Value::as_str)
        .and_then(|t| reg.type_def(t))
        .map(|d| d.name.clone());
    // Logged with the accept, so a trace can be followed into the bus's log.
    let traceparent = value
        .get("traceparent")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let p = ingest::prepare(reg, value, &peer.member, Some(&peer.cert))?;
    if p.def.kind == Kind::Query {
        let _slot = st.limits.query(&peer.member)?;
        let (id, type_) = (p.msg.id, p.def.name.clone());
        let data = st.node.ask(&peer.member, p, || drop(permit)).await?;
        let receipt = st.node.signer.receipt(&crate::trust::canonical(&data));
        let answer = json!({ "id": id, "type": type_, "data": data, "receipt": receipt });
        return Ok((StatusCode::OK, Json(answer)).into_response());
    }
    let id = p.msg.id;
    let warnings = p.warnings.clone();
    let type_ = p.msg.type_.clone();
    let results = st.node.accept(vec![p]).await?;
    tracing::debug!(member = %peer.member, %type_, %id, traceparent, "accepted");
    let answer = accepted(id, &peer.member, &results[0], warnings);
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// Binary mode names the headers an attribute came in (`ce-id`), not a body pointer.
fn name_headers(mut e: ApiError) -> ApiError {
    if let ApiError::Malformed { errors, .. }
    | ApiError::Schema { errors }
    | ApiError::Signature { errors } = &mut e
    {
        for f in errors {
            if let Some(attr) = f.pointer.strip_prefix('/')
                && !attr.contains('/')
                && attr != "data"
            {
                f.pointer = format!("ce-{attr}");
            }
        }
    }
    e
}

/// One message's answer: its status, warnings, receipt, and the attributes the bus filled
/// (`source`, `time`), with which the sender rebuilds the envelope its receipt signs.
fn accepted(id: uuid::Uuid, source: &MemberId, r: &Receipted, warnings: Vec<FieldError>) -> Value {
    let (status, warnings) = match &r.appended {
        Appended::Accepted => (
            "accepted",
            serde_json::to_value(warnings).unwrap_or_default(),
        ),
        Appended::Duplicate { warnings, .. } => (
            "duplicate",
            serde_json::from_str(warnings).unwrap_or_default(),
        ),
    };
    json!({
        "id": id,
        "status": status,
        "warnings": warnings,
        "source": source,
        "time": r.time,
        "receipt": r.receipt,
    })
}

/// A message's status, for its sender.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "The message id (a UUID)")),
    responses((status = 200, description = "Success", body = MessageStatus), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn status(
    State(st): State<SharedState>,
    peer: Peer,
    Path(id): Path<String>,
) -> Result<Json<MessageStatus>, ApiError> {
    let id = parse_id(&id)?;
    let rec = st
        .node
        .store
        .message(&peer.member, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no message {id} sent by {}", peer.member)))?;
    Ok(Json(MessageStatus::from(&rec)))
}

/// A message's status as its sender (and an operator's trace) sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageStatus {
    id: uuid::Uuid,
    #[serde(rename = "type")]
    type_: String,
    #[schema(value_type = String)]
    source: MemberId,
    accepted_at: String,
    /// The deliveries rolled up: `pending`, `delivered`, `acked`, `dead_lettered` or `partial`.
    status: &'static str,
    replied: bool,
    deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DeliveryView {
    recipient: String,
    state: &'static str,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl From<&MessageRecord> for MessageStatus {
    fn from(rec: &MessageRecord) -> Self {
        let states: Vec<DeliveryState> = rec.deliveries.iter().map(|d| d.state).collect();
        MessageStatus {
            id: rec.id,
            type_: rec.type_.clone(),
            source: rec.sender.clone(),
            accepted_at: super::rfc3339(rec.accepted_at),
            status: delivery::overall(&states),
            replied: rec.reply.is_some(),
            deliveries: rec
                .deliveries
                .iter()
                .map(|d| DeliveryView {
                    recipient: d.recipient.clone(),
                    state: state_name(d.state),
                    attempts: d.attempts,
                    reason: d.reason.clone(),
                })
                .collect(),
        }
    }
}

/// A delivery state as the API names it.
fn state_name(s: DeliveryState) -> &'static str {
    match s {
        DeliveryState::Pending => "pending",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Acked => "acked",
        DeliveryState::DeadLettered => "dead_lettered",
    }
}
