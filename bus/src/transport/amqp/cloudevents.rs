//! The CloudEvents AMQP binding in binary mode: the event's `data` is the message body, its
//! `id` the AMQP `message_id` (consumers deduplicate by it), `datacontenttype` the
//! `content_type`, and every other attribute a `cloudEvents_<name>` header.

use base64::Engine;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Map, Value};

use super::AmqpError;

/// The properties and body of one stored envelope.
pub fn encode(envelope: &str) -> Result<(BasicProperties, Vec<u8>), AmqpError> {
    let corrupt = |why: &str| AmqpError::Corrupt(format!("stored envelope: {why}"));
    let Value::Object(mut event) =
        serde_json::from_str::<Value>(envelope).map_err(|e| corrupt(&e.to_string()))?
    else {
        return Err(corrupt("not an object"));
    };
    let id = match event.get("id") {
        Some(Value::String(id)) => id.clone(),
        _ => return Err(corrupt("no id")),
    };
    let (content_type, body) = body(&mut event).map_err(|e| corrupt(&e))?;
    let mut headers = FieldTable::default();
    for (name, value) in event {
        let value = match value {
            Value::String(s) => AMQPValue::LongString(s.into()),
            Value::Bool(b) => AMQPValue::Boolean(b),
            Value::Number(n) if n.is_i64() => AMQPValue::LongLongInt(n.as_i64().unwrap_or(0)),
            other => AMQPValue::LongString(other.to_string().into()),
        };
        headers.insert(format!("cloudEvents_{name}").as_str().into(), value);
    }
    let props = BasicProperties::default()
        .with_message_id(id.as_str().into())
        .with_content_type(content_type.as_str().into())
        .with_delivery_mode(2)
        .with_headers(headers);
    Ok((props, body))
}

/// Takes `data` (or `data_base64`) and `datacontenttype` out of the event.
fn body(event: &mut Map<String, Value>) -> Result<(String, Vec<u8>), String> {
    let declared = match event.remove("datacontenttype") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    if let Some(Value::String(b64)) = event.remove("data_base64") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("data_base64: {e}"))?;
        let ct = declared.unwrap_or_else(|| "application/octet-stream".into());
        return Ok((ct, bytes));
    }
    match event.remove("data") {
        // A string is JSON data only when the event says so; otherwise it is the text itself.
        Some(Value::String(s)) if declared.as_deref().is_some_and(|c| !is_json(c)) => {
            Ok((declared.unwrap_or_default(), s.into_bytes()))
        }
        Some(data) => {
            let bytes = serde_json::to_vec(&data).map_err(|e| e.to_string())?;
            Ok((declared.unwrap_or_else(|| "application/json".into()), bytes))
        }
        None => Ok((
            declared.unwrap_or_else(|| "application/json".into()),
            Vec::new(),
        )),
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence == "application/json" || essence.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(p: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
        p.headers().as_ref()?.inner().get(name)
    }

    #[test]
    fn an_event_becomes_a_binary_mode_message() {
        let (p, body) = encode(
            r#"{"specversion":"1.0","id":"0192","type":"t.v1","source":"GOV/x",
                "time":"2026-11-30T00:00:00Z","traceparent":"00-ab","data":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(p.message_id().as_ref().unwrap().as_str(), "0192");
        assert_eq!(
            p.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(body, br#"{"a":1}"#);
        for (h, v) in [
            ("cloudEvents_specversion", "1.0"),
            ("cloudEvents_type", "t.v1"),
            ("cloudEvents_source", "GOV/x"),
            ("cloudEvents_time", "2026-11-30T00:00:00Z"),
            ("cloudEvents_traceparent", "00-ab"),
        ] {
            assert_eq!(header(&p, h), Some(&AMQPValue::LongString(v.into())), "{h}");
        }
        assert!(header(&p, "cloudEvents_data").is_none());
    }

    #[test]
    fn text_and_binary_data_keep_their_bytes() {
        let (p, body) =
            encode(r#"{"id":"1","datacontenttype":"text/plain","data":"halo"}"#).unwrap();
        assert_eq!(p.content_type().as_ref().unwrap().as_str(), "text/plain");
        assert_eq!(body, b"halo");
        let (_, body) = encode(r#"{"id":"1","data_base64":"AAEC"}"#).unwrap();
        assert_eq!(body, [0, 1, 2]);
    }
}
