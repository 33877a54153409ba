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
use crate::subjects::SubjectKey;
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
    /// The caller may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// What the request names does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// A path or query parameter that is not what it must be (400).
    #[error("{detail}")]
    BadParameter { name: String, detail: String },
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
    /// The secret under which persons are indexed for the citizen report.
    pub subject_key: Arc<SubjectKey>,
    /// The members this node has seen, and their certificates' expiry.
    pub presence: Arc<super::presence::Presence>,
}

/// The bus's secrets a node works with.
#[derive(Clone)]
pub struct Keys {
    pub signer: Arc<SignerCell>,
    pub subjects: Arc<SubjectKey>,
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
        keys: Keys,
    ) -> Node {
        Node {
            wakeups: Wakeups::start(store.clone()),
            registry,
            store,
            query_timeout,
            signer: keys.signer,
            subject_key: keys.subjects,
            presence: Default::default(),
        }
    }

    /// Makes a batch durable (see [`Node::append`]) and signs a receipt for each message: over
    /// the envelope this batch stored, or for a duplicate over the one stored the first time.
    pub async fn accept(&self, mut batch: Vec<Prepared>) -> Result<Vec<Receipted>, Failure> {
        // Signed before the append, from the envelope about to be stored (no copy of it is
        // kept); handed out only once the append says the message is durable.
        let signed: Vec<(String, String)> = batch
            .iter_mut()
            .map(|p| {
                let receipt = self.signer.receipt(p.msg.envelope.as_bytes());
                (receipt, std::mem::take(&mut p.time))
            })
            .collect();
        let counted: Vec<(Arc<crate::registry::TypeDef>, MemberId)> = batch
            .iter()
            .map(|p| (p.def.clone(), p.msg.sender.clone()))
            .collect();
        let results = self.append(batch).await?;
        for ((def, sender), r) in counted.iter().zip(&results) {
            if matches!(r, Appended::Accepted) {
                crate::telemetry::accepted(&def.name, sender, 1);
            }
        }
        results
            .into_iter()
            .zip(signed)
            .map(|(appended, (receipt, time))| {
                let Appended::Duplicate { envelope, .. } = &appended else {
                    return Ok(Receipted {
                        receipt,
                        appended,
                        time,
                    });
                };
                // A retry: the receipt is for what was stored the first time.
                let v: serde_json::Value = serde_json::from_str(envelope)
                    .map_err(|e| StoreError::Corrupt(format!("stored envelope: {e}")))?;
                Ok(Receipted {
                    receipt: self.signer.receipt(&crate::trust::canonical(&v)),
                    time: v["time"].as_str().unwrap_or_default().to_owned(),
                    appended,
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
            .map(|mut p| {
                wake.extend(p.msg.recipients.iter().cloned());
                p.msg.subjects = self.subject_key.hmacs(&p.identifiers);
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

    /// The citizen's data-access report: every record about the person whose `kind`
    /// identifier is `value`, for a member granted `subject_report`. The request is itself
    /// audited, under the subject's HMAC, never the identifier.
    pub async fn subject_report(
        &self,
        asker: &MemberId,
        kind: &str,
        value: &str,
    ) -> Result<Vec<Entry>, Failure> {
        if !self
            .registry
            .member(asker)
            .is_some_and(|m| m.subject_report)
        {
            self.refused(asker, "subject report", None, "forbidden")
                .await;
            return Err(Failure::Forbidden(format!(
                "{asker} is not granted subject_report in the registry"
            )));
        }
        let format = crate::formats::Format::from_name(kind)
            .filter(|_| crate::subjects::KINDS.contains(&kind))
            .ok_or_else(|| Failure::BadParameter {
                name: "kind".into(),
                detail: format!("must be one of {:?}", crate::subjects::KINDS),
            })?;
        if !format.is_valid(value) {
            return Err(Failure::BadParameter {
                name: kind.into(),
                detail: format!("is not a valid {kind}"),
            });
        }
        let subject = self.subject_key.hmac(kind, value);
        let asked = Entry::new(asker.as_str(), Action::SubjectReport)
            .detail(format!("{kind} {}", hex::encode(subject)));
        self.store.record(vec![asked]).await?;
        Ok(self.store.subject_records(subject).await?)
    }

    /// Leases from `member`'s inbox. The requesters of queries that this lease found out of
    /// attempts hear at once that their provider is not answering.
    pub async fn lease(
        &self,
        member: &MemberId,
        req: LeaseRequest,
    ) -> Result<Vec<Leased>, Failure> {
        let Leases { leased, expired } = self.store.lease(member, req).await?;
        crate::telemetry::leased(member, leased.len() as u64);
        crate::telemetry::dead_letters(member, "out_of_attempts", expired.len() as u64);
        for (sender, id) in expired {
            self.wakeups
                .settled(&sender, id, query::unavailable(member));
        }
        Ok(leased)
    }

    /// Acks each ticket in `member`'s inbox, all in one durable commit, answering for each.
    pub async fn ack(
        &self,
        member: &MemberId,
        tickets: Vec<Ticket>,
    ) -> Result<Vec<Settled>, Failure> {
        let outcomes = self.store.ack(member, tickets).await?;
        let done = outcomes.iter().filter(|o| **o == Settled::Done).count();
        crate::telemetry::acked(member, done as u64);
        Ok(outcomes)
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
        if outcome == Settled::Done {
            crate::telemetry::nacked(member);
            crate::telemetry::dead_letters(member, "nacked", 1);
        }
        for sender in senders {
            self.wakeups
                .settled(&sender, ticket.id, query::refused(member, &reason));
        }
        Ok(outcome)
    }
}
