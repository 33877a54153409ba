//! One node of the bus as the HTTP handlers (and any other ingress) see it: the registry, the
//! store and this node's waiters, with the operations that change state. A handler parses its
//! request, calls one of these, and renders the answer; the rules live here.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::ingest::Prepared;
use super::query::{self, NoQuery};
use super::wakeups::Wakeups;
use crate::audit::{Action, Entry};
use crate::identity::MemberId;
use crate::problem::FieldError;
use crate::registry::Registry;
use crate::store::{
    AppendOutcome, Appended, LeaseRequest, Leased, Leases, Settled, Store, StoreError, Ticket,
};
use crate::trust::SignerCell;

/// Why an operation failed after its input was parsed; each becomes one problem type.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state does not allow it (an id reused with other content, a reply that differs
    /// from the stored one, a query that takes no reply).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    NoQuery(#[from] NoQuery),
    /// A provider's reply that its type's response schema refuses.
    #[error("{} problem(s) with the reply", errors.len())]
    Reply { errors: Vec<FieldError> },
    /// The provider nacked the query (502).
    #[error("{0}")]
    ProviderRefused(String),
    /// The provider took the query but its leases ran out without a reply (504).
    #[error("{0}")]
    ProviderUnavailable(String),
    /// No reply within the query timeout (504).
    #[error("no reply within {0:?}")]
    QueryTimeout(Duration),
}

pub struct Node {
    pub registry: Arc<Registry>,
    pub store: Arc<dyn Store>,
    /// Long polls and requesters waiting on this node, and the signals between nodes.
    pub wakeups: Arc<Wakeups>,
    /// How long a requester waits for its provider's reply.
    pub query_timeout: Duration,
    /// The bus's key, which signs receipts.
    pub signer: Arc<SignerCell>,
}

/// A message made durable, with the bus's signed receipt for it.
#[derive(Debug)]
pub struct Receipted {
    pub appended: Appended,
    /// Compact JWS, payload detached: the RFC 8785 form of the envelope as stored.
    pub receipt: String,
    /// The stored envelope's `time` (the bus fills it when the sender did not), which a
    /// sender needs to rebuild what the receipt signs.
    pub time: String,
}

impl Node {
    /// A node on `store`, listening for the other nodes' signals when the store has others.
    pub fn new(
        registry: Arc<Registry>,
        store: Arc<dyn Store>,
        query_timeout: Duration,
        signer: Arc<SignerCell>,
    ) -> Node {
        Node {
            wakeups: Wakeups::start(store.clone()),
            registry,
            store,
            query_timeout,
            signer,
        }
    }

    /// Makes a batch durable (see [`Node::append`]) and signs a receipt for each message: over
    /// the envelope this batch stored, or for a duplicate over the one stored the first time.
    pub async fn accept(&self, batch: Vec<Prepared>) -> Result<Vec<Receipted>, Failure> {
        let stored: Vec<(Vec<u8>, String)> = batch
            .iter()
            .map(|p| (p.canonical.clone(), p.time.clone()))
            .collect();
        let results = self.append(batch).await?;
        results
            .into_iter()
            .zip(stored)
            .map(|(appended, (canonical, time))| {
                let (canonical, time) = match &appended {
                    Appended::Accepted => (canonical, time),
                    Appended::Duplicate { envelope, .. } => {
                        let v: serde_json::Value = serde_json::from_str(envelope)
                            .map_err(|e| StoreError::Corrupt(format!("stored envelope: {e}")))?;
                        let time = v["time"].as_str().unwrap_or_default().to_owned();
                        (crate::trust::canonical(&v), time)
                    }
                };
                Ok(Receipted {
                    receipt: self.signer.receipt(&canonical),
                    appended,
                    time,
                })
            })
            .collect()
    }

    /// Makes a batch durable, all or nothing, and wakes its recipients' long polls here and
    /// on every other node.
    pub async fn append(&self, batch: Vec<Prepared>) -> Result<Vec<Appended>, Failure> {
        let ids: Vec<Uuid> = batch.iter().map(|p| p.msg.id).collect();
        let mut wake: Vec<MemberId> = Vec::new();
        let msgs = batch
            .into_iter()
            .map(|p| {
                wake.extend(p.msg.recipients.iter().cloned());
                p.msg
            })
            .collect();
        match self.store.append(msgs).await? {
            // Ids belong to their sender, so this names one of the sender's own ids.
            AppendOutcome::Conflict(i) => Err(Failure::Conflict(format!(
                "you already used message id {} with different content",
                ids[i]
            ))),
            AppendOutcome::Stored(results) => {
                // One wake-up per message: each wakes one waiting poll.
                for m in &wake {
                    self.wakeups.wake(m);
                }
                Ok(results)
            }
        }
    }

    /// Records that `actor`'s message (or reply to query `id`) was refused with the problem
    /// class `class`. A refusal stays a refusal if its record cannot be written; the store's
    /// trouble shows in `/readyz` and the log.
    pub async fn refused(&self, actor: &MemberId, what: &str, id: Option<Uuid>, class: &str) {
        let mut e = Entry::new(actor.as_str(), Action::Reject).detail(format!("{what}: {class}"));
        e.id = id;
        if let Err(err) = self.store.record(vec![e]).await {
            tracing::warn!(error = %err, "a refusal could not be audited");
        }
    }

    /// Leases from `member`'s inbox. The requesters of queries that this lease found out of
    /// attempts hear at once that their provider is not answering.
    pub async fn lease(
        &self,
        member: &MemberId,
        req: LeaseRequest,
    ) -> Result<Vec<Leased>, Failure> {
        let Leases { leased, expired } = self.store.lease(member, req).await?;
        for (sender, id) in expired {
            self.wakeups
                .settled(&sender, id, query::unavailable(member));
        }
        Ok(leased)
    }

    /// Dead-letters the ticket's message in `member`'s inbox with its reason, which is shown
    /// to the sender and may be logged, so personal identifiers in it are masked. A nacked
    /// query's requester hears why at once.
    pub async fn nack(
        &self,
        member: &MemberId,
        ticket: Ticket,
        reason: &str,
    ) -> Result<Settled, Failure> {
        let reason = crate::formats::mask_digit_runs(reason);
        let (outcome, senders) = self.store.nack(member, ticket, &reason).await?;
        for sender in senders {
            self.wakeups
                .settled(&sender, ticket.id, query::refused(member, &reason));
        }
        Ok(outcome)
    }
}
