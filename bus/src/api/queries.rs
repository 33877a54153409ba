//! Synchronous queries, as in X-Road: the request is stored in the provider's inbox like any
//! message, the requester's HTTP call waits, and the provider's reply is validated against the
//! response schema and cut down to the requester's field grant before the requester sees it.
//!
//! A query is `(requester, id)`: ids belong to their sender, so another member reusing an id
//! asks its own question and never receives someone else's answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{SemaphorePermit, oneshot};
use uuid::Uuid;

use super::messages::{append, read_body};
use super::{SharedState, malformed, parse_id};
use crate::core::delivery;
use crate::core::ingest::Prepared;
use crate::error::ApiError;
use crate::identity::{MemberId, Peer};
use crate::registry::{Kind, TypeDef};
use crate::store::{Appended, DeadLetter, MessageRecord, ReplyOutcome};

/// How a query ended without a reply.
#[derive(Debug, Clone)]
enum Unanswered {
    /// The provider nacked it, saying why (502).
    Refused(String),
    /// Its leases ran out without a reply (504).
    Unavailable(String),
}

/// The provider's reply (JSON text), or why there is none.
type Outcome = Result<String, Unanswered>;

type Key = (MemberId, Uuid);

/// Requesters waiting on this node for a reply, by query, with the query's type.
#[derive(Default)]
pub struct PendingQueries(Mutex<HashMap<Key, Waiting>>);

struct Waiting {
    def: Arc<TypeDef>,
    requesters: Vec<oneshot::Sender<Outcome>>,
}

impl PendingQueries {
    fn wait(&self, key: Key, def: &Arc<TypeDef>) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.lock()
            .entry(key)
            .or_insert_with(|| Waiting {
                def: def.clone(),
                requesters: Vec::new(),
            })
            .requesters
            .push(tx);
        rx
    }

    /// Queries someone on this node waits for that carry `id`: the reply needs no store read.
    fn waiting_for(&self, id: Uuid) -> Vec<(MemberId, Arc<TypeDef>)> {
        self.lock()
            .iter()
            .filter(|((_, i), _)| *i == id)
            .map(|((m, _), w)| (m.clone(), w.def.clone()))
            .collect()
    }

    fn answer(&self, key: &Key, outcome: Outcome) {
        let requesters = self.lock().remove(key).map(|w| w.requesters);
        for tx in requesters.unwrap_or_default() {
            let _ = tx.send(outcome.clone());
        }
    }

    /// The provider nacked the query: its requester hears why at once instead of a 504 later.
    pub fn refused(&self, requester: &MemberId, id: Uuid, reason: &str) {
        let key = (requester.clone(), id);
        self.answer(&key, Err(Unanswered::Refused(reason.to_owned())));
    }

    /// The query's leases ran out without a reply: its requester hears it at once (504
    /// provider-unavailable) instead of waiting for its timeout.
    pub fn unavailable(&self, requester: &MemberId, id: Uuid, provider: &MemberId) {
        let key = (requester.clone(), id);
        let why = format!("{provider} took the query but did not answer before its leases ran out");
        self.answer(&key, Err(Unanswered::Unavailable(why)));
    }

    fn forget(&self, key: &Key) {
        let mut map = self.lock();
        if let Some(w) = map.get_mut(key) {
            w.requesters.retain(|r| !r.is_closed());
            if w.requesters.is_empty() {
                map.remove(key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Waiting>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a stored query already ended with, if it ended: a retry gets the same answer.
fn stored_outcome(r: MessageRecord) -> Option<Outcome> {
    if let Some(reply) = r.reply {
        return Some(Ok(reply));
    }
    let d = r.deliveries.into_iter().next()?;
    let reason = d.reason.unwrap_or_default();
    match d.dead? {
        DeadLetter::Nacked => Some(Err(Unanswered::Refused(reason))),
        DeadLetter::OutOfAttempts => Some(Err(Unanswered::Unavailable(reason))),
        // The earlier ask timed out and was taken back: this retry asks again.
        DeadLetter::Withdrawn => None,
    }
}

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
    let mut rx = st.queries.wait(key.clone(), &def);
    let appended = append(st, vec![p])
        .await
        .inspect_err(|_| st.queries.forget(&key))?;
    drop(permit);
    let stored = match appended[0] {
        Appended::Accepted => None,
        Appended::Duplicate { .. } => {
            let rec = st.store.message(requester, id).await?;
            match rec.and_then(stored_outcome) {
                Some(o) => Some(o),
                None => {
                    // Withdrawn after an earlier timeout: put it back before the provider.
                    if st.store.reopen(requester, id).await?
                        && let Some(provider) = &def.provider
                    {
                        st.signals.wake(provider);
                    }
                    None
                }
            }
        }
    };
    let outcome = match stored {
        Some(o) => o,
        None => match tokio::time::timeout(st.config.query_timeout, &mut rx).await {
            Ok(Ok(o)) => o,
            _ => {
                drop(rx);
                st.queries.forget(&key);
                let why = format!(
                    "the requester stopped waiting after {:?} (query timeout)",
                    st.config.query_timeout
                );
                st.store.withdraw(requester, id, &why).await?;
                return Err(ApiError::QueryTimeout(st.config.query_timeout));
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
    let not_yours = || ApiError::NotFound(format!("no query {id} for {}", peer.member));
    let mut candidates = st.queries.waiting_for(id);
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
    candidates.retain(|(m, def)| {
        def.kind == Kind::Query
            && def.provider.as_ref() == Some(&peer.member)
            && source.as_ref().is_none_or(|s| s == m)
    });
    let (requester, def) = match candidates.len() {
        0 => return Err(not_yours()),
        1 => candidates.remove(0),
        _ => {
            return Err(ApiError::Conflict(format!(
                "several requesters' queries carry id {id}; say whose with ?source=MEMBER"
            )));
        }
    };
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
        ReplyOutcome::Stored { requester } => st.queries.answer(&(requester, id), Ok(text)),
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
        ReplyOutcome::Ambiguous => {
            return Err(ApiError::Conflict(format!(
                "several requesters' queries carry id {id}; say whose with ?source=MEMBER"
            )));
        }
        ReplyOutcome::NotFound => return Err(not_yours()),
    }
    Ok(Json(json!({ "id": id, "status": "replied" })))
}
