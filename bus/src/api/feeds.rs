//! Replayable feeds: every event of a type, in order, read by cursor.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::openapi::ProblemResponse;
use super::{SharedState, in_range, malformed};
use crate::error::ApiError;
use crate::identity::Peer;
use crate::registry::Kind;
use crate::store::FeedItem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    after: Option<i64>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedPage {
    events: Vec<FeedEvent>,
    /// Pass as `after` to continue; equal to the request's `after` when nothing new arrived.
    next: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct FeedEvent {
    cursor: i64,
    #[schema(value_type = Object)]
    event: Box<serde_json::value::RawValue>,
}

/// Every event of a type after a cursor, in order.
#[utoipa::path(get, path = "/v1/feeds/{type}", tag = "feeds",
    params(("type" = String, Path), ("after" = Option<i64>, Query, minimum = 0, description = "Cursor (default 0)"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Default 100")),
    responses((status = 200, description = "Success", body = FeedPage), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn read(
    State(st): State<SharedState>,
    peer: Peer,
    Path(type_): Path<String>,
    params: Result<Query<FeedParams>, QueryRejection>,
) -> Result<Json<FeedPage>, ApiError> {
    let Query(p) = params.map_err(malformed)?;
    let def = st
        .node
        .registry
        .type_def(&type_)
        .ok_or_else(|| ApiError::UnknownType(type_.clone()))?;
    if def.kind != Kind::Event {
        return Err(ApiError::NotFound(format!(
            "{type_} is not an event type and has no feed"
        )));
    }
    if !def.consumers.allows(&peer.member) && !def.producers.allows(&peer.member) {
        return Err(ApiError::Forbidden(format!(
            "{} may not read the feed of {type_}",
            peer.member
        )));
    }
    let after = in_range("after", p.after, 0..=i64::MAX, 0)?;
    let limit = in_range("limit", p.limit, 1..=1000, 100)?;
    let events = st
        .node
        .store
        .feed(&peer.member, &type_, after, limit)
        .await?;
    let next = events.last().map_or(after, |e| e.cursor);
    let events = events
        .into_iter()
        .map(|FeedItem { cursor, event }| FeedEvent { cursor, event })
        .collect();
    Ok(Json(FeedPage { events, next }))
}
