//! Synchronous queries, as in X-Road: the request is stored in the provider's inbox like any
//! message, the requester's HTTP call waits, and the provider's reply is validated against the
//! response schema and cut down to the requester's field grant before the requester sees it.
//!
//! A query is `(requester, id)`: ids belong to their sender, so another member reusing an id
//! asks its own question and never receives someone else's answer.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::SemaphorePermit;

use super::messages::{append, read_body};
use super::{SharedState, malformed, parse_id};
use crate::core::delivery;
use crate::core::ingest::Prepared;
use crate::core::query::{self, NoQuery, Unanswered};
use crate::error::ApiError;
use crate::identity::{MemberId, Peer};
use crate::store::{Appended, DeadLetter, ReplyOutcome};

/// How often a waiting requester reads the store for its answer besides being woken: a
/// signal from another node can be lost, the answer in the store cannot.
const RECHECK: Duration = Duration::from_secs(1);

/// Sends the query to its provider and waits for the reply (504 when it does not come).
///
/// `permit` is the write slot of the request: it is given back once the query is stored, so
/// requesters waiting on a slow provider never starve other members' writes.
pub async fn ask(
    st: &SharedState,
    requester: &MemberId,
    p: Prepared,
    permit: SemaphorePermit<'_>,
) -> Result<Response, ApiError> {
    let _slot = st.limits.query(requester)?;
    let id = p.msg.id;
    let def = p.def.clone();
    let key = (requester.clone(), id);
    // Wait before storing, so a fast provider cannot reply before anyone listens.
    let queries = &st.wakeups.queries;
    let mut rx = queries.wait(key.clone(), &def);
    let appended = append(st, vec![p])
        .await
        .inspect_err(|_| queries.forget(&key))?;
    drop(permit);
    let stored = match appended[0] {
        Appended::Accepted => None,
        Appended::Duplicate { .. } => {
            let rec = st.store.message(requester, id).await?;
            match rec.and_then(query::stored_outcome) {
                Some(o) => Some(o),
                None => {
                    // Withdrawn after an earlier timeout: put it back before the provider.
                    if st.store.reopen(requester, id).await?
                        && let Some(provider) = &def.provider
                    {
                        st.wakeups.wake(provider);
                    }
                    None
                }
            }
        }
    };
    let outcome = match stored {
        Some(o) => o,
        None => match wait(st, &key, &mut rx).await {
            Some(o) => o,
            None => {
                drop(rx);
                queries.forget(&key);
                let why = format!(
                    "the requester stopped waiting after {:?} (query timeout)",
                    st.config.query_timeout
                );
                // Answered in the last instant: the answer stands, and withdraws nothing.
                if !st.store.withdraw(requester, id, &why).await?
                    && let Some(o) = st.wakeups.look(requester, id).await
                {
                    o
                } else {
                    return Err(ApiError::QueryTimeout(st.config.query_timeout));
                }
            }
        },
    };
    let reply = outcome.map_err(|u| match u {
        Unanswered::Refused(why) => ApiError::ProviderRefused(why),
        Unanswered::Unavailable(why) => ApiError::ProviderUnavailable(why),
    })?;
    let data: Value =
        serde_json::from_str(&reply).map_err(|e| ApiError::Internal(e.to_string()))?;
    let data = delivery::granted(&def, requester, data);
    Ok((
        StatusCode::OK,
        Json(json!({ "id": id, "type": def.name, "data": data })),
    )
        .into_response())
}

/// Waits up to the query timeout for the outcome: woken on this node, by a signal from
/// another node, or found in the store on a periodic look.
async fn wait(
    st: &SharedState,
    key: &query::QueryKey,
    rx: &mut tokio::sync::oneshot::Receiver<query::Outcome>,
) -> Option<query::Outcome> {
    let deadline = tokio::time::Instant::now() + st.config.query_timeout;
    loop {
        let tick = tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + RECHECK));
        tokio::select! {
            o = &mut *rx => return o.ok(),
            _ = tick => {}
        }
        if let Some(o) = st.wakeups.look(&key.0, key.1).await {
            return Some(o);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyParams {
    /// Whose query, for the rare id that two requesters both used.
    source: Option<String>,
}

/// `POST /v1/queries/{id}/reply[?source=MEMBER]`: the provider's answer, as the response
/// payload itself.
pub async fn reply(
    State(st): State<SharedState>,
    peer: Peer,
    Path(id): Path<String>,
    params: Result<Query<ReplyParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let Query(params) = params.map_err(malformed)?;
    let source = match params.source.as_deref().map(MemberId::parse) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => return Err(super::bad_param("source", &e.to_string())),
    };
    let mut candidates = st.wakeups.queries.waiting_for(id);
    if candidates.is_empty() {
        // Asked before a restart, or on another node: the store knows whose and of what type.
        candidates = st
            .store
            .addressed(&peer.member, id)
            .await?
            .into_iter()
            .filter_map(|(m, t)| Some((m, st.registry.type_def(&t)?.clone())))
            .collect();
    }
    let (requester, def) = query::whose(candidates, &peer.member, id, source.as_ref())?;
    let body = read_body(&st, &headers, body).await?;
    let data: Value = serde_json::from_slice(&body).map_err(|e| ApiError::Malformed {
        detail: format!("body is not valid JSON: {e}"),
        errors: Vec::new(),
    })?;
    if let Some(schema) = &def.response_schema {
        let verdict = schema.validate(&data);
        if !verdict.errors.is_empty() {
            return Err(ApiError::Schema {
                errors: verdict.errors,
            });
        }
    }
    let text = data.to_string();
    let outcome = st
        .store
        .reply(&peer.member, id, Some(requester.clone()), text.clone())
        .await?;
    match outcome {
        ReplyOutcome::Stored { requester } => st.wakeups.settled(&requester, id, Ok(text)),
        ReplyOutcome::Existing(old) if old == text => {}
        ReplyOutcome::Existing(_) => {
            return Err(ApiError::Conflict(format!(
                "query {id} was already answered differently"
            )));
        }
        ReplyOutcome::Closed(why) => {
            let why = match why {
                DeadLetter::Nacked => "you nacked it",
                DeadLetter::OutOfAttempts => "its leases ran out",
                DeadLetter::Withdrawn => "its requester stopped waiting",
            };
            return Err(ApiError::Conflict(format!(
                "query {id} takes no reply: {why}"
            )));
        }
        ReplyOutcome::Ambiguous => return Err(NoQuery::Ambiguous(id).into()),
        ReplyOutcome::NotFound => {
            return Err(NoQuery::NotYours {
                id,
                provider: peer.member.clone(),
            }
            .into());
        }
    }
    Ok(Json(json!({ "id": id, "status": "replied" })))
}
