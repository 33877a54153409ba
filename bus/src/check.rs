//! Offline checks for agencies building integrations: the same validation the bus runs,
//! without a bus. `simpul check` is a thin wrapper over these.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

use crate::core::ingest;
use crate::error::ApiError;
use crate::formats::Format;
use crate::identity::MemberId;
use crate::problem::FieldError;
use crate::registry::Registry;

/// Validates a payload of `type_` as the bus would. A document with `specversion` is taken as
/// a whole CloudEvent and goes through the bus's own ingest rules (envelope and attribute
/// types, canonical id, `dataschema`, `to`, and the producer ACL when `sender` is given), with
/// field pointers from the event root; anything else is taken as the `data` payload.
/// `response` checks a query's response payload instead.
pub fn check_payload(
    registry: &Registry,
    type_: &str,
    doc: Value,
    response: bool,
    sender: Option<&MemberId>,
) -> Result<Vec<FieldError>, ApiError> {
    let def = registry
        .type_def(type_)
        .ok_or_else(|| ApiError::UnknownType(type_.to_owned()))?;
    if !response && doc.get("specversion").is_some() {
        if doc.get("type").and_then(Value::as_str) != Some(type_) {
            return Err(ApiError::Malformed {
                detail: "the event is of another type".into(),
                errors: vec![FieldError::new("/type", format!("expected {type_}"))],
            });
        }
        return Ok(ingest::check(registry, doc, sender)?.warnings);
    }
    let schema = if response {
        def.response_schema.as_ref().ok_or_else(|| {
            ApiError::NotFound(format!("{type_} is not a query and has no response schema"))
        })?
    } else {
        &def.schema
    };
    let verdict = schema.validate(&doc);
    if !verdict.errors.is_empty() {
        return Err(ApiError::Schema {
            errors: verdict.errors,
        });
    }
    Ok(verdict.warnings)
}

/// Checks one value per input line (the line's exact content, without its newline) and writes
/// one JSON object per line, in order. Returns whether every value was valid.
///
/// The operator supplied these values, so echoing them back is no leak.
pub fn check_format_lines(
    format: Format,
    input: impl BufRead,
    mut out: impl Write,
) -> std::io::Result<bool> {
    let mut all_valid = true;
    for (n, line) in input.split(b'\n').enumerate() {
        // A trailing CR stays: it is part of the line's content and makes the value invalid,
        // exactly as the bus would judge it.
        let value = String::from_utf8_lossy(&line?).into_owned();
        let result = format.check(&value);
        all_valid &= result.is_ok();
        let obj = match result {
            Ok(()) => json!({ "line": n + 1, "value": value, "valid": true }),
            Err(reasons) => {
                json!({ "line": n + 1, "value": value, "valid": false, "reasons": reasons })
            }
        };
        serde_json::to_writer(&mut out, &obj)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(all_valid)
}
