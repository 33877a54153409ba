//! Field-level problems shared by schema validation, envelope checks and the HTTP error type.
//!
//! Kept apart from the HTTP layer so that `simpul check` reports exactly what the bus reports.

use serde::Serialize;

/// One failing (or suspicious) field, named by JSON pointer (RFC 6901).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub pointer: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            pointer: pointer.into(),
            detail: crate::formats::mask_digit_runs(&detail.into()),
        }
    }

    /// The same error, seen from an enclosing document (e.g. `/data` or a batch index).
    pub fn prefixed(mut self, prefix: &str) -> Self {
        self.pointer.insert_str(0, prefix);
        self
    }
}

/// Escapes one reference token for a JSON pointer (RFC 6901 §3).
pub fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}
