//! `POST /v1/messages` (the hot path) and `GET /v1/messages/{id}` (status for the sender).
//!
//! Hot path: parse once, run the core's checks (envelope, type in O(1), ACL, precompiled
//! schema), serialise the envelope once, hand it to the group-commit writer, and answer 202
//! only when the writer says the batch is durable.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{SharedState, parse_id, queries};
use crate::core::delivery;
use crate::core::ingest::{self, Prepared};
use crate::envelope::{BATCH_CONTENT_TYPE, CONTENT_TYPE};
use crate::error::ApiError;
use crate::identity::{MemberId, Peer};
use crate::problem::FieldError;
use crate::registry::Kind;
use crate::store::{AppendOutcome, Appended, DeliveryState, NewMessage};

pub async fn post(
    State(st): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    let batch = match mime {
        CONTENT_TYPE => false,
        BATCH_CONTENT_TYPE => true,
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "{content_type:?}; send {CONTENT_TYPE} or {BATCH_CONTENT_TYPE}"
            )));
        }
    };
    let bytes = read_body(&st, &headers, body).await?;
    // Taken after the body is read: a sender on a slow link must not hold a slot while its
    // bytes trickle in, or a few thousand slow offices would lock everyone out.
    let permit = st
        .inflight
        .try_acquire()
        .map_err(|_| ApiError::Overloaded {
            retry_after: std::time::Duration::from_secs(1),
        })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::Malformed {
        detail: format!("body is not valid JSON: {e}"),
        errors: Vec::new(),
    })?;
    drop(bytes);
    let reg = &st.registry;

    if !batch {
        let p = ingest::prepare(reg, value, &peer.member)?;
        if p.def.kind == Kind::Query {
            return queries::ask(&st, &peer.member, p, permit).await;
        }
        let id = p.msg.id;
        let warnings = p.warnings.clone();
        let type_ = p.msg.type_.clone();
        let results = append(&st, vec![p]).await?;
        tracing::debug!(member = %peer.member, %type_, %id, "accepted");
        return Ok(accepted(id, &results[0], warnings).into_response());
    }

    let prepared = ingest::prepare_batch(reg, value, &peer.member)?;
    let ids: Vec<_> = prepared
        .iter()
        .map(|p| (p.msg.id, p.warnings.clone()))
        .collect();
    let results = append(&st, prepared).await?;
    tracing::debug!(member = %peer.member, count = results.len(), "accepted batch");
    let body: Vec<Value> = ids
        .into_iter()
        .zip(&results)
        .map(|((id, w), r)| accepted(id, r, w).1.0)
        .collect();
    Ok((StatusCode::ACCEPTED, Json(json!({ "results": body }))).into_response())
}

/// Reads a whole request body within `--max-body` (after decompression).
pub(super) async fn read_body(
    st: &SharedState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    let limit = st.config.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| body_error(e, limit))
}

/// Over the limit is 413, too slow is 408; anything else (a corrupt gzip stream, a dropped
/// upload) is the sender's malformed request, not a size problem.
fn body_error(e: axum::Error, limit: usize) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return ApiError::TooLarge { limit };
        }
        if let Some(t) = c.downcast_ref::<super::limits::BodyTimedOut>() {
            return ApiError::BodyTimeout(t.0);
        }
        cause = c.source();
    }
    ApiError::Malformed {
        detail: format!("could not read the request body: {e}"),
        errors: Vec::new(),
    }
}

/// Appends atomically and wakes the recipients' long polls.
pub async fn append(st: &SharedState, batch: Vec<Prepared>) -> Result<Vec<Appended>, ApiError> {
    let msgs: Vec<NewMessage> = batch.into_iter().map(|p| p.msg).collect();
    let wake: Vec<MemberId> = msgs.iter().flat_map(|m| m.recipients.clone()).collect();
    let ids: Vec<_> = msgs.iter().map(|m| m.id).collect();
    match st.store.append(msgs).await? {
        // Ids belong to their sender, so this names one of the sender's own ids.
        AppendOutcome::Conflict(i) => Err(ApiError::Conflict(format!(
            "you already used message id {} with different content",
            ids[i]
        ))),
        AppendOutcome::Stored(results) => {
            for m in &wake {
                st.wakeups.wake(m);
            }
            Ok(results)
        }
    }
}

fn accepted(id: uuid::Uuid, r: &Appended, warnings: Vec<FieldError>) -> (StatusCode, Json<Value>) {
    let warnings = match r {
        Appended::Accepted => serde_json::to_value(warnings).unwrap_or_default(),
        Appended::Duplicate { warnings } => serde_json::from_str(warnings).unwrap_or_default(),
    };
    let status = match r {
        Appended::Accepted => "accepted",
        Appended::Duplicate { .. } => "duplicate",
    };
    (
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "status": status, "warnings": warnings })),
    )
}

pub async fn status(
    State(st): State<SharedState>,
    peer: Peer,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let rec =
        st.store.message(&peer.member, id).await?.ok_or_else(|| {
            ApiError::NotFound(format!("no message {id} sent by {}", peer.member))
        })?;
    let states: Vec<DeliveryState> = rec.deliveries.iter().map(|d| d.state).collect();
    let overall = delivery::overall(&states);
    let deliveries: Vec<Value> = rec
        .deliveries
        .iter()
        .map(|d| {
            let mut v = json!({
                "recipient": d.recipient,
                "state": state_name(d.state),
                "attempts": d.attempts,
            });
            if let Some(reason) = &d.reason {
                v["reason"] = json!(reason);
            }
            v
        })
        .collect();
    Ok(Json(json!({
        "id": rec.id,
        "type": rec.type_,
        "source": rec.sender,
        "accepted_at": super::rfc3339(rec.accepted_at),
        "status": overall,
        "replied": rec.reply.is_some(),
        "deliveries": deliveries,
    })))
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
