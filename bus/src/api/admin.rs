//! `/v1/admin/…`: dead letters, their redrive, and the trace of a message, for the members
//! the registry names operators. Member ids hold `/`, so a recipient in a path is
//! percent-encoded (`GOV%2Fdukcapil`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::messages::MessageStatus;
use super::openapi::ProblemResponse;
use super::{SharedState, in_range, malformed, parse_id};
use crate::audit::Entry;
use crate::core::admin::MAX_PAGE;
use crate::error::ApiError;
use crate::identity::{MemberId, Peer};
use crate::problem::FieldError;
use crate::store::{DeadLetter, DeadLetterItem, Redrive};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Cursor: the `next` of the page before (0 or nothing for the first page).
    after: Option<i64>,
    /// Most dead letters in this page (1–1000, default 100).
    limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterPage {
    #[schema(value_type = String)]
    recipient: MemberId,
    /// How many dead letters the recipient has in all.
    total: u64,
    items: Vec<DeadLetterView>,
    /// The `after` of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DeadLetterView {
    id: Uuid,
    #[schema(value_type = String)]
    sender: MemberId,
    #[serde(rename = "type")]
    type_: String,
    accepted_at: String,
    attempts: u32,
    /// `nacked`, `out_of_attempts` or `withdrawn`.
    why: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl From<DeadLetterItem> for DeadLetterView {
    fn from(d: DeadLetterItem) -> Self {
        DeadLetterView {
            id: d.id,
            sender: d.sender,
            type_: d.type_,
            accepted_at: super::rfc3339(d.accepted_at),
            attempts: d.attempts,
            why: match d.dead {
                Some(DeadLetter::Nacked) => "nacked",
                Some(DeadLetter::Withdrawn) => "withdrawn",
                _ => "out_of_attempts",
            },
            reason: d.reason,
        }
    }
}

/// A recipient in a path: a member id, percent-encoded.
fn recipient(raw: &str) -> Result<MemberId, ApiError> {
    MemberId::parse(raw).map_err(|e| ApiError::Malformed {
        detail: format!("path parameter recipient: {e}"),
        errors: vec![FieldError::new("/path/recipient", e.to_string())],
    })
}

/// `GET /v1/admin/dead-letters/{recipient}?after=&limit=`
#[utoipa::path(get, path = "/v1/admin/dead-letters/{recipient}", tag = "admin",
    params(("recipient" = String, Path, description = "A member id, percent-encoded"),
           ("after" = Option<i64>, Query, minimum = 0), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Default 100")),
    responses((status = 200, description = "Success", body = DeadLetterPage), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn dead_letters(
    State(st): State<SharedState>,
    peer: Peer,
    Path(raw): Path<String>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let Query(p) = params.map_err(malformed)?;
    let limit = in_range("limit", p.limit, 1..=MAX_PAGE, 100)?;
    let after = in_range("after", p.after, 0..=i64::MAX, 0)?;
    let operator = st.node.operator(&peer.member)?;
    let who = recipient(&raw)?;
    let page = st.node.dead_letters(&operator, &who, after, limit).await?;
    let next = match page.items.len() == limit {
        true => page.items.last().map(|d| d.seq),
        false => None,
    };
    Ok(Json(DeadLetterPage {
        recipient: who,
        total: page.total,
        items: page.items.into_iter().map(Into::into).collect(),
        next,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Redriven {
    redriven: Vec<RedrivenOne>,
    /// Dead letters the recipient still has.
    remaining: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RedrivenOne {
    #[schema(value_type = String)]
    sender: MemberId,
    id: Uuid,
}

/// What a redrive body names: `{"id": …, "sender"?: …}` or `{"all": true, "limit"?: n}`.
/// Every field that is wrong is named in one answer.
fn which(body: &Map<String, Value>) -> Result<Redrive, ApiError> {
    let mut errors = Vec::new();
    for k in body.keys() {
        if !matches!(k.as_str(), "id" | "sender" | "all" | "limit") {
            errors.push(FieldError::new(format!("/{k}"), "unknown field"));
        }
    }
    let id = match body.get("id") {
        None => None,
        Some(v) => match v.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
            Some(id) => Some(id),
            None => {
                errors.push(FieldError::new("/id", "must be a message id (UUID)"));
                None
            }
        },
    };
    let sender = match body.get("sender") {
        None => None,
        Some(v) => match v.as_str().map(MemberId::parse) {
            Some(Ok(m)) => Some(m),
            _ => {
                errors.push(FieldError::new("/sender", "must be a member id"));
                None
            }
        },
    };
    let all = match body.get("all") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(FieldError::new("/all", "must be true or false"));
            false
        }
    };
    let limit = match body.get("limit") {
        None => MAX_PAGE as u64,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=1000) => n,
            _ => {
                errors.push(FieldError::new(
                    "/limit",
                    "must be an integer from 1 to 1000",
                ));
                0
            }
        },
    };
    // How the fields go together, said once per field (not again for one already wrong).
    let together = match (body.contains_key("id"), all) {
        (true, true) => Some(("/all", "name one id, or all, not both")),
        (false, false) => Some(("/id", "name the dead letter's id, or send {\"all\": true}")),
        (true, false) if body.contains_key("limit") => Some(("/limit", "only with all")),
        (false, true) if body.contains_key("sender") => Some(("/sender", "only with id")),
        _ => None,
    };
    if let Some((pointer, detail)) = together
        && !errors.iter().any(|e| e.pointer == pointer)
    {
        errors.push(FieldError::new(pointer, detail));
    }
    if !errors.is_empty() {
        return Err(ApiError::Malformed {
            detail: format!("{} problem(s) with the redrive request", errors.len()),
            errors,
        });
    }
    Ok(match id {
        Some(id) => Redrive::One { id, sender },
        None => Redrive::Oldest(limit as usize),
    })
}

/// `POST /v1/admin/dead-letters/{recipient}/redrive`
#[utoipa::path(post, path = "/v1/admin/dead-letters/{recipient}/redrive", tag = "admin",
    params(("recipient" = String, Path, description = "A member id, percent-encoded")),
    request_body = super::openapi::RedriveRequestDoc,
    responses((status = 200, description = "Success", body = Redriven), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn redrive(
    State(st): State<SharedState>,
    peer: Peer,
    Path(raw): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Redriven>, ApiError> {
    let operator = st.node.operator(&peer.member)?;
    let who = recipient(&raw)?;
    let body: Value = serde_json::from_slice(&body).map_err(malformed)?;
    let Value::Object(body) = body else {
        return Err(ApiError::Malformed {
            detail: "the redrive request must be a JSON object".into(),
            errors: vec![FieldError::new("", "must be an object")],
        });
    };
    let which = which(&body)?;
    let one = matches!(which, Redrive::One { .. });
    let done = st.node.redrive(&operator, &who, which).await?;
    if one && done.is_empty() {
        return Err(ApiError::NotFound(format!(
            "{who} has no dead letter with that id"
        )));
    }
    let remaining = st
        .node
        .dead_letters(&operator, &who, i64::MAX, 0)
        .await?
        .total;
    Ok(Json(Redriven {
        redriven: done
            .into_iter()
            .map(|(sender, id)| RedrivenOne { sender, id })
            .collect(),
        remaining,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TraceView {
    id: Uuid,
    /// One per sender that used the id, while the message is within retention.
    messages: Vec<TracedView>,
    /// Every audit record naming the id, oldest first.
    audit: Vec<AuditView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TracedView {
    #[serde(flatten)]
    status: MessageStatus,
    /// The envelope's attributes as stored (`traceparent` among them), without its data: an
    /// operator traces delivery, not the personal data carried.
    #[schema(value_type = Object)]
    attributes: Map<String, Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AuditView {
    at: String,
    actor: String,
    action: &'static str,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    type_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    counterpart: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl From<Entry> for AuditView {
    fn from(e: Entry) -> Self {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(e.at.max(0) as u64);
        AuditView {
            at: super::rfc3339(at),
            actor: e.actor,
            action: e.action.as_str(),
            type_: e.type_,
            counterpart: e.counterpart,
            digest: e.digest,
            detail: e.detail,
        }
    }
}

/// `GET /v1/admin/messages/{id}/trace`
#[utoipa::path(get, path = "/v1/admin/messages/{id}/trace", tag = "admin",
    params(("id" = String, Path)),
    responses((status = 200, description = "Success", body = TraceView), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn trace(
    State(st): State<SharedState>,
    peer: Peer,
    Path(id): Path<String>,
) -> Result<Json<TraceView>, ApiError> {
    let operator = st.node.operator(&peer.member)?;
    let id = parse_id(&id)?;
    let trace = st.node.trace(&operator, id).await?;
    let messages = trace
        .messages
        .into_iter()
        .map(|m| {
            let mut attributes = match serde_json::from_str(&m.envelope) {
                Ok(Value::Object(o)) => o,
                _ => Map::new(),
            };
            attributes.remove("data");
            attributes.remove("data_base64");
            TracedView {
                status: MessageStatus::from(&m.record),
                attributes,
            }
        })
        .collect();
    Ok(Json(TraceView {
        id,
        messages,
        audit: trace.audit.into_iter().map(Into::into).collect(),
    }))
}
