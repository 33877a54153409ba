//! The rules every message passes before it is stored: envelope, type, producer ACL,
//! `dataschema`, recipients, schema. The HTTP handler and `simpul check` both call
//! [`prepare`], so an event that passes `check` is one the bus accepts.

use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::Refusal;
use crate::envelope::Envelope;
use crate::identity::MemberId;
use crate::problem::FieldError;
use crate::registry::{Kind, Registry, TypeDef};
use crate::store::NewMessage;
use crate::subjects::{self, Identifier};
use crate::trust::KeySet;
use crate::trust::jws::{self, JwsError};

/// Most events in one batch envelope.
pub const MAX_BATCH: usize = 1000;

/// A message that passed every check and waits to be made durable.
pub struct Prepared {
    pub msg: NewMessage,
    pub def: Arc<TypeDef>,
    pub warnings: Vec<FieldError>,
    /// The envelope's `time`, as stored (the bus filled it in if the sender did not).
    pub time: String,
    /// The persons its payload is about (`x-data-subject`), to be indexed by HMAC.
    pub identifiers: Vec<Identifier>,
}

/// An event that passed every check; [`prepare`] turns it into a message to store.
pub struct Checked {
    pub env: Envelope,
    pub def: Arc<TypeDef>,
    /// The version of the type's schema the event was checked against.
    pub schema: Arc<crate::schema::Schema>,
    pub recipients: Vec<MemberId>,
    pub warnings: Vec<FieldError>,
}

/// Checks one event from `sender` and makes it a message ready to be stored. `cert` is the
/// certificate the sender's connection presented: an event that carries its sender's own
/// `signature` must verify against it.
pub fn prepare(
    reg: &Registry,
    value: Value,
    sender: &MemberId,
    cert: Option<&[u8]>,
) -> Result<Prepared, Refusal> {
    let c = check(reg, value, Some(sender))?;
    if let Some(cert) = cert {
        check_signature(&c.env.attrs, cert)?;
    }
    let identifiers = subjects::identifiers(&c.schema.subjects, c.env.data());
    let time = c.env.attrs.get("time").and_then(Value::as_str);
    let time = time.unwrap_or_default().to_owned();
    // Stored in its RFC 8785 form: serialised once, and the very bytes its receipt signs.
    let envelope = crate::trust::canonical_string(&Value::Object(c.env.attrs));
    let digest = Sha256::digest(envelope.as_bytes()).into();
    Ok(Prepared {
        msg: NewMessage {
            id: c.env.id,
            sender: sender.clone(),
            type_: c.def.name.clone(),
            kind: c.def.kind,
            hash: c.env.hash,
            envelope,
            digest,
            subjects: Vec::new(),
            warnings: serde_json::to_string(&c.warnings).unwrap_or_else(|_| "[]".into()),
            recipients: c.recipients,
            to_feed: c.def.kind == Kind::Event,
        },
        def: c.def,
        warnings: c.warnings,
        time,
        identifiers,
    })
}

/// Checks the sender's own signature, when the event carries one (`signature`): a compact JWS
/// with a detached payload, like the bus's receipts, over the RFC 8785 form of the event as
/// stored without `signature`, by the key of the certificate this connection presented.
fn check_signature(attrs: &Map<String, Value>, cert: &[u8]) -> Result<(), Refusal> {
    let Some(sig) = attrs.get("signature") else {
        return Ok(());
    };
    let bad = |why: &str| Refusal::Signature(why.to_owned());
    let sig = sig.as_str().ok_or_else(|| bad("must be a compact JWS"))?;
    let mut signed = attrs.clone();
    signed.remove("signature");
    let payload = crate::trust::canonical(&Value::Object(signed));
    let parsed = jws::parse(sig).map_err(|e| bad(&e.to_string()))?;
    let mut keys = KeySet::default();
    keys.add_cert(cert).map_err(|e| bad(&e))?;
    parsed
        .verify(&keys.keys, Some(&payload))
        .map_err(|e| match e {
            JwsError::UnknownKey(_) => bad(
                "not made with this connection's certificate (its kid must be the certificate's \
                 SHA-256 thumbprint, base64url)",
            ),
            JwsError::BadSignature => bad(
                "does not match the event: sign the RFC 8785 form of the event as the bus stores \
                 it (without `signature`, with your `source` and `time`)",
            ),
            e => bad(&e.to_string()),
        })
}

/// Runs every check of one event, in the order that gives the most useful answer.
///
/// `sender` is the certificate's member; offline (`simpul check` without `--as`) it is `None`
/// and the producer ACL is not checked, everything else is.
pub fn check(reg: &Registry, value: Value, sender: Option<&MemberId>) -> Result<Checked, Refusal> {
    let env =
        Envelope::parse(value, sender, &reg.instance).map_err(|errors| Refusal::Malformed {
            detail: "invalid CloudEvents envelope".into(),
            errors,
        })?;
    let def = reg
        .type_def(&env.type_)
        .ok_or_else(|| Refusal::UnknownType(env.type_.clone()))?;
    if let Some(sender) = sender
        && !def.producers.allows(sender)
    {
        return Err(Refusal::Forbidden(format!(
            "{sender} may not produce {}",
            def.name
        )));
    }
    let Some(schema) = def.schema_for(env.dataschema.as_deref()).cloned() else {
        let accepted: Vec<&str> = def.schemas().map(|s| s.id.as_str()).collect();
        return Err(Refusal::Malformed {
            detail: "dataschema does not match the type".into(),
            errors: vec![FieldError::new(
                "/dataschema",
                format!("{} uses schema {}", def.name, accepted.join(" or ")),
            )],
        });
    };
    let recipients = recipients(reg, def, &env)?;
    let verdict = schema.validate(env.data());
    if !verdict.errors.is_empty() {
        return Err(Refusal::Schema {
            errors: verdict
                .errors
                .into_iter()
                .map(|e| e.prefixed("/data"))
                .collect(),
        });
    }
    let warnings: Vec<FieldError> = verdict
        .warnings
        .into_iter()
        .map(|w| w.prefixed("/data"))
        .collect();
    Ok(Checked {
        env,
        def: def.clone(),
        schema,
        recipients,
        warnings,
    })
}

/// Checks every event of a batch; on failure reports the fields of every failing event.
pub fn prepare_batch(
    reg: &Registry,
    value: Value,
    sender: &MemberId,
    cert: Option<&[u8]>,
) -> Result<Vec<Prepared>, Refusal> {
    let Value::Array(items) = value else {
        return Err(Refusal::Malformed {
            detail: "a batch must be a JSON array of events".into(),
            errors: Vec::new(),
        });
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(Refusal::Malformed {
            detail: format!("a batch holds 1 to {MAX_BATCH} events"),
            errors: Vec::new(),
        });
    }
    let mut ok = Vec::with_capacity(items.len());
    let mut first: Option<Refusal> = None;
    for (i, item) in items.into_iter().enumerate() {
        match prepare(reg, item, sender, cert) {
            Ok(p) if p.def.kind == Kind::Query => {
                let e = Refusal::Malformed {
                    detail: "queries are synchronous and cannot be batched".into(),
                    errors: vec![FieldError::new(format!("/{i}/type"), "is a query type")],
                };
                merge(&mut first, e, i);
            }
            Ok(p) => ok.push(p),
            Err(e) => merge(&mut first, e, i),
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(ok),
    }
}

/// Folds the error of batch item `i` into the batch's answer: the first failing item decides
/// the status, and field errors of the same class from later items are added to it.
fn merge(first: &mut Option<Refusal>, e: Refusal, i: usize) {
    let prefix = format!("/{i}");
    let prefixed = |errors: Vec<FieldError>| -> Vec<FieldError> {
        errors
            .into_iter()
            .map(|f| {
                if f.pointer.starts_with(&prefix) {
                    f
                } else {
                    f.prefixed(&prefix)
                }
            })
            .collect()
    };
    let e = match e {
        Refusal::Malformed { detail, errors } => Refusal::Malformed {
            detail,
            errors: prefixed(errors),
        },
        Refusal::Schema { errors } => Refusal::Schema {
            errors: prefixed(errors),
        },
        other => other,
    };
    match (first.as_mut(), e) {
        (None, e) => *first = Some(e),
        (Some(Refusal::Malformed { errors, .. }), Refusal::Malformed { errors: more, .. })
        | (Some(Refusal::Schema { errors }), Refusal::Schema { errors: more }) => {
            errors.extend(more)
        }
        _ => {}
    }
}

fn recipients(reg: &Registry, def: &TypeDef, env: &Envelope) -> Result<Vec<MemberId>, Refusal> {
    let bad_to = |detail: &str| Refusal::Malformed {
        detail: "invalid recipient".into(),
        errors: vec![FieldError::new("/to", detail)],
    };
    match (def.kind, &env.to) {
        (Kind::Event, Some(_)) => Err(bad_to("events go to every subscriber; leave `to` out")),
        (Kind::Event, None) => Ok(def.subscribers.clone()),
        (_, Some(to)) if reg.member(to).is_none() => Err(bad_to("is not a member")),
        (Kind::Query, Some(to)) if Some(to) != def.provider.as_ref() => {
            Err(bad_to("a query goes to its type's provider"))
        }
        (Kind::Message, Some(to)) => {
            if def.consumers.allows(to) || def.provider.as_ref() == Some(to) {
                Ok(vec![to.clone()])
            } else {
                Err(Refusal::Forbidden(format!(
                    "{to} may not receive {}",
                    def.name
                )))
            }
        }
        (_, _) => def
            .provider
            .clone()
            .map(|p| vec![p])
            .ok_or_else(|| bad_to("is required: this type has no provider")),
    }
}
