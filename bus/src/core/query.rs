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
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use super::delivery;
use super::ingest::Prepared;
use super::node::{Failure, Node};
use crate::identity::MemberId;
use crate::registry::{Kind, TypeDef};
use crate::store::{Appended, DeadLetter, MessageRecord, NewReply, ReplyOutcome, StoreError};
use crate::subjects;

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

/// How often a waiting requester reads the store for its answer besides being woken: a
/// signal from another node can be lost, the answer in the store cannot.
const RECHECK: Duration = Duration::from_secs(1);

impl Node {
    /// Sends `requester`'s query to its provider and waits for the reply; answers with the
    /// reply cut to the requester's grant. `stored` runs once the query is durable (the
    /// caller gives back what it held only for writing).
    ///
    /// A retry of a query that already ended gets the same ending; a retry of one withdrawn
    /// after a timeout asks again.
    pub async fn ask(
        &self,
        requester: &MemberId,
        p: Prepared,
        stored: impl FnOnce(),
    ) -> Result<Value, Failure> {
        let (def, started) = (p.def.clone(), std::time::Instant::now());
        let answer = self.ask_once(requester, p, stored).await;
        let outcome = match &answer {
            Ok(_) => "answered",
            Err(Failure::ProviderRefused(_)) => "refused",
            Err(Failure::ProviderUnavailable(_)) => "unavailable",
            Err(Failure::QueryTimeout(_)) => "timeout",
            Err(_) => "error",
        };
        crate::telemetry::query(&def.name, outcome, started.elapsed());
        answer
    }

    async fn ask_once(
        &self,
        requester: &MemberId,
        p: Prepared,
        stored: impl FnOnce(),
    ) -> Result<Value, Failure> {
        let (id, def) = (p.msg.id, p.def.clone());
        let key = (requester.clone(), id);
        let queries = &self.wakeups.queries;
        // Wait before storing, so a fast provider cannot reply before anyone listens.
        let mut rx = queries.wait(key.clone(), &def);
        let appended = self
            .append(vec![p])
            .await
            .inspect_err(|_| queries.forget(&key))?;
        stored();
        let mut outcome = None;
        if let Appended::Duplicate { .. } = appended[0] {
            outcome = self.wakeups.look(requester, id).await?;
            // Withdrawn after an earlier timeout: put it back before the provider.
            if outcome.is_none()
                && self.store.reopen(requester, id).await?
                && let Some(provider) = &def.provider
            {
                self.wakeups.wake(provider);
            }
        }
        let outcome = match outcome {
            Some(o) => o,
            None => match self.wait(&key, &mut rx).await {
                Some(o) => o,
                None => {
                    drop(rx);
                    queries.forget(&key);
                    self.give_up(requester, id).await?
                }
            },
        };
        let reply = outcome.map_err(|u| match u {
            Unanswered::Refused(why) => Failure::ProviderRefused(why),
            Unanswered::Unavailable(why) => Failure::ProviderUnavailable(why),
        })?;
        let data: Value = serde_json::from_str(&reply)
            .map_err(|e| StoreError::Corrupt(format!("stored reply to {id}: {e}")))?;
        Ok(delivery::granted(&def, requester, data))
    }

    /// Waits up to the query timeout for the outcome: woken on this node, by a signal from
    /// another node, or found in the store on a periodic look.
    async fn wait(&self, key: &QueryKey, rx: &mut oneshot::Receiver<Outcome>) -> Option<Outcome> {
        let deadline = Instant::now() + self.query_timeout;
        loop {
            let tick = tokio::time::sleep_until(deadline.min(Instant::now() + RECHECK));
            tokio::select! {
                o = &mut *rx => return o.ok(),
                _ = tick => {}
            }
            // A store that is down now is looked at again on the next tick.
            if let Ok(Some(o)) = self.wakeups.look(&key.0, key.1).await {
                return Some(o);
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// The requester stops waiting: its query is taken back from the provider's inbox, unless
    /// it was answered in the last instant, in which case the answer stands.
    async fn give_up(&self, requester: &MemberId, id: Uuid) -> Result<Outcome, Failure> {
        let why = format!(
            "the requester stopped waiting after {:?} (query timeout)",
            self.query_timeout
        );
        if !self.store.withdraw(requester, id, &why).await?
            && let Some(o) = self.wakeups.look(requester, id).await?
        {
            return Ok(o);
        }
        Err(Failure::QueryTimeout(self.query_timeout))
    }

    /// Whose query `id` is, for its provider's reply (`source` names the requester when two
    /// used the id): asked before a restart or on another node, the store knows.
    pub async fn whose_query(
        &self,
        provider: &MemberId,
        id: Uuid,
        source: Option<&MemberId>,
    ) -> Result<(MemberId, Arc<TypeDef>), Failure> {
        let mut candidates = self.wakeups.queries.waiting_for(id);
        if candidates.is_empty() {
            candidates = self
                .store
                .addressed(provider, id)
                .await?
                .into_iter()
                .filter_map(|(m, t)| Some((m, self.registry.type_def(&t)?.clone())))
                .collect();
        }
        Ok(whose(candidates, provider, id, source)?)
    }

    /// A provider's reply to `requester`'s query `id` of type `def`: checked against the
    /// type's response schema, stored (the first reply wins), and handed to its requester on
    /// whichever node it waits.
    pub async fn answer(
        &self,
        provider: &MemberId,
        id: Uuid,
        (requester, def): (MemberId, Arc<TypeDef>),
        data: Value,
    ) -> Result<(), Failure> {
        if let Some(schema) = &def.response_schema {
            let verdict = schema.validate(&data);
            if !verdict.errors.is_empty() {
                return Err(Failure::Reply {
                    errors: verdict.errors,
                });
            }
        }
        let text = data.to_string();
        let ids = def
            .response_schema
            .as_ref()
            .map(|s| subjects::identifiers(&s.subjects, &data));
        let reply = NewReply {
            body: text.clone(),
            subjects: self.subject_key.hmacs(&ids.unwrap_or_default()),
        };
        let outcome = self
            .store
            .reply(provider, id, Some(requester), reply)
            .await?;
        match outcome {
            ReplyOutcome::Stored { requester } => {
                self.wakeups.settled(&requester, id, Ok(text));
                Ok(())
            }
            ReplyOutcome::Existing(old) if old == text => Ok(()),
            ReplyOutcome::Existing(_) => Err(Failure::Conflict(format!(
                "query {id} was already answered differently"
            ))),
            ReplyOutcome::Closed(why) => {
                let why = match why {
                    DeadLetter::Nacked => "you nacked it",
                    DeadLetter::OutOfAttempts => "its leases ran out",
                    DeadLetter::Withdrawn => "its requester stopped waiting",
                };
                Err(Failure::Conflict(format!(
                    "query {id} takes no reply: {why}"
                )))
            }
            ReplyOutcome::Ambiguous => Err(NoQuery::Ambiguous(id).into()),
            ReplyOutcome::NotFound => Err(NoQuery::NotYours {
                id,
                provider: provider.clone(),
            }
            .into()),
        }
    }
}
