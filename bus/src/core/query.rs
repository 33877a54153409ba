//! The rules of synchronous queries, as in X-Road: the request waits in the provider's inbox
//! like any message, the requester waits for the provider's reply, and the reply is cut down
//! to the requester's field grant.
//!
//! A query is `(requester, id)`: ids belong to their sender, so another member reusing an id
//! asks its own question and never receives someone else's answer. The requester may wait on
//! one node while the provider replies through another: the answer is in the store, and a
//! [`Signal::Query`](crate::store::Signal) tells the waiting node to read it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::identity::MemberId;
use crate::registry::{Kind, TypeDef};
use crate::store::{DeadLetter, MessageRecord};

/// How a query ended without a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswered {
    /// The provider nacked it, saying why (502).
    Refused(String),
    /// Its leases ran out without a reply (504).
    Unavailable(String),
}

/// The provider's reply (JSON text), or why there is none.
pub type Outcome = Result<String, Unanswered>;

/// A query: whose, and which id.
pub type QueryKey = (MemberId, Uuid);

/// Requesters waiting on this node for a reply, by query, with the query's type.
#[derive(Default)]
pub struct PendingQueries(Mutex<HashMap<QueryKey, Waiting>>);

struct Waiting {
    def: Arc<TypeDef>,
    requesters: Vec<oneshot::Sender<Outcome>>,
}

impl PendingQueries {
    /// Registers a waiting requester. Call before storing the query, so a fast provider
    /// cannot reply before anyone listens.
    pub fn wait(&self, key: QueryKey, def: &Arc<TypeDef>) -> oneshot::Receiver<Outcome> {
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
    pub fn waiting_for(&self, id: Uuid) -> Vec<(MemberId, Arc<TypeDef>)> {
        self.lock()
            .iter()
            .filter(|((_, i), _)| *i == id)
            .map(|((m, _), w)| (m.clone(), w.def.clone()))
            .collect()
    }

    /// Whether anyone on this node waits for this query.
    pub fn is_waiting(&self, key: &QueryKey) -> bool {
        self.lock().contains_key(key)
    }

    /// Hands the outcome to every requester waiting for it here.
    pub fn answer(&self, key: &QueryKey, outcome: Outcome) {
        let requesters = self.lock().remove(key).map(|w| w.requesters);
        for tx in requesters.unwrap_or_default() {
            let _ = tx.send(outcome.clone());
        }
    }

    /// Drops requesters that stopped waiting (timed out, or their connection went away).
    pub fn forget(&self, key: &QueryKey) {
        let mut map = self.lock();
        if let Some(w) = map.get_mut(key) {
            w.requesters.retain(|r| !r.is_closed());
            if w.requesters.is_empty() {
                map.remove(key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<QueryKey, Waiting>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The outcome a provider's nack gives the requester.
pub fn refused(provider: &MemberId, reason: &str) -> Outcome {
    Err(Unanswered::Refused(format!(
        "nacked by {provider}: {reason}"
    )))
}

/// The outcome of a query whose leases ran out without a reply.
pub fn unavailable(provider: &MemberId) -> Outcome {
    Err(Unanswered::Unavailable(format!(
        "{provider} took the query but did not answer before its leases ran out"
    )))
}

/// What a stored query already ended with, if it ended: a retry, or a requester woken by
/// another node, gets the same answer. `None` while it is open, or after it was withdrawn
/// (a retry asks again).
pub fn stored_outcome(r: MessageRecord) -> Option<Outcome> {
    if let Some(reply) = r.reply {
        return Some(Ok(reply));
    }
    let d = r.deliveries.into_iter().next()?;
    let reason = d.reason.unwrap_or_default();
    match d.dead? {
        DeadLetter::Nacked => Some(Err(Unanswered::Refused(reason))),
        DeadLetter::OutOfAttempts => Some(Err(Unanswered::Unavailable(reason))),
        DeadLetter::Withdrawn => None,
    }
}

/// Why a provider's reply has no query to answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoQuery {
    #[error("no query {id} for {provider}")]
    NotYours { id: Uuid, provider: MemberId },
    #[error("several requesters' queries carry id {0}; say whose with ?source=MEMBER")]
    Ambiguous(Uuid),
}

/// Picks whose query a provider's reply answers, from the queries carrying its id: only a
/// query type this provider serves, and only `source`'s when the provider named one.
pub fn whose(
    mut candidates: Vec<(MemberId, Arc<TypeDef>)>,
    provider: &MemberId,
    id: Uuid,
    source: Option<&MemberId>,
) -> Result<(MemberId, Arc<TypeDef>), NoQuery> {
    candidates.retain(|(m, def)| {
        def.kind == Kind::Query
            && def.provider.as_ref() == Some(provider)
            && source.is_none_or(|s| s == m)
    });
    match candidates.len() {
        0 => Err(NoQuery::NotYours {
            id,
            provider: provider.clone(),
        }),
        1 => Ok(candidates.remove(0)),
        _ => Err(NoQuery::Ambiguous(id)),
    }
}
