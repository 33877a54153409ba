//! The message rules, called by every ingress (the HTTP API, `simpul check`) and knowing no
//! HTTP: handlers translate a request into these calls and a [`Refusal`] into a problem.

pub mod admin;
pub mod audit;
pub mod delivery;
pub mod ingest;
pub mod limits;
pub mod node;
pub mod presence;
pub mod query;
pub mod wakeups;

use crate::problem::FieldError;

/// Why the bus refuses a message: the rule that failed and every field it names.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{detail}")]
    Malformed {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("unknown message type {0}")]
    UnknownType(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{} problem(s) with the payload", errors.len())]
    Schema { errors: Vec<FieldError> },
    /// The sender's own signature (the `signature` extension) does not verify.
    #[error("the sender's signature does not verify: {0}")]
    Signature(String),
}
