//! Who waits on this node, and how they are woken: long polls by their inbox, requesters by
//! their query. A wake-up raised here reaches local waiters at once and the other nodes
//! through the store's [`Notifier`]; a signal from another node wakes local waiters the same
//! way. Waiters never trust a signal alone: they read the store, so a lost or duplicated
//! signal costs latency, never correctness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

use super::query::{self, Outcome, PendingQueries};
use crate::identity::MemberId;
use crate::store::{Signal, Store, StoreError};

/// Wakes long-polling consumers when something lands in their inbox.
#[derive(Default)]
struct InboxSignals(Mutex<HashMap<MemberId, Arc<Notify>>>);

impl InboxSignals {
    fn get(&self, m: &MemberId) -> Arc<Notify> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(m.clone()).or_default().clone()
    }

    /// One new message wakes one waiting poll, not all of them: a provider with four pollers
    /// would otherwise have four of them race to lease one query, three for nothing. A poll
    /// that is woken but returns with other messages passes its wake-up on (tokio's `Notify`).
    fn wake(&self, m: &MemberId) {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get(m) {
            n.notify_one();
        }
    }
}

/// Every waiter of this node, and the way to the other nodes.
pub struct Wakeups {
    inboxes: InboxSignals,
    pub queries: PendingQueries,
    store: Arc<dyn Store>,
}

impl Wakeups {
    /// Starts listening for the other nodes' signals, when the store has other nodes.
    pub fn start(store: Arc<dyn Store>) -> Arc<Self> {
        let wakeups = Arc::new(Wakeups {
            inboxes: InboxSignals::default(),
            queries: PendingQueries::default(),
            store: store.clone(),
        });
        if let Some(mut rx) = store.subscribe() {
            let weak = Arc::downgrade(&wakeups);
            tokio::spawn(async move {
                while let Some(signal) = rx.recv().await {
                    let Some(w) = weak.upgrade() else { break };
                    w.remote(signal);
                }
            });
        }
        wakeups
    }

    /// The handle a long poll of `m` waits on.
    pub fn inbox(&self, m: &MemberId) -> Arc<Notify> {
        self.inboxes.get(m)
    }

    /// Something became ready in `m`'s inbox, on this node or any other.
    pub fn wake(&self, m: &MemberId) {
        self.inboxes.wake(m);
        self.store.publish(Signal::Inbox(m.clone()));
    }

    /// `requester`'s query `id` has its outcome in the store: its requester hears it, here or
    /// on the node where it waits.
    pub fn settled(&self, requester: &MemberId, id: Uuid, outcome: Outcome) {
        self.queries.answer(&(requester.clone(), id), outcome);
        // The same query may also wait on another node (a retry through another node).
        self.store.publish(Signal::Query(requester.clone(), id));
    }

    /// Reads what a query ended with, for a requester waiting here: `None` while it is open.
    pub async fn look(
        &self,
        requester: &MemberId,
        id: Uuid,
    ) -> Result<Option<Outcome>, StoreError> {
        let rec = self.store.message(requester, id).await?;
        Ok(rec.and_then(query::stored_outcome))
    }

    /// A signal from another node.
    fn remote(self: Arc<Self>, signal: Signal) {
        match signal {
            Signal::Inbox(m) => {
                tracing::debug!(member = %m, "inbox signal from another node");
                self.inboxes.wake(&m);
            }
            Signal::Query(requester, id) => {
                tracing::debug!(%id, "query signal from another node");
                if !self.queries.is_waiting(&(requester.clone(), id)) {
                    return;
                }
                tokio::spawn(async move {
                    // The requester's own periodic look covers a store that is down now.
                    if let Ok(Some(outcome)) = self.look(&requester, id).await {
                        self.queries.answer(&(requester, id), outcome);
                    }
                });
            }
        }
    }
}
