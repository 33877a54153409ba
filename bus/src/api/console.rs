//! The operator console: `/console`, one page, a small script and a style sheet compiled into
//! the binary (nothing is downloaded at run time), served over the same mTLS as every other
//! client and to operators only. The script reads `/v1/admin/overview`, `/metrics` and the
//! dead-letter and trace endpoints, and redrives through the same API as `simpul admin`, so
//! whatever it does is audited like the rest.
//!
//! A cross-site page cannot act through an operator's browser: the redrive takes a JSON body,
//! which a browser sends cross-origin only after a CORS preflight this bus never answers.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::openapi::ProblemResponse;
use super::{SharedState, rfc3339};
use crate::core::admin::MemberState;
use crate::error::ApiError;
use crate::identity::Peer;
use crate::registry::{Delivery, TypeDef};

const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// Nothing but this bus's own script, style and API, and never inside another site's frame.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// `GET /console`
/// The operator console (HTML), for operators.
#[utoipa::path(get, path = "/console", tag = "admin",
    responses((status = 200, description = "Success", body = String, content_type = "text/html"), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn page(State(st): State<SharedState>, peer: Peer) -> Result<Response, ApiError> {
    st.node.operator(&peer.member)?;
    Ok(asset("text/html; charset=utf-8", PAGE))
}

/// `GET /console/{asset}`: `console.js` or `console.css`.
/// The console's script and style sheet, for operators.
#[utoipa::path(get, path = "/console/{asset}", tag = "admin",
    params(("asset" = String, Path, description = "console.js or console.css")),
    responses((status = 200, description = "Success", body = String, content_type = "text/plain"), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn file(
    State(st): State<SharedState>,
    peer: Peer,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    st.node.operator(&peer.member)?;
    match name.as_str() {
        "console.js" => Ok(asset("text/javascript; charset=utf-8", SCRIPT)),
        "console.css" => Ok(asset("text/css; charset=utf-8", STYLE)),
        _ => Err(ApiError::NotFound(format!("the console has no {name}"))),
    }
}

/// The whole bus at a glance: every member with its state, every type with who may use it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Overview {
    instance: String,
    now: String,
    members: Vec<MemberView>,
    types: Vec<TypeView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct MemberView {
    id: String,
    name: String,
    operator: bool,
    /// `https` (it pulls its inbox) or `amqp` (the broker pushes to its queue).
    delivery: &'static str,
    /// When the certificate it last connected with expires (absent: not seen by this node).
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_expires: Option<String>,
    /// When this node last saw it connected and at work.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<String>,
    /// Deliveries waiting for it or leased to it.
    queue_depth: u64,
    /// When the oldest of them was accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest: Option<String>,
    dead_letters: u64,
}

impl From<MemberState<'_>> for MemberView {
    fn from(s: MemberState<'_>) -> Self {
        MemberView {
            id: s.member.id.to_string(),
            name: s.member.name.clone(),
            operator: s.member.operator,
            delivery: match s.member.delivery {
                Delivery::Https => "https",
                Delivery::Amqp => "amqp",
            },
            certificate_expires: s.seen.and_then(|s| s.not_after).map(rfc3339),
            last_seen: s.seen.map(|s| rfc3339(s.last)),
            queue_depth: s.queue.as_ref().map_or(0, |q| q.depth),
            oldest: s.queue.and_then(|q| q.oldest).map(rfc3339),
            dead_letters: s.dead_letters,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TypeView {
    name: String,
    /// `event`, `message` or `query`.
    kind: String,
    /// Who may send it: member ids, or `CLASS/*` for a whole class.
    producers: Vec<String>,
    /// Who may receive it (for an event, also read its feed).
    consumers: Vec<String>,
    /// Members an event is copied to, in their inboxes.
    subscribers: Vec<String>,
    /// The member that answers a query.
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    /// The response fields each requester may see (queries only).
    grants: BTreeMap<String, Vec<String>>,
}

impl From<&TypeDef> for TypeView {
    fn from(t: &TypeDef) -> Self {
        let grants = t
            .grants
            .iter()
            .map(|(m, fields)| {
                let mut fields: Vec<String> = fields.iter().cloned().collect();
                fields.sort();
                (m.to_string(), fields)
            })
            .collect();
        TypeView {
            name: t.name.clone(),
            kind: serde_json::to_value(t.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            producers: t.producers.entries(),
            consumers: t.consumers.entries(),
            subscribers: t.subscribers.iter().map(|m| m.to_string()).collect(),
            provider: t.provider.as_ref().map(|m| m.to_string()),
            grants,
        }
    }
}

/// `GET /v1/admin/overview`
/// Every member with its queue, dead letters, certificate expiry and last seen; every type
/// with its producers, consumers and grants. For operators.
#[utoipa::path(get, path = "/v1/admin/overview", tag = "admin",
    responses((status = 200, description = "Success", body = Overview), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn overview(
    State(st): State<SharedState>,
    peer: Peer,
) -> Result<Json<Overview>, ApiError> {
    let operator = st.node.operator(&peer.member)?;
    let members = st.node.members_now(&operator).await?;
    let registry = &st.node.registry;
    let mut types: Vec<TypeView> = registry.types().map(|t| t.as_ref().into()).collect();
    types.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(Overview {
        instance: registry.instance.clone(),
        now: rfc3339(std::time::SystemTime::now()),
        members: members.into_iter().map(Into::into).collect(),
        types,
    }))
}
