//! Synchronous queries, as in X-Road: the request is stored in the provider's inbox like any
//! message, the requester's HTTP call waits, and the provider's reply is validated against the
//! response schema and cut down to the requester's field grant before the requester sees it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::messages::{Prepared, append};
use super::{SharedState, parse_id};
use crate::error::ApiError;
use crate::identity::{MemberId, Peer};
use crate::registry::{Kind, TypeDef};
use crate::store::{Appended, ReplyOutcome};

/// The provider's reply (JSON text), or why it refused to answer.
type Outcome = Result<String, String>;

/// Requesters waiting on this node for a reply, by query id, with the query's type.
#[derive(Default)]
pub struct PendingQueries(Mutex<HashMap<Uuid, Waiting>>);

struct Waiting {
    def: Arc<TypeDef>,
    requesters: Vec<oneshot::Sender<Outcome>>,
}

impl PendingQueries {
    fn wait(&self, id: Uuid, def: &Arc<TypeDef>) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.lock()
            .entry(id)
            .or_insert_with(|| Waiting {
                def: def.clone(),
                requesters: Vec::new(),
            })
            .requesters
            .push(tx);
        rx
    }

    /// The type of a query someone on this node waits for: the reply needs no store read.
    fn def(&self, id: Uuid) -> Option<Arc<TypeDef>> {
        self.lock().get(&id).map(|w| w.def.clone())
    }

    fn answer(&self, id: Uuid, outcome: Outcome) {
        let requesters = self.lock().remove(&id).map(|w| w.requesters);
        for tx in requesters.unwrap_or_default() {
            let _ = tx.send(outcome.clone());
        }
    }

    /// The provider nacked the query: its requesters hear why at once instead of a 504 later.
    pub fn refused(&self, id: Uuid, reason: &str) {
        self.answer(id, Err(reason.to_owned()));
    }

    fn forget(&self, id: Uuid) {
        let mut map = self.lock();
        if let Some(w) = map.get_mut(&id) {
            w.requesters.retain(|r| !r.is_closed());
            if w.requesters.is_empty() {
                map.remove(&id);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Waiting>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sends the query to its provider and waits for the reply (504 when it does not come).
pub async fn ask(
    st: &SharedState,
    requester: &MemberId,
    p: Prepared,
) -> Result<Response, ApiError> {
    let id = p.msg.id;
    let def = p.def.clone();
    // Wait before storing, so a fast provider cannot reply before anyone listens.
    let mut rx = st.queries.wait(id, &def);
    let appended = append(st, vec![p])
        .await
        .inspect_err(|_| st.queries.forget(id))?;
    // A retry of a query already answered (or refused) gets that outcome again.
    let stored = match appended[0] {
        Appended::Accepted => None,
        Appended::Duplicate { .. } => st.store.message(id).await?.and_then(|r| {
            let refused = r.deliveries.iter().find_map(|d| d.reason.clone());
            r.reply.map(Ok).or(refused.map(Err))
        }),
    };
    let outcome = match stored {
        Some(o) => o,
        None => match tokio::time::timeout(st.config.query_timeout, &mut rx).await {
            Ok(Ok(o)) => o,
            _ => {
                drop(rx);
                st.queries.forget(id);
                return Err(ApiError::QueryTimeout(st.config.query_timeout));
            }
        },
    };
    let reply = outcome.map_err(ApiError::ProviderRefused)?;
    let data: Value =
        serde_json::from_str(&reply).map_err(|e| ApiError::Internal(e.to_string()))?;
    let data = granted(&def, requester, data);
    Ok((
        StatusCode::OK,
        Json(json!({ "id": id, "type": def.name, "data": data })),
    )
        .into_response())
}

/// Removes the fields the requester has not been granted. A type without a `grants` table
/// shows its whole response to every member allowed to ask; with one, only what is listed.
fn granted(def: &TypeDef, requester: &MemberId, data: Value) -> Value {
    if def.grants.is_empty() {
        return data;
    }
    let allowed = def.grants.get(requester);
    match data {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| allowed.is_some_and(|a| a.contains(k)))
                .collect::<Map<_, _>>(),
        ),
        _ => Value::Object(Map::new()),
    }
}

/// `POST /v1/queries/{id}/reply`: the provider's answer, as the response payload itself.
pub async fn reply(
    State(st): State<SharedState>,
    peer: Peer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let not_yours = || ApiError::NotFound(format!("no query {id} for {}", peer.member));
    let def = match st.queries.def(id) {
        Some(def) => def,
        // Asked before a restart, or on another node: the store knows its type.
        None => {
            let rec = st.store.message(id).await?.ok_or_else(not_yours)?;
            st.registry
                .type_def(&rec.type_)
                .cloned()
                .ok_or_else(not_yours)?
        }
    };
    if def.kind != Kind::Query || def.provider.as_ref() != Some(&peer.member) {
        return Err(not_yours());
    }
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
    match st.store.reply(&peer.member, id, text.clone()).await? {
        ReplyOutcome::Stored => st.queries.answer(id, Ok(text)),
        ReplyOutcome::Existing(old) if old == text => {}
        ReplyOutcome::Existing(_) => {
            return Err(ApiError::Conflict(format!(
                "query {id} was already answered differently"
            )));
        }
        ReplyOutcome::NotFound => return Err(not_yours()),
    }
    Ok(Json(json!({ "id": id, "status": "replied" })))
}
