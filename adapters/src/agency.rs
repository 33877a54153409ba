//! What every adapter shares: the [`Agency`] description, errors, envelopes and the run loop.
//! Deterministic event ids come from the adapter's [`IdKey`](crate::idkey::IdKey).

use bus::client::ClientError;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::idkey::IdKeyError;
use crate::outbox::OutboxError;

/// The part of an adapter the registry must agree with. A test checks every adapter's lists
/// against `registry.toml`, so an adapter can never quietly produce a type it is not allowed to.
pub trait Agency {
    /// How logs and the health output name it (`SIAK`).
    const NAME: &'static str;
    /// The member ID in the adapter's certificate.
    const MEMBER: &'static str;
    /// Types the adapter sends (events, messages, queries it asks, replies to queries it provides).
    const PRODUCES: &'static [&'static str];
    /// Types the adapter receives in its inbox (and, for queries, answers).
    const CONSUMES: &'static [&'static str];
}

/// An [`Agency`]'s declaration as a value, so that every agency can be iterated
/// ([`crate::AGENCIES`]).
#[derive(Debug, Clone, Copy)]
pub struct Declared {
    pub name: &'static str,
    pub member: &'static str,
    pub produces: &'static [&'static str],
    pub consumes: &'static [&'static str],
}

impl Declared {
    pub const fn of<A: Agency>() -> Declared {
        Declared {
            name: A::NAME,
            member: A::MEMBER,
            produces: A::PRODUCES,
            consumes: A::CONSUMES,
        }
    }
}

/// One native field that could not be mapped, named as the agency names it (e.g. `TGL_LHR`).
/// The reason never quotes a personal identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub reason: String,
}

/// Every native field of one record that could not be mapped, reported at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot map native record: {}", .problems.iter().map(|p| format!("{}: {}", p.field, p.reason)).collect::<Vec<_>>().join("; "))]
pub struct MappingError {
    pub problems: Vec<FieldProblem>,
}

impl MappingError {
    pub fn one(field: &str, reason: impl Into<String>) -> MappingError {
        MappingError {
            problems: vec![FieldProblem {
                field: field.to_owned(),
                reason: reason.into(),
            }],
        }
    }

    /// The native field names that failed, in order.
    pub fn fields(&self) -> Vec<&str> {
        self.problems.iter().map(|p| p.field.as_str()).collect()
    }
}

/// Collects field problems while mapping a record, so one answer names every bad field.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldProblem>);

impl Problems {
    pub fn push(&mut self, field: &str, reason: impl Into<String>) {
        self.0.push(FieldProblem {
            field: field.to_owned(),
            reason: reason.into(),
        });
    }

    /// Keeps the value, or records the problem and returns `None`.
    pub fn take<T>(&mut self, r: Result<T, MappingError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.extend(e.problems);
                None
            }
        }
    }

    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, MappingError> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(MappingError { problems: self.0 })
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("bus unreachable: {0}")]
    Bus(#[from] ClientError),
    #[error("bus answered {status}: {detail}")]
    Refused { status: u16, detail: String },
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    IdKey(#[from] IdKeyError),
    #[error("native system: {0}")]
    Native(String),
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("unexpected answer from the bus: {0}")]
    Protocol(String),
}

impl AdapterError {
    /// True when the bus node is at fault (unreachable, or failing with a 5xx), whichever call
    /// met it (a poll, a reply, or the outbox's forward): a reason to try another node. The
    /// agency system being down, or an entry that cannot be mapped, is not.
    pub fn is_the_bus_nodes(&self) -> bool {
        match self {
            AdapterError::Bus(_) | AdapterError::Outbox(OutboxError::Bus(_)) => true,
            AdapterError::Refused { status, .. }
            | AdapterError::Outbox(OutboxError::Busy { status, .. }) => *status >= 500,
            _ => false,
        }
    }
}

impl From<rusqlite::Error> for AdapterError {
    fn from(e: rusqlite::Error) -> Self {
        AdapterError::Native(e.to_string())
    }
}

/// A CloudEvent ready to send. `to` is for messages; events and queries leave it out.
pub fn envelope(id: Uuid, type_: &str, data: Value, to: Option<&str>) -> Value {
    let mut ev = json!({
        "specversion": "1.0",
        "id": id.to_string(),
        "type": type_,
        "data": data,
    });
    if let Some(to) = to {
        ev["to"] = json!(to);
    }
    ev
}

/// The agency's account at its own system (SIAK's web service, SIPANSE's API).
#[derive(Clone)]
pub struct Account {
    pub user_id: String,
    pub password: String,
}

/// Without the password, so that no log or error shows it.
impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// The HTTP client for an agency system's own interface. A district office's link is slow and
/// drops: a call that takes longer than this has failed, and is tried again later.
pub fn native_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .build()
}
