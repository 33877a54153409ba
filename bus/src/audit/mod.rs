//! The audit log: what every member did, in a hash chain that signed checkpoints anchor.
//!
//! Stores write [`Entry`]s in the same commit as the action they record, so an action and its
//! record are durable together and auditing costs no fsync of its own. The chain is made after
//! the commit by one [`crate::core::audit::Sealer`] per store (on PostgreSQL, whichever node holds its
//! lock): chaining at write time would make every node's writes wait for one another's.
//! Records never hold a payload: the digest of the canonical envelope or reply stands for it.

pub mod verify;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::trust::canonical;

/// What an actor did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// An event or message accepted (202).
    Accept,
    /// A query accepted for its provider.
    Query,
    /// A message or reply refused; `detail` names the problem class.
    Reject,
    /// A delivery leased to its recipient; `detail` gives the attempt.
    Lease,
    /// A delivery handed to the broker for a member served over AMQP.
    Publish,
    Ack,
    Nack,
    /// A delivery given up (out of attempts, withdrawn, or the broker's dead letter).
    DeadLetter,
    /// A provider's reply to a query.
    Reply,
    /// A feed read; `detail` gives the cursors read.
    FeedRead,
    /// A sender reading the status of its message.
    StatusRead,
    /// A member reading the citizen report of one person; `detail` names the subject's HMAC.
    SubjectReport,
    /// An operator put a dead letter back in its recipient's inbox; `counterpart` names the
    /// recipient.
    Redrive,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Query => "query",
            Action::Reject => "reject",
            Action::Lease => "lease",
            Action::Publish => "publish",
            Action::Ack => "ack",
            Action::Nack => "nack",
            Action::DeadLetter => "dead_letter",
            Action::Reply => "reply",
            Action::FeedRead => "feed_read",
            Action::StatusRead => "status_read",
            Action::SubjectReport => "subject_report",
            Action::Redrive => "redrive",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
}

/// Microseconds since the epoch: the audit's clock, exact in JSON and in both stores.
pub fn now_us() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

/// One thing that happened, before it takes its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: i64,
    pub actor: String,
    pub action: Action,
    pub type_: Option<String>,
    pub id: Option<Uuid>,
    /// The other party: the recipients of an accept, the sender of a delivery, the requester
    /// of a reply.
    pub counterpart: Option<String>,
    /// SHA-256 (hex) of the canonical envelope or reply.
    pub digest: Option<String>,
    pub detail: Option<String>,
}

impl Entry {
    pub fn new(actor: impl Into<String>, action: Action) -> Entry {
        Entry {
            at: now_us(),
            actor: actor.into(),
            action,
            type_: None,
            id: None,
            counterpart: None,
            digest: None,
            detail: None,
        }
    }

    pub fn type_(mut self, t: impl Into<String>) -> Entry {
        self.type_ = Some(t.into());
        self
    }

    pub fn id(mut self, id: Uuid) -> Entry {
        self.id = Some(id);
        self
    }

    pub fn counterpart(mut self, c: impl Into<String>) -> Entry {
        self.counterpart = Some(c.into());
        self
    }

    pub fn digest(mut self, d: &[u8; 32]) -> Entry {
        self.digest = Some(hex::encode(d));
        self
    }

    pub fn detail(mut self, d: impl Into<String>) -> Entry {
        self.detail = Some(d.into());
        self
    }
}

/// A SHA-256 hash from its 64 hex digits.
pub fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// A record in the chain: its entry, its position (from 1), and the hash of the one before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub pos: i64,
    pub entry: Entry,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
}

impl Record {
    /// Chains `entry` at `pos` after a record whose hash is `prev`.
    pub fn seal(entry: Entry, pos: i64, prev: [u8; 32]) -> Record {
        let hash = Self::hash_of(&entry, pos, &prev);
        Record {
            pos,
            entry,
            prev,
            hash,
        }
    }

    /// Chains `entries` (each with the row it was stored in), in order, after the record at
    /// `pos` whose hash is `prev`: how a sealer chains what waits for it.
    pub fn chain<R>(entries: Vec<(R, Entry)>, pos: i64, prev: [u8; 32]) -> Vec<(R, Record)> {
        let (mut pos, mut prev) = (pos, prev);
        entries
            .into_iter()
            .map(|(row, entry)| {
                pos += 1;
                let r = Record::seal(entry, pos, prev);
                prev = r.hash;
                (row, r)
            })
            .collect()
    }

    /// What is hashed: the record as exported, without its own hash (absent fields left out).
    fn body(entry: &Entry, pos: i64, prev: &[u8; 32]) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("pos".into(), pos.into());
        m.insert("at".into(), entry.at.into());
        m.insert("actor".into(), entry.actor.clone().into());
        m.insert("action".into(), entry.action.as_str().into());
        let optional = [
            ("type", entry.type_.clone()),
            ("id", entry.id.map(|i| i.to_string())),
            ("counterpart", entry.counterpart.clone()),
            ("digest", entry.digest.clone()),
            ("detail", entry.detail.clone()),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                m.insert(k.into(), v.into());
            }
        }
        m.insert("prev".into(), hex::encode(prev).into());
        m
    }

    /// SHA-256 of the RFC 8785 form of the body: anyone can recompute it from an export.
    pub fn hash_of(entry: &Entry, pos: i64, prev: &[u8; 32]) -> [u8; 32] {
        Sha256::digest(canonical(&Value::Object(Self::body(entry, pos, prev)))).into()
    }

    /// The record as `simpul audit export` writes it: the body and its hash.
    pub fn to_json(&self) -> Value {
        let mut m = Self::body(&self.entry, self.pos, &self.prev);
        m.insert("hash".into(), hex::encode(self.hash).into());
        Value::Object(m)
    }

    /// Reads an exported record back; `None` when a field is missing or malformed.
    pub fn from_json(v: &Value) -> Option<Record> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let entry = Entry {
            at: v.get("at")?.as_i64()?,
            actor: s("actor")?,
            action: Action::parse(&s("action")?)?,
            type_: s("type"),
            id: match s("id") {
                Some(id) => Some(id.parse().ok()?),
                None => None,
            },
            counterpart: s("counterpart"),
            digest: s("digest"),
            detail: s("detail"),
        };
        Some(Record {
            pos: v.get("pos")?.as_i64()?,
            entry,
            prev: unhex(&s("prev")?)?,
            hash: unhex(&s("hash")?)?,
        })
    }
}

/// A signed statement of the chain's head: `count` records, the last with hash `head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub count: i64,
    pub head: [u8; 32],
    pub at: i64,
    /// Compact JWS by the bus's key, its payload [`Checkpoint::payload`] attached.
    pub jws: String,
}

impl Checkpoint {
    pub fn payload(count: i64, head: &[u8; 32], at: i64) -> Vec<u8> {
        canonical(&json!({"count": count, "head": hex::encode(head), "at": at}))
    }

    pub fn sign(signer: &crate::trust::Signer, count: i64, head: [u8; 32]) -> Checkpoint {
        let at = now_us();
        Checkpoint {
            count,
            head,
            at,
            jws: signer.sign(&Self::payload(count, &head, at), false),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"checkpoint": {"count": self.count, "head": hex::encode(self.head), "at": self.at},
               "jws": self.jws})
    }

    pub fn from_json(v: &Value) -> Option<Checkpoint> {
        let c = v.get("checkpoint")?;
        Some(Checkpoint {
            count: c.get("count")?.as_i64()?,
            head: unhex(c.get("head")?.as_str()?)?,
            at: c.get("at")?.as_i64()?,
            jws: v.get("jws")?.as_str()?.to_owned(),
        })
    }
}

/// The sealed end of the chain, and the last checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    pub count: i64,
    pub hash: [u8; 32],
    pub checkpoint_count: i64,
    pub checkpoint_at: i64,
}
