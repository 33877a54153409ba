//! Durable state behind a trait, so the HTTP handlers never know which store they run on.
//!
//! The embedded store (SQLite in WAL mode with group commit) is the default; the scale-out
//! issue adds PostgreSQL and RabbitMQ behind the same trait.

mod sqlite;

pub use sqlite::{SqliteStore, StoreOptions};

use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::identity::MemberId;
use crate::registry::Kind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take writes right now (locked, disk full, I/O error); retry later.
    #[error("{0}")]
    Unavailable(String),
    /// Too many writes are already queued; retry later.
    #[error("write queue full")]
    Overloaded,
    #[error("store corrupt: {0}")]
    Corrupt(String),
}

/// A validated message ready to be made durable.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: Uuid,
    pub sender: MemberId,
    pub type_: String,
    pub kind: Kind,
    /// SHA-256 of the event as received; decides "same id, same content".
    pub hash: [u8; 32],
    /// The envelope with `source` and `time` filled in, serialised once.
    pub envelope: String,
    pub warnings: String,
    pub recipients: Vec<MemberId>,
    /// Events also go to their type's replayable feed.
    pub to_feed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    Accepted,
    /// Same id and content as an earlier message: here are its original warnings.
    Duplicate {
        warnings: String,
    },
}

/// Result of an atomic batch append: every message is stored, or none is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    Stored(Vec<Appended>),
    /// The message at this index reuses an id with different content; nothing was stored.
    Conflict(usize),
}

/// A message leased to a consumer until `lease_until`.
#[derive(Debug, Serialize)]
pub struct Leased {
    pub attempt: u32,
    pub lease_expires_at: String,
    pub event: Box<RawValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Done,
    AlreadyDone,
    /// Not in this member's inbox (or never leased).
    NotFound,
    /// Already settled the other way (e.g. ack after it was dead-lettered).
    Conflict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Acked,
    DeadLettered,
}

#[derive(Debug, Serialize)]
pub struct DeliveryStatus {
    pub recipient: String,
    pub state: DeliveryState,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug)]
pub struct MessageRecord {
    pub id: Uuid,
    pub sender: MemberId,
    pub type_: String,
    pub accepted_at_ms: i64,
    pub deliveries: Vec<DeliveryStatus>,
    pub reply: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FeedItem {
    pub cursor: i64,
    pub event: Box<RawValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyOutcome {
    Stored,
    /// A reply was already stored; this is it.
    Existing(String),
    /// `provider` holds no delivery of this query.
    NotFound,
}

/// A lease request: how many, for how long, and when to give up on a message.
#[derive(Debug, Clone, Copy)]
pub struct LeaseRequest {
    pub max: usize,
    pub lease: Duration,
    pub max_attempts: u32,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Makes the batch durable before returning: a caller may answer 202 on `Ok(Stored)`.
    /// A batch of queries only, which no one is answered for until the reply is stored, may
    /// become durable with that reply instead.
    async fn append(&self, batch: Vec<NewMessage>) -> Result<AppendOutcome, StoreError>;
    /// Leases up to `req.max` messages from `member`'s inbox, dead-lettering those whose
    /// lease ran out `req.max_attempts` times.
    async fn lease(&self, member: &MemberId, req: LeaseRequest) -> Result<Vec<Leased>, StoreError>;
    /// Whether a lease for `member` would find anything now: a read, so waiting consumers can
    /// look often without taking the writer's time.
    async fn has_ready(&self, member: &MemberId) -> Result<bool, StoreError>;
    /// Acks each of `ids` in `member`'s inbox, all in one durable commit, answering for each.
    async fn ack(&self, member: &MemberId, ids: Vec<Uuid>) -> Result<Vec<Settled>, StoreError>;
    /// Dead-letters the message for `member`, recording `reason` for its sender.
    async fn nack(&self, member: &MemberId, id: Uuid, reason: &str) -> Result<Settled, StoreError>;
    /// Stores a provider's reply to a query and settles the provider's delivery.
    async fn reply(
        &self,
        provider: &MemberId,
        id: Uuid,
        reply: String,
    ) -> Result<ReplyOutcome, StoreError>;
    async fn message(&self, id: Uuid) -> Result<Option<MessageRecord>, StoreError>;
    async fn feed(
        &self,
        type_: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FeedItem>, StoreError>;
    /// True when the store can take writes.
    async fn ready(&self) -> bool;
    /// Flushes and stops the writer; later calls fail with `Unavailable`.
    async fn close(&self);
}
