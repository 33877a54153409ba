//! Durable state behind a trait, so the HTTP handlers never know which store they run on.
//!
//! The embedded store (SQLite in WAL mode with group commit) is the default and serves one
//! node. PostgreSQL ([`PgStore`]) is shared by several nodes, which signal each other through
//! it. Both pass the same conformance suite (`bus/tests/store_conformance.rs`).

mod admin;
pub mod entries;
mod postgres;
mod sqlite;

pub use admin::{Admin, DeadLetterItem, DeadLetters, Redrive, Trace, TracedMessage};
pub use postgres::{PgOptions, PgStore, redact};
pub use sqlite::{SqliteAudit, SqliteStore, StoreOptions};

use std::time::{Duration, SystemTime};

use serde_json::value::RawValue;
use uuid::Uuid;

use crate::audit::{Checkpoint, Entry, Head, Record};
use crate::identity::MemberId;
use crate::registry::Kind;

/// A store whose layout this binary cannot use as it is.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the store was written by a newer simpul (schema version {found}; this binary knows up \
         to {known}): run that newer binary, or restore a backup made for this one"
    )]
    Newer { found: i64, known: i64 },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("migrating the PostgreSQL schema: {0}")]
    Postgres(String),
}

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
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// A validated message ready to be made durable.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: Uuid,
    pub sender: MemberId,
    pub type_: String,
    pub kind: Kind,
    /// SHA-256 of the canonical content (`envelope::content_hash`): "same id, same content".
    pub hash: [u8; 32],
    /// The envelope with `source` and `time` filled in, serialised once, in its RFC 8785
    /// form: what its receipt signs.
    pub envelope: String,
    /// SHA-256 of the stored envelope's RFC 8785 form: what its receipt signs and its audit
    /// record names.
    pub digest: [u8; 32],
    /// HMACs of the persons its payload is about (`x-data-subject`), for the citizen report.
    pub subjects: Vec<[u8; 32]>,
    pub warnings: String,
    pub recipients: Vec<MemberId>,
    /// Events also go to their type's replayable feed.
    pub to_feed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    Accepted,
    /// Same id and content as an earlier message: here are its original warnings and its
    /// envelope as stored then (a retry's receipt is for what was stored).
    Duplicate {
        warnings: String,
        envelope: String,
    },
}

/// Result of an atomic batch append: every message is stored, or none is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    Stored(Vec<Appended>),
    /// The message at this index reuses an id with different content; nothing was stored.
    Conflict(usize),
}

/// A message leased to a consumer.
#[derive(Debug)]
pub struct Leased {
    /// 1 for the first delivery, counting up with each lease.
    pub attempt: u32,
    /// This lease, and no later one: an ack or nack that names it settles the message only
    /// while this lease is the current one.
    pub token: Uuid,
    /// When the lease runs out and the message is delivered again unless acked.
    pub expires_at: SystemTime,
    /// The stored envelope, as stored: answers are built from it without re-serialising.
    pub event: Box<RawValue>,
}

/// What a lease took, and what it sent to the dead letters on the way because their leases
/// had run out `max_attempts` times.
#[derive(Debug, Default)]
pub struct Leases {
    pub leased: Vec<Leased>,
    /// (sender, id) of each message dead-lettered by this lease: a waiting requester of such a
    /// query learns at once that its provider is not answering.
    pub expired: Vec<(MemberId, Uuid)>,
}

/// What an ack or nack names: a message id in the caller's inbox, and optionally the lease it
/// was given. Without the lease, the current lease is meant, whoever took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub id: Uuid,
    pub lease: Option<Uuid>,
}

impl From<Uuid> for Ticket {
    fn from(id: Uuid) -> Self {
        Ticket { id, lease: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Done,
    AlreadyDone,
    /// Not in this member's inbox (or never leased).
    NotFound,
    /// Already settled the other way (e.g. ack after it was dead-lettered).
    Conflict,
    /// The named lease ran out and the message was leased again: the later lease decides.
    Stale,
}

impl Settled {
    /// The answer for one id, from what settling found among its deliveries in the member's
    /// inbox: some leased and now settled, some already settled this way, some settled the
    /// other way. Pending ones (never leased) count as not found.
    pub fn of(changed: bool, already: bool, conflict: bool, stale: bool) -> Settled {
        if changed {
            Settled::Done
        } else if already {
            Settled::AlreadyDone
        } else if conflict {
            Settled::Conflict
        } else if stale {
            Settled::Stale
        } else {
            Settled::NotFound
        }
    }
}

/// Why a delivery went to the dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetter {
    /// The recipient refused it, with a reason.
    Nacked,
    /// Its leases ran out `--max-attempts` times without an ack.
    OutOfAttempts,
    /// A query whose requester stopped waiting (504): no one needs its answer any more.
    Withdrawn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    Acked,
    DeadLettered,
}

#[derive(Debug)]
pub struct DeliveryStatus {
    pub recipient: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub reason: Option<String>,
    pub dead: Option<DeadLetter>,
}

#[derive(Debug)]
pub struct MessageRecord {
    pub id: Uuid,
    pub sender: MemberId,
    pub type_: String,
    pub accepted_at: SystemTime,
    pub deliveries: Vec<DeliveryStatus>,
    pub reply: Option<String>,
}

#[derive(Debug)]
pub struct FeedItem {
    pub cursor: i64,
    pub event: Box<RawValue>,
}

/// A provider's reply, and the persons it is about.
#[derive(Debug, Clone, Default)]
pub struct NewReply {
    pub body: String,
    /// HMACs of the persons its payload is about (`x-data-subject`).
    pub subjects: Vec<[u8; 32]>,
}

impl From<&str> for NewReply {
    fn from(body: &str) -> Self {
        body.to_owned().into()
    }
}

impl From<String> for NewReply {
    fn from(body: String) -> Self {
        NewReply {
            body,
            subjects: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// Stored as the answer to `requester`'s query.
    Stored { requester: MemberId },
    /// A reply was already stored; this is it.
    Existing(String),
    /// `provider` holds no delivery of this query.
    NotFound,
    /// The query was dead-lettered (nacked, out of attempts, withdrawn): it takes no answer.
    Closed(DeadLetter),
    /// Several requesters' open queries carry this id; the provider must say whose.
    Ambiguous,
}

/// A lease request: how many, for how long, and when to give up on a message.
#[derive(Debug, Clone, Copy)]
pub struct LeaseRequest {
    pub max: usize,
    pub lease: Duration,
    pub max_attempts: u32,
}

/// What one node tells every node: a wake-up, never data. A lost signal costs only latency,
/// because every waiter also looks at the store again on a short period.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Something became ready in this member's inbox: a waiting long poll should look.
    Inbox(MemberId),
    /// This requester's query has its outcome in the store (a reply, a nack, or leases that
    /// ran out): a requester waiting for it should read it.
    Query(MemberId, Uuid),
}

/// The log of what was accepted and what became of it, as senders, requesters and feed
/// readers see it. Reads take the caller, so that an audit can record who read what.
#[async_trait::async_trait]
pub trait MessageLog: Send + Sync + 'static {
    /// Makes the batch durable before returning: a caller may answer 202 on `Ok(Stored)`.
    /// A batch of queries only, which no one is answered for until the reply is stored, may
    /// become durable with that reply instead.
    async fn append(&self, batch: Vec<NewMessage>) -> Result<AppendOutcome, StoreError>;
    /// Stores a provider's reply to a query and settles the provider's delivery. `requester`
    /// names whose query, for the rare id two requesters both used.
    async fn reply(
        &self,
        provider: &MemberId,
        id: Uuid,
        requester: Option<MemberId>,
        reply: NewReply,
    ) -> Result<ReplyOutcome, StoreError>;
    /// Takes `requester`'s query back from its provider's inbox once nobody waits for the
    /// answer; returns false when it was already settled.
    async fn withdraw(
        &self,
        requester: &MemberId,
        id: Uuid,
        reason: &str,
    ) -> Result<bool, StoreError>;
    /// Puts a query withdrawn after its requester's timeout back in its provider's inbox, for
    /// the requester's retry; false when there was nothing to reopen.
    async fn reopen(&self, requester: &MemberId, id: Uuid) -> Result<bool, StoreError>;
    /// The senders and types of the messages with this id in `recipient`'s inbox (a provider
    /// replying to a query asked through another node, or before a restart).
    async fn addressed(
        &self,
        recipient: &MemberId,
        id: Uuid,
    ) -> Result<Vec<(MemberId, String)>, StoreError>;
    /// A message as its sender sees it: ids belong to their sender.
    async fn message(
        &self,
        sender: &MemberId,
        id: Uuid,
    ) -> Result<Option<MessageRecord>, StoreError>;
    /// The events of `type_` after cursor `after`, as `reader` reads them. A cursor never
    /// skips an event that commits later with a lower one.
    async fn feed(
        &self,
        reader: &MemberId,
        type_: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FeedItem>, StoreError>;
}

/// Each member's inbox: leases that run out, and settlement by the recipient.
#[async_trait::async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Leases up to `req.max` messages from `member`'s inbox, dead-lettering those whose
    /// lease ran out `req.max_attempts` times.
    async fn lease(&self, member: &MemberId, req: LeaseRequest) -> Result<Leases, StoreError>;
    /// Whether a lease for `member` would find anything now: a read, so waiting consumers can
    /// look often without taking the writer's time.
    async fn has_ready(&self, member: &MemberId) -> Result<bool, StoreError>;
    /// Every recipient with open (pending or leased) deliveries: how many, and since when
    /// the oldest was accepted. A read over the open-inbox index only.
    async fn queues(&self) -> Result<Vec<QueueStat>, StoreError>;
    /// Acks each ticket in `member`'s inbox, all in one durable commit, answering for each.
    async fn ack(
        &self,
        member: &MemberId,
        tickets: Vec<Ticket>,
    ) -> Result<Vec<Settled>, StoreError>;
    /// Dead-letters the message for `member`, recording `reason` for its sender. Also answers
    /// the senders of what was dead-lettered, so a nacked query's requester hears at once.
    async fn nack(
        &self,
        member: &MemberId,
        ticket: Ticket,
        reason: &str,
    ) -> Result<(Settled, Vec<MemberId>), StoreError>;
}

/// Carries [`Signal`]s between the nodes that share a store. A store that only one process
/// opens (the embedded one) has no other nodes: it keeps the defaults, which send nothing.
pub trait Notifier: Send + Sync + 'static {
    /// Tells the other nodes. Never waits: under pressure a signal may be dropped.
    fn publish(&self, _signal: Signal) {}
    /// The signals other nodes publish, taken once at start; `None` when there are none.
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<Signal>> {
        None
    }
}

/// A delivery waiting in the outbox for the transport (RabbitMQ) to take it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The message's place in the log: the outbox is read in this order.
    pub seq: i64,
    pub recipient: MemberId,
    pub sender: MemberId,
    pub id: Uuid,
    /// The stored envelope, as accepted.
    pub envelope: String,
}

/// One recipient's open deliveries.
#[derive(Debug, Clone)]
pub struct QueueStat {
    pub recipient: MemberId,
    pub depth: u64,
    pub oldest: Option<SystemTime>,
}

/// How much waits in the outbox, and since when.
#[derive(Debug, Clone, Copy, Default)]
pub struct Backlog {
    pub count: u64,
    pub oldest: Option<SystemTime>,
}

/// Proof that this node is the store's one relay; `lost` resolves when it no longer is (its
/// database session ended), and dropping it lets another node take over.
pub struct Leadership {
    pub lost: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

/// Deliveries to members that a transport serves, written in the same commit as the accept
/// ("transactional outbox"), and what the transport reports back.
#[async_trait::async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Waits until this node holds the relay's lock: one relay publishes at a time, so each
    /// recipient gets its messages in order, and another node's relay takes over the moment
    /// the holder's session ends (a crash included).
    async fn lead(&self) -> Result<Leadership, StoreError>;
    /// The oldest `limit` deliveries still to publish, in log order.
    async fn outgoing(&self, limit: usize) -> Result<Vec<Outgoing>, StoreError>;
    /// The broker confirmed these (log position, recipient): their status becomes delivered.
    async fn published(&self, done: &[(i64, MemberId)]) -> Result<(), StoreError>;
    /// The broker dead-lettered `recipient`'s copy of (sender, id) with `reason`; false when
    /// there is no such delivery (already recorded, or purged).
    async fn dead_lettered(
        &self,
        recipient: &MemberId,
        sender: &MemberId,
        id: Uuid,
        dead: DeadLetter,
        reason: &str,
    ) -> Result<bool, StoreError>;
    async fn backlog(&self) -> Result<Backlog, StoreError>;
}

/// The sealed audit chain, as a verifier reads it: also open on a store no bus is running on.
#[async_trait::async_trait]
pub trait AuditRead: Send + Sync {
    /// The end of the sealed chain and the last checkpoint (zeros when there is none).
    async fn audit_head(&self) -> Result<Head, StoreError>;
    /// Up to `limit` sealed records after position `after`, in chain order.
    async fn audit_records(&self, after: i64, limit: usize) -> Result<Vec<Record>, StoreError>;
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
    /// How many records wait to be chained.
    async fn unsealed_count(&self) -> Result<i64, StoreError>;
}

/// The audit log's writes. Every other write of a store records its own action in the same
/// commit; these record what changes nothing else (reads, refusals) and build the chain.
#[async_trait::async_trait]
pub trait AuditTrail: AuditRead + 'static {
    /// Records durably: a read is answered only once its record is on disk.
    async fn record(&self, entries: Vec<Entry>) -> Result<(), StoreError>;
    /// Waits until this node is the store's one sealer (at once for the embedded store).
    async fn lead_sealing(&self) -> Result<Leadership, StoreError>;
    /// Up to `limit` records not yet chained, in the order they committed, with their rows.
    /// Always none for a store that chains each record as it writes it (one writer).
    async fn unsealed(&self, limit: usize) -> Result<Vec<(i64, Entry)>, StoreError>;
    /// Every record about the person whose identifier has HMAC `subject`: of the messages and
    /// replies that carried it (sent, delivered, settled, replied, status read) and of the
    /// feed reads that returned them; oldest first.
    async fn subject_records(&self, subject: [u8; 32]) -> Result<Vec<Entry>, StoreError>;
    /// Writes chain positions and hashes for those rows, and a checkpoint, in one commit.
    async fn seal(
        &self,
        sealed: Vec<(i64, Record)>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<(), StoreError>;
}

/// A whole backend: the log, the queues, the audit and the signals between nodes.
#[async_trait::async_trait]
pub trait Store: MessageLog + DeliveryQueue + Notifier + AuditTrail + Admin {
    /// `Ok` when the store takes writes; otherwise why not (its last write failed, it cannot
    /// reach its database, or it is closed).
    async fn health(&self) -> Result<(), String>;
    /// Flushes and stops the writer; later calls fail with `Unavailable`.
    async fn close(&self);
}
