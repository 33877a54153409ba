//! `POST /v1/queries/{id}/reply`: a provider's answer to a query. Asking is `POST
//! /v1/messages` with a query type; the rules of both are in `core::query`.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::read_body;
use super::openapi::ProblemResponse;
use super::{SharedState, malformed, parse_id};
use crate::error::ApiError;
use crate::identity::{MemberId, Peer};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyParams {
    /// Whose query, for the rare id that two requesters both used.
    source: Option<String>,
}

/// `POST /v1/queries/{id}/reply[?source=MEMBER]`: the provider's answer, as the response
/// payload itself.
#[utoipa::path(post, path = "/v1/queries/{id}/reply", tag = "queries",
    params(("id" = String, Path, description = "The query's id"),
           ("source" = Option<String>, Query, description = "Whose query, when two requesters used the id")),
    request_body(content = Object, description = "The reply payload, checked against the type's response schema", content_type = "application/json"),
    responses((status = 200, description = "Success", body = super::openapi::RepliedDoc), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn reply(
    State(st): State<SharedState>,
    peer: Peer,
    Path(id): Path<String>,
    params: Result<Query<ReplyParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let Query(params) = params.map_err(malformed)?;
    let source = match params.source.as_deref().map(MemberId::parse) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => return Err(super::bad_param("source", &e.to_string())),
    };
    // Whose query first: a reply to nothing is 404 before its body is read.
    let query = st
        .node
        .whose_query(&peer.member, id, source.as_ref())
        .await?;
    let answered = async {
        let body = read_body(&st, &headers, body).await?;
        let data: Value = serde_json::from_slice(&body).map_err(|e| ApiError::Malformed {
            detail: format!("body is not valid JSON: {e}"),
            errors: Vec::new(),
        })?;
        Ok::<_, ApiError>(st.node.answer(&peer.member, id, query, data).await?)
    }
    .await;
    if let Err(e) = &answered
        && e.is_refusal()
    {
        st.node
            .refused(&peer.member, "reply", Some(id), e.slug())
            .await;
    }
    answered?;
    Ok(Json(json!({ "id": id, "status": "replied" })))
}
