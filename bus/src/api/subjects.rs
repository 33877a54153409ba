//! `GET /v1/audit/subjects/{id}[?kind=nik|no-kk|nip]`: who sent, received or read data about
//! one person, when, and which type. No payloads; for members granted `subject_report`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::openapi::ProblemResponse;
use super::{SharedState, malformed};
use crate::error::ApiError;
use crate::identity::Peer;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// Which identifier the path holds; a NIK unless said otherwise.
    kind: Option<String>,
}

#[utoipa::path(get, path = "/v1/audit/subjects/{id}", tag = "audit",
    params(("id" = String, Path, description = "The person's NIK, No. KK or NIP"),
           ("kind" = Option<String>, Query, description = "nik (default), no-kk or nip")),
    responses((status = 200, description = "Success", body = Object), (status = "4XX", response = ProblemResponse), (status = "5XX", response = ProblemResponse)))]
pub async fn report(
    State(st): State<SharedState>,
    peer: Peer,
    Path(value): Path<String>,
    params: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(malformed)?;
    let kind = p.kind.as_deref().unwrap_or("nik");
    let records = st.node.subject_report(&peer.member, kind, &value).await?;
    let accesses: Vec<Value> = records
        .iter()
        .map(|e| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(e.at.max(0) as u64);
            json!({
                "time": super::rfc3339(at),
                "actor": e.actor,
                "action": e.action.as_str(),
                "type": e.type_,
                "id": e.id,
                "counterpart": e.counterpart,
            })
        })
        .collect();
    Ok(Json(json!({
        "subject": crate::formats::mask_digit_runs(&value),
        "kind": kind,
        "accesses": accesses,
    })))
}
