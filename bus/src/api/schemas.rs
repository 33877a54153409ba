//! The shared schemas, published to members so they can validate before sending.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::SharedState;
use super::openapi::ProblemResponse;
use crate::error::ApiError;
use crate::identity::Peer;

/// The shared schemas and the types that use them.
#[utoipa::path(get, path = "/v1/schemas", tag = "schemas",
    responses((status = 200, description = "Success", body = Object), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn list(State(st): State<SharedState>, _peer: Peer) -> Json<Value> {
    let mut items: Vec<Value> = st
        .node
        .registry
        .schemas
        .iter()
        .map(|s| {
            let types: Vec<&str> = st
                .node
                .registry
                .types()
                .filter(|t| {
                    t.schemas()
                        .chain(t.response_schema.as_ref())
                        .any(|x| x.id == s.id)
                })
                .map(|t| t.name.as_str())
                .collect();
            json!({ "id": s.id, "uri": s.uri, "types": types })
        })
        .collect();
    items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Json(json!({ "schemas": items }))
}

/// One schema, as JSON Schema 2020-12.
#[utoipa::path(get, path = "/v1/schemas/{id}", tag = "schemas",
    params(("id" = String, Path)),
    responses((status = 200, description = "Success", body = Object, content_type = "application/schema+json"), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn one(
    State(st): State<SharedState>,
    _peer: Peer,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let schema = st
        .node
        .registry
        .schemas
        .get(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no schema {id}")))?;
    Ok((
        [(header::CONTENT_TYPE, "application/schema+json")],
        Json(schema.raw.clone()),
    ))
}
