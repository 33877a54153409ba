//! What operators may do that members may not: see every queue, bring dead letters back, and
//! trace a message across its sender, recipients and audit records. Who is an operator is
//! the registry's word (`operator = true`), checked here for every ingress.

use std::collections::HashMap;

use uuid::Uuid;

use super::node::{Failure, Node};
use super::presence::Seen;
use crate::identity::MemberId;
use crate::registry::Member;
use crate::store::{DeadLetters, QueueStat, Redrive, Trace};

/// Largest page of dead letters, and largest step of a redrive of all: each step is one
/// commit, so a long redrive never holds the writer (or row locks) for long.
pub const MAX_PAGE: usize = 1000;

/// A member the registry names an operator. Only [`Node::operator`] makes one, so the
/// operator-only calls below cannot be reached without that check, which an ingress makes
/// once, before it reads the rest of the request (a non-operator hears 403, never 400).
pub struct Operator(MemberId);

impl Operator {
    pub fn id(&self) -> &MemberId {
        &self.0
    }
}

/// One member as the console shows it: its registry entry and its state now.
pub struct MemberState<'a> {
    pub member: &'a Member,
    /// What this node last saw of it (nothing if it has not connected here).
    pub seen: Option<Seen>,
    pub queue: Option<QueueStat>,
    pub dead_letters: u64,
}

impl Node {
    /// The caller as an [`Operator`]; otherwise 403 saying how to become one.
    pub fn operator(&self, member: &MemberId) -> Result<Operator, Failure> {
        match self.registry.member(member) {
            Some(m) if m.operator => Ok(Operator(member.clone())),
            _ => Err(Failure::Forbidden(format!(
                "{member} is not an operator (registry: operator = true)"
            ))),
        }
    }

    fn known(&self, recipient: &MemberId) -> Result<(), Failure> {
        match self.registry.member(recipient) {
            Some(_) => Ok(()),
            None => Err(Failure::NotFound(format!(
                "{recipient} is not a member of this bus"
            ))),
        }
    }

    pub async fn dead_letters(
        &self,
        _operator: &Operator,
        recipient: &MemberId,
        after: i64,
        limit: usize,
    ) -> Result<DeadLetters, Failure> {
        self.known(recipient)?;
        Ok(self
            .store
            .dead_letters(recipient, after, limit.min(MAX_PAGE))
            .await?)
    }

    /// Puts dead letters back in `recipient`'s inbox with their attempts reset, audited as
    /// `operator`'s; a waiting long poll of the recipient, on any node, wakes.
    pub async fn redrive(
        &self,
        operator: &Operator,
        recipient: &MemberId,
        which: Redrive,
    ) -> Result<Vec<(MemberId, Uuid)>, Failure> {
        self.known(recipient)?;
        let operator = operator.id();
        let which = match which {
            Redrive::Oldest(n) => Redrive::Oldest(n.clamp(1, MAX_PAGE)),
            one => one,
        };
        let done = self.store.redrive(operator, recipient, which).await?;
        if !done.is_empty() {
            crate::telemetry::redriven(recipient, done.len() as u64);
            tracing::info!(%operator, %recipient, count = done.len(), "dead letters redriven");
            self.wakeups.wake(recipient);
        }
        Ok(done)
    }

    pub async fn trace(&self, _operator: &Operator, id: Uuid) -> Result<Trace, Failure> {
        let trace = self.store.trace(id).await?;
        if trace.messages.is_empty() && trace.audit.is_empty() {
            return Err(Failure::NotFound(format!(
                "no message or audit record has id {id}"
            )));
        }
        Ok(trace)
    }

    /// Every member of the registry with its queue, dead letters and presence, in registry
    /// order.
    pub async fn members_now(&self, _operator: &Operator) -> Result<Vec<MemberState<'_>>, Failure> {
        let mut queues: HashMap<MemberId, QueueStat> = (self.store.queues().await?)
            .into_iter()
            .map(|q| (q.recipient.clone(), q))
            .collect();
        let dead: HashMap<MemberId, u64> = self.store.dead_counts().await?.into_iter().collect();
        let seen = self.presence.all();
        Ok(self
            .registry
            .members()
            .map(|m| MemberState {
                member: m,
                seen: seen.get(&m.id).copied(),
                queue: queues.remove(&m.id),
                dead_letters: dead.get(&m.id).copied().unwrap_or(0),
            })
            .collect())
    }
}
