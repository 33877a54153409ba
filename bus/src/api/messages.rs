//! `POST /v1/messages` (the hot path) and `GET /v1/messages/{id}` (status for the sender).
//!
//! Hot path: parse once, check the envelope, look the type up in O(1), check the ACL, run the
//! precompiled schema, serialise the envelope once, hand it to the group-commit writer, and
//! answer 202 only when the writer says the batch is durable.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{SharedState, parse_id, queries};
use crate::envelope::{BATCH_CONTENT_TYPE, CONTENT_TYPE, Envelope};
use crate::error::ApiError;
use crate::identity::{MemberId, Peer};
use crate::problem::FieldError;
use crate::registry::{Kind, TypeDef};
use crate::store::{AppendOutcome, Appended, DeliveryState, NewMessage};

/// Most events in one batch envelope.
const MAX_BATCH: usize = 1000;

/// A message that passed every check and waits to be made durable.
pub struct Prepared {
    pub msg: NewMessage,
    pub def: Arc<TypeDef>,
    pub warnings: Vec<FieldError>,
}

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
    let limit = st.config.max_body;
    let too_large = || ApiError::TooLarge { limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| body_error(e, limit))?;
    // Taken after the body is read: a sender on a slow link must not hold a slot while its
    // bytes trickle in, or a few thousand slow offices would lock everyone out.
    let _permit = st
        .inflight
        .try_acquire()
        .map_err(|_| ApiError::Overloaded {
            retry_after: std::time::Duration::from_secs(1),
        })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::Malformed {
        detail: format!("body is not valid JSON: {e}"),
        errors: Vec::new(),
    })?;

    if !batch {
        let p = prepare(&st, value, &peer.member)?;
        if p.def.kind == Kind::Query {
            return queries::ask(&st, &peer.member, p).await;
        }
        let id = p.msg.id;
        let warnings = p.warnings.clone();
        let type_ = p.msg.type_.clone();
        let results = append(&st, vec![p]).await?;
        tracing::debug!(member = %peer.member, %type_, %id, "accepted");
        return Ok(accepted(id, &results[0], warnings).into_response());
    }

    let Value::Array(items) = value else {
        return Err(ApiError::Malformed {
            detail: "a batch must be a JSON array of events".into(),
            errors: Vec::new(),
        });
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::Malformed {
            detail: format!("a batch holds 1 to {MAX_BATCH} events"),
            errors: Vec::new(),
        });
    }
    let prepared = prepare_all(&st, items, &peer.member)?;
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

/// Over the limit is 413; anything else (a corrupt gzip stream, a dropped upload) is the
/// sender's malformed request, not a size problem.
fn body_error(e: axum::Error, limit: usize) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return ApiError::TooLarge { limit };
        }
        cause = c.source();
    }
    ApiError::Malformed {
        detail: format!("could not read the request body: {e}"),
        errors: Vec::new(),
    }
}

/// Checks every event of a batch; on failure reports the fields of every failing event.
fn prepare_all(
    st: &SharedState,
    items: Vec<Value>,
    sender: &MemberId,
) -> Result<Vec<Prepared>, ApiError> {
    let mut ok = Vec::with_capacity(items.len());
    let mut first: Option<ApiError> = None;
    for (i, item) in items.into_iter().enumerate() {
        match prepare(st, item, sender) {
            Ok(p) if p.def.kind == Kind::Query => {
                let e = ApiError::Malformed {
                    detail: "queries are synchronous and cannot be batched".into(),
                    errors: vec![FieldError::new(format!("/{i}/type"), "is a query type")],
                };
                merge(&mut first, e, i);
            }
            Ok(p) => ok.push(p),
            Err(e) => merge(&mut first, e, i),
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(ok),
    }
}

/// Folds the error of batch item `i` into the batch's answer: the first failing item decides
/// the status, and field errors of the same class from later items are added to it.
fn merge(first: &mut Option<ApiError>, e: ApiError, i: usize) {
    let prefix = format!("/{i}");
    let prefixed = |errors: Vec<FieldError>| -> Vec<FieldError> {
        errors
            .into_iter()
            .map(|f| {
                if f.pointer.starts_with(&prefix) {
                    f
                } else {
                    f.prefixed(&prefix)
                }
            })
            .collect()
    };
    let e = match e {
        ApiError::Malformed { detail, errors } => ApiError::Malformed {
            detail,
            errors: prefixed(errors),
        },
        ApiError::Schema { errors } => ApiError::Schema {
            errors: prefixed(errors),
        },
        other => other,
    };
    match (first.as_mut(), e) {
        (None, e) => *first = Some(e),
        (Some(ApiError::Malformed { errors, .. }), ApiError::Malformed { errors: more, .. })
        | (Some(ApiError::Schema { errors }), ApiError::Schema { errors: more }) => {
            errors.extend(more)
        }
        _ => {}
    }
}

/// Runs every check of one event, in the order that gives the most useful answer.
pub fn prepare(st: &SharedState, value: Value, sender: &MemberId) -> Result<Prepared, ApiError> {
    let hash = content_hash(&value);
    let reg = &st.registry;
    let env = Envelope::parse(value, Some(sender), &reg.instance).map_err(|errors| {
        ApiError::Malformed {
            detail: "invalid CloudEvents envelope".into(),
            errors,
        }
    })?;
    let def = reg
        .type_def(&env.type_)
        .ok_or_else(|| ApiError::UnknownType(env.type_.clone()))?;
    if !def.producers.allows(sender) {
        return Err(ApiError::Forbidden(format!(
            "{sender} may not produce {}",
            def.name
        )));
    }
    if let Some(ds) = &env.dataschema
        && !def.matches_schema(ds)
    {
        return Err(ApiError::Malformed {
            detail: "dataschema does not match the type".into(),
            errors: vec![FieldError::new(
                "/dataschema",
                format!("{} uses schema {}", def.name, def.schema.id),
            )],
        });
    }
    let recipients = recipients(st, def, &env)?;
    let verdict = def.schema.validate(env.data());
    if !verdict.errors.is_empty() {
        return Err(ApiError::Schema {
            errors: verdict
                .errors
                .into_iter()
                .map(|e| e.prefixed("/data"))
                .collect(),
        });
    }
    let warnings: Vec<FieldError> = verdict
        .warnings
        .into_iter()
        .map(|w| w.prefixed("/data"))
        .collect();
    Ok(Prepared {
        msg: NewMessage {
            id: env.id,
            sender: sender.clone(),
            type_: def.name.clone(),
            kind: def.kind,
            hash,
            envelope: Value::Object(env.attrs).to_string(),
            warnings: serde_json::to_string(&warnings).unwrap_or_else(|_| "[]".into()),
            recipients,
            to_feed: def.kind == Kind::Event,
        },
        def: def.clone(),
        warnings,
    })
}

/// SHA-256 of the event's compact JSON, the idempotency check's "same content".
///
/// Serialised straight into the hasher: the same bytes as `value.to_string()` (so hashes stored
/// before are still comparable), without building and copying a string per event, which
/// showed in the profile of large and batched messages.
fn content_hash(value: &Value) -> [u8; 32] {
    struct Hasher(Sha256);
    impl std::io::Write for Hasher {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Hasher(Sha256::new());
    // Writing a `Value` to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut h, value);
    h.0.finalize().into()
}

fn recipients(st: &SharedState, def: &TypeDef, env: &Envelope) -> Result<Vec<MemberId>, ApiError> {
    let bad_to = |detail: &str| ApiError::Malformed {
        detail: "invalid recipient".into(),
        errors: vec![FieldError::new("/to", detail)],
    };
    match (def.kind, &env.to) {
        (Kind::Event, Some(_)) => Err(bad_to("events go to every subscriber; leave `to` out")),
        (Kind::Event, None) => Ok(def.subscribers.clone()),
        (_, Some(to)) if st.registry.member(to).is_none() => Err(bad_to("is not a member")),
        (Kind::Query, Some(to)) if Some(to) != def.provider.as_ref() => {
            Err(bad_to("a query goes to its type's provider"))
        }
        (Kind::Message, Some(to)) => {
            if def.consumers.allows(to) || def.provider.as_ref() == Some(to) {
                Ok(vec![to.clone()])
            } else {
                Err(ApiError::Forbidden(format!(
                    "{to} may not receive {}",
                    def.name
                )))
            }
        }
        (_, _) => def
            .provider
            .clone()
            .map(|p| vec![p])
            .ok_or_else(|| bad_to("is required: this type has no provider")),
    }
}

/// Appends atomically and wakes the recipients' long polls.
pub async fn append(st: &SharedState, batch: Vec<Prepared>) -> Result<Vec<Appended>, ApiError> {
    let msgs: Vec<NewMessage> = batch.into_iter().map(|p| p.msg).collect();
    let wake: Vec<MemberId> = msgs.iter().flat_map(|m| m.recipients.clone()).collect();
    let ids: Vec<_> = msgs.iter().map(|m| m.id).collect();
    match st.store.append(msgs).await? {
        AppendOutcome::Conflict(i) => Err(ApiError::Conflict(format!(
            "message id {} was already used with different content",
            ids[i]
        ))),
        AppendOutcome::Stored(results) => {
            for m in &wake {
                st.signals.wake(m);
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
    let rec = st
        .store
        .message(id)
        .await?
        .filter(|r| r.sender == peer.member)
        .ok_or_else(|| ApiError::NotFound(format!("no message {id} sent by {}", peer.member)))?;
    let states: Vec<DeliveryState> = rec.deliveries.iter().map(|d| d.state).collect();
    let overall = if states.contains(&DeliveryState::DeadLettered) {
        "dead_lettered"
    } else if !states.is_empty() && states.iter().all(|s| *s == DeliveryState::Acked) {
        "acked"
    } else if states.contains(&DeliveryState::Delivered) || states.contains(&DeliveryState::Acked) {
        "delivered"
    } else {
        "accepted"
    };
    let accepted_at =
        time::OffsetDateTime::from_unix_timestamp_nanos(rec.accepted_at_ms as i128 * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
    Ok(Json(json!({
        "id": rec.id,
        "type": rec.type_,
        "source": rec.sender,
        "accepted_at": accepted_at,
        "status": overall,
        "replied": rec.reply.is_some(),
        "deliveries": rec.deliveries,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_hash_is_that_of_the_compact_json() {
        let v = json!({ "b": [1, "x\"y"], "a": { "nik": "3273012208850001" } });
        let want: [u8; 32] = Sha256::digest(v.to_string().as_bytes()).into();
        assert_eq!(content_hash(&v), want);
    }
}
