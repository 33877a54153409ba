//! The CloudEvents 1.0 envelope (JSON structured and batch modes).
//!
//! The bus trusts nothing in the envelope about *who* sent it: `source` is filled from the
//! certificate, and a `source` that names someone else is refused.
//!
//! Parsing is strict about attribute types, because whatever is stored is delivered: a
//! `subject` that is an object would reach every consumer, who is promised the CloudEvents
//! types. `null` means "absent", as the JSON format says, and is dropped before any check.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::identity::MemberId;
use crate::problem::FieldError;

pub const CONTENT_TYPE: &str = "application/cloudevents+json";
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// The context attributes CloudEvents 1.0 defines, plus `data` and `data_base64`. Every other
/// member of the object is an extension attribute.
const CORE: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "data_base64",
];

/// Attributes that are no part of "the same content": those the bus fills in (or checks
/// against the certificate), so a retry that leaves them out or fills them in is the same
/// message; the sender's `signature`, which differs each time the same event is signed; and
/// the W3C trace context, which differs each time it is sent.
const NOT_CONTENT: [&str; 5] = ["source", "time", "signature", "traceparent", "tracestate"];

/// An envelope whose attributes are well-formed; its `data` is not yet schema-checked.
#[derive(Debug)]
pub struct Envelope {
    /// The sender's id, canonical (lowercase, hyphenated) whatever spelling was sent.
    pub id: Uuid,
    pub type_: String,
    pub to: Option<MemberId>,
    pub dataschema: Option<String>,
    /// The attributes as received, with `id` canonical and `source` and `time` filled in by
    /// the bus (when a sender is known).
    pub attrs: Map<String, Value>,
    /// SHA-256 of the canonical content (see [`content_hash`]): decides "same id, same content".
    pub hash: [u8; 32],
}

/// Parses an event id in any spelling the `uuid` crate reads (`{…}`, `urn:uuid:…`, upper case,
/// no hyphens); the canonical form is its `Display`.
pub fn parse_id(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s.trim()).ok()
}

/// SHA-256 of the event's canonical form, without the attributes the bus fills in: compact
/// JSON with every object's keys in sorted order, as serde_json prints a parsed value (its maps
/// are ordered; nothing in the tree may turn on its `preserve_order` feature, which the tests
/// of this function would catch).
///
/// Key order and whitespace do not change it, and neither does a retry that omits
/// `time`/`source` or fills them in, or spells the id differently. Full JCS (RFC 8785) would
/// also equate number spellings such as `1.0` and `1`, but serde_jcs cost 6 µs a message, 9 %
/// of the bus's CPU in the accept benchmark; a client's retry repeats its own spelling.
/// Written straight into the hasher from borrowed values: this runs for every message.
pub fn content_hash(attrs: &Map<String, Value>) -> [u8; 32] {
    struct Hasher(Sha256);
    impl std::io::Write for Hasher {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let content: std::collections::BTreeMap<&str, &Value> = attrs
        .iter()
        .filter(|(k, v)| !NOT_CONTENT.contains(&k.as_str()) && !v.is_null())
        // JSON is what an event without `datacontenttype` carries, so naming it changes
        // nothing: a structured event that names it and a binary-mode retry that does not
        // are the same message.
        .filter(|(k, v)| {
            !(k.as_str() == "datacontenttype" && v.as_str() == Some("application/json"))
        })
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let mut h = Hasher(Sha256::new());
    // Writing JSON values to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut h, &content);
    h.0.finalize().into()
}

/// A W3C Trace Context `traceparent` of version 00 with non-zero ids.
pub fn is_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    matches!(parts.as_slice(), [v, t, p, f]
        if *v == "00" && hex(t, 32) && hex(p, 16) && hex(f, 2)
            && t.bytes().any(|b| b != b'0') && p.bytes().any(|b| b != b'0'))
}

/// Carries an HTTP `traceparent` header into each event that has no `traceparent` extension
/// of its own (CloudEvents' distributed-tracing extension), so the trace travels with the
/// message to its consumers. An invalid header is ignored, as W3C Trace Context says.
pub fn adopt_traceparent(value: &mut Value, header: Option<&str>) {
    let Some(tp) = header.filter(|h| is_traceparent(h)) else {
        return;
    };
    let events: Vec<&mut Value> = match value {
        Value::Array(items) => items.iter_mut().collect(),
        one => vec![one],
    };
    for ev in events {
        if let Value::Object(attrs) = ev {
            attrs
                .entry("traceparent")
                .or_insert_with(|| Value::String(tp.to_owned()));
        }
    }
}

/// The HTTP binding's binary mode (CloudEvents HTTP binding, section 3.1): the context
/// attributes arrive as `ce-<name>` headers, percent-encoded, and the data as the body. They
/// become the structured form, which then takes the one path every event takes (and hashes
/// alike, so a retry in the other mode is the same message). `headers` are (lowercase name,
/// raw value) pairs; those not starting with `ce-` are ignored.
pub fn from_binary<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    data: Value,
) -> Result<Value, Vec<FieldError>> {
    let mut attrs = Map::new();
    let mut errors = Vec::new();
    for (name, raw) in headers {
        let Some(attr) = name.strip_prefix("ce-") else {
            continue;
        };
        match percent_encoding::percent_decode(raw).decode_utf8() {
            Ok(v) => {
                attrs.insert(attr.to_owned(), Value::String(v.into_owned()));
            }
            Err(_) => errors.push(FieldError::new(name, "is not UTF-8 once percent-decoded")),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    attrs.insert("data".into(), data);
    Ok(Value::Object(attrs))
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
        attrs.retain(|_, v| !v.is_null());
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
        let id = string("id", &mut errors, true).and_then(|s| {
            let id = parse_id(&s);
            if id.is_none() {
                errors.push(FieldError::new(
                    "/id",
                    "must be a UUID (UUIDv7 recommended)",
                ));
            }
            id
        });
        let type_ = string("type", &mut errors, true);
        let dataschema = string("dataschema", &mut errors, false);
        string("subject", &mut errors, false);
        let to = string("to", &mut errors, false).and_then(|s| match MemberId::parse(&s) {
            Ok(m) => Some(m),
            Err(e) => {
                errors.push(FieldError::new("/to", format!("is not a member ID: {e}")));
                None
            }
        });
        string("correlationid", &mut errors, false);
        if let Some(tp) = string("traceparent", &mut errors, false)
            && !is_traceparent(&tp)
        {
            errors.push(FieldError::new(
                "/traceparent",
                "must be a W3C traceparent: 00-<32 hex>-<16 hex>-<2 hex>",
            ));
        }
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
        check_extensions(&attrs, &mut errors);
        let (Some(id), Some(type_), true) = (id, type_, errors.is_empty()) else {
            return Err(errors);
        };
        attrs.insert("id".into(), Value::String(id.to_string()));
        let hash = content_hash(&attrs);
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
            hash,
        })
    }
}

/// Extension attributes: names of 1–20 lowercase letters and digits, values of a CloudEvents
/// type that JSON carries as a string, number or boolean (CloudEvents 1.0 §3.1, §2).
fn check_extensions(attrs: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    for (name, value) in attrs {
        if CORE.contains(&name.as_str()) {
            continue;
        }
        let pointer = format!("/{}", crate::problem::pointer_token(name));
        let valid_name = (1..=20).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid_name {
            errors.push(FieldError::new(
                pointer,
                "extension attribute names are 1 to 20 lowercase letters or digits",
            ));
        } else if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            errors.push(FieldError::new(
                pointer,
                "an extension attribute must be a string, number or boolean",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Envelope, Vec<FieldError>> {
        let me = MemberId::parse("GOV/a").unwrap();
        Envelope::parse(v, Some(&me), "test")
    }

    fn base() -> Value {
        json!({"specversion": "1.0", "id": "0190c1de-0000-7000-8000-00000000000a",
               "type": "t", "data": {}})
    }

    #[test]
    fn every_spelling_of_an_id_is_one_id_with_one_hash() {
        let want = parse(base()).unwrap();
        for spelling in [
            "{0190c1de-0000-7000-8000-00000000000a}",
            "urn:uuid:0190c1de-0000-7000-8000-00000000000a",
            "0190C1DE-0000-7000-8000-00000000000A",
            "0190c1de00007000800000000000000a",
        ] {
            let mut v = base();
            v["id"] = json!(spelling);
            let got = parse(v).unwrap();
            assert_eq!(got.id, want.id, "{spelling}");
            assert_eq!(
                got.attrs["id"],
                json!("0190c1de-0000-7000-8000-00000000000a")
            );
            assert_eq!(got.hash, want.hash, "{spelling}");
        }
    }

    #[test]
    fn source_and_time_do_not_change_the_content() {
        let plain = parse(base()).unwrap();
        let mut filled = base();
        filled["source"] = json!("GOV/a");
        filled["time"] = json!("2026-11-30T10:00:00Z");
        filled["subject"] = Value::Null;
        assert_eq!(parse(filled).unwrap().hash, plain.hash);
        let mut other = base();
        other["data"] = json!({"x": 1});
        assert_ne!(parse(other).unwrap().hash, plain.hash);
    }

    #[test]
    fn key_order_and_whitespace_do_not_change_the_hash() {
        let a: Value = serde_json::from_str(
            r#"{"specversion":"1.0","id":"0190c1de-0000-7000-8000-00000000000a","type":"t",
                "data":{"b":[1,{"y":2,"x":1}],"a":"s"}}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{ "data" : { "a" : "s", "b" : [ 1, { "x" : 1, "y" : 2 } ] }, "type" : "t",
                 "id" : "0190c1de-0000-7000-8000-00000000000a", "specversion" : "1.0" }"#,
        )
        .unwrap();
        assert_eq!(parse(a).unwrap().hash, parse(b).unwrap().hash);
    }

    #[test]
    fn attribute_types_are_enforced() {
        let mut v = base();
        v["subject"] = json!({"a": 1});
        v["dataschema"] = json!(5);
        v["Bad_Name"] = json!("x");
        v["nested"] = json!([1]);
        v["datacontenttype"] = json!(true);
        let errors = parse(v).unwrap_err();
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        for p in [
            "/subject",
            "/dataschema",
            "/Bad_Name",
            "/nested",
            "/datacontenttype",
        ] {
            assert!(pointers.contains(&p), "{p} missing from {pointers:?}");
        }
    }

    #[test]
    fn null_means_absent() {
        let mut v = base();
        v["subject"] = Value::Null;
        v["to"] = Value::Null;
        let env = parse(v).unwrap();
        assert!(!env.attrs.contains_key("subject"));
        assert!(env.to.is_none());
    }
}
