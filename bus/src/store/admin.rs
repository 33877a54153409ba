//! What an operator reads and does across members: dead letters, their redrive, and the
//! trace of one message. Kept apart from the member-facing roles because its reads cross
//! the line those keep (a member sees only its own inbox and its own messages).

use std::time::SystemTime;

use uuid::Uuid;

use super::{DeadLetter, MessageRecord, StoreError};
use crate::audit::Entry;
use crate::identity::MemberId;

/// One dead-lettered delivery, as an operator lists it. No payload: the operator decides
/// from who, what and why, and the message trace, never from the personal data.
#[derive(Debug, Clone)]
pub struct DeadLetterItem {
    /// Place in the log: the cursor for the next page.
    pub seq: i64,
    pub sender: MemberId,
    pub id: Uuid,
    pub type_: String,
    pub accepted_at: SystemTime,
    pub attempts: u32,
    pub dead: Option<DeadLetter>,
    pub reason: Option<String>,
}

/// A page of a recipient's dead letters, and how many it has in all.
#[derive(Debug, Default)]
pub struct DeadLetters {
    pub total: u64,
    pub items: Vec<DeadLetterItem>,
}

/// Which dead letters to put back in the inbox.
#[derive(Debug, Clone)]
pub enum Redrive {
    /// The dead letter with this id; `sender` picks one when two senders used the id.
    One { id: Uuid, sender: Option<MemberId> },
    /// Up to this many, oldest first: a long redrive goes in steps that each commit.
    Oldest(usize),
}

/// One message with an id, as the operator's trace shows it: its stored envelope (without
/// its data, which the caller strips), its deliveries and its reply.
#[derive(Debug)]
pub struct TracedMessage {
    pub record: MessageRecord,
    pub envelope: String,
}

/// Everything the store knows of a message id: the messages (one per sender that used the
/// id, while within retention) and every audit record naming it, oldest first.
#[derive(Debug, Default)]
pub struct Trace {
    pub messages: Vec<TracedMessage>,
    pub audit: Vec<Entry>,
}

#[async_trait::async_trait]
pub trait Admin: Send + Sync + 'static {
    /// `recipient`'s dead letters after log position `after`, oldest first.
    async fn dead_letters(
        &self,
        recipient: &MemberId,
        after: i64,
        limit: usize,
    ) -> Result<DeadLetters, StoreError>;
    /// Puts dead letters back in `recipient`'s inbox (or its transport's outbox) with their
    /// attempts reset, recording `operator`'s redrive of each in the same commit. Answers
    /// (sender, id) of each one redriven.
    async fn redrive(
        &self,
        operator: &MemberId,
        recipient: &MemberId,
        which: Redrive,
    ) -> Result<Vec<(MemberId, Uuid)>, StoreError>;
    /// Every recipient's count of dead letters (only those with any).
    async fn dead_counts(&self) -> Result<Vec<(MemberId, u64)>, StoreError>;
    async fn trace(&self, id: Uuid) -> Result<Trace, StoreError>;
}

/// The audit record of `operator` putting `sender`'s message back in `recipient`'s inbox.
pub fn redriven(
    operator: &MemberId,
    recipient: &str,
    sender: &str,
    type_: &str,
    id: Uuid,
) -> Entry {
    Entry::new(operator.as_str(), crate::audit::Action::Redrive)
        .type_(type_)
        .id(id)
        .counterpart(recipient)
        .detail(format!("sent by {sender}"))
}
