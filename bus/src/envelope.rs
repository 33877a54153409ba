//! The CloudEvents 1.0 envelope (JSON structured and batch modes).
//!
//! The bus trusts nothing in the envelope about *who* sent it: `source` is filled from the
//! certificate, and a `source` that names someone else is refused.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::identity::MemberId;
use crate::problem::FieldError;

pub const CONTENT_TYPE: &str = "application/cloudevents+json";
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// An envelope whose attributes are well-formed; its `data` is not yet schema-checked.
#[derive(Debug)]
pub struct Envelope {
    pub id: Uuid,
    pub type_: String,
    pub to: Option<MemberId>,
    pub dataschema: Option<String>,
    /// The attributes as received, with `source` and `time` filled in by the bus.
    pub attrs: Map<String, Value>,
}

impl Envelope {
    pub fn data(&self) -> &Value {
        self.attrs.get("data").unwrap_or(&Value::Null)
    }

    /// Parses and checks the CloudEvents attributes of one event, naming every bad field.
    ///
    /// `sender` is the certificate's member; `None` when checking offline (`simpul check`).
    pub fn parse(
        value: Value,
        sender: Option<&MemberId>,
        instance: &str,
    ) -> Result<Envelope, Vec<FieldError>> {
        let Value::Object(mut attrs) = value else {
            return Err(vec![FieldError::new("", "an event must be a JSON object")]);
        };
        let mut errors = Vec::new();
        let string =
            |name: &str, errors: &mut Vec<FieldError>, required: bool| match attrs.get(name) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                None if !required => None,
                None => {
                    errors.push(FieldError::new(format!("/{name}"), "is required"));
                    None
                }
                Some(_) => {
                    errors.push(FieldError::new(
                        format!("/{name}"),
                        "must be a non-empty string",
                    ));
                    None
                }
            };
        if let Some(v) = string("specversion", &mut errors, true)
            && v != "1.0"
        {
            errors.push(FieldError::new("/specversion", "must be \"1.0\""));
        }
        let id = string("id", &mut errors, true).and_then(|s| match Uuid::parse_str(&s) {
            Ok(u) => Some(u),
            Err(_) => {
                errors.push(FieldError::new(
                    "/id",
                    "must be a UUID (UUIDv7 recommended)",
                ));
                None
            }
        });
        let type_ = string("type", &mut errors, true);
        let dataschema = string("dataschema", &mut errors, false);
        let to = string("to", &mut errors, false).and_then(|s| match MemberId::parse(&s) {
            Ok(m) => Some(m),
            Err(e) => {
                errors.push(FieldError::new("/to", format!("is not a member ID: {e}")));
                None
            }
        });
        string("correlationid", &mut errors, false);
        if let Some(ct) = string("datacontenttype", &mut errors, false)
            && ct != "application/json"
        {
            errors.push(FieldError::new(
                "/datacontenttype",
                "must be application/json",
            ));
        }
        if let Some(src) = string("source", &mut errors, false) {
            let claimed =
                MemberId::parse(&src).or_else(|_| MemberId::from_spiffe_uri(instance, &src));
            match (claimed, sender) {
                (Ok(c), Some(s)) if &c != s => errors.push(FieldError::new(
                    "/source",
                    "does not match the sender's certificate",
                )),
                (Err(_), _) => errors.push(FieldError::new(
                    "/source",
                    "must be the sender's member ID (or leave it out: the bus fills it in)",
                )),
                _ => {}
            }
        }
        if let Some(t) = string("time", &mut errors, false)
            && time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                .is_err()
        {
            errors.push(FieldError::new("/time", "must be an RFC 3339 timestamp"));
        }
        match attrs.get("data") {
            Some(Value::Object(_)) => {}
            None => errors.push(FieldError::new("/data", "is required")),
            Some(_) => errors.push(FieldError::new("/data", "must be a JSON object")),
        }
        if attrs.contains_key("data_base64") {
            errors.push(FieldError::new(
                "/data_base64",
                "binary data is not accepted",
            ));
        }
        let (Some(id), Some(type_), true) = (id, type_, errors.is_empty()) else {
            return Err(errors);
        };
        if let Some(s) = sender {
            attrs.insert("source".into(), Value::String(s.to_string()));
        }
        if !attrs.contains_key("time") {
            let now = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            attrs.insert("time".into(), Value::String(now));
        }
        Ok(Envelope {
            id,
            type_,
            to,
            dataschema,
            attrs,
        })
    }
}
