//! Request bodies: read whole within `--max-body` (after decompression) and the body
//! deadline, with each way of failing its own problem.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};

use super::SharedState;
use crate::error::ApiError;

/// Reads a whole request body within `--max-body` (after decompression).
pub async fn read_body(
    st: &SharedState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    let limit = st.config.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| body_error(e, limit))
}

/// Over the limit is 413, too slow is 408; anything else (a corrupt gzip stream, a dropped
/// upload) is the sender's malformed request, not a size problem.
fn body_error(e: axum::Error, limit: usize) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return ApiError::TooLarge { limit };
        }
        if let Some(t) = c.downcast_ref::<super::limits::BodyTimedOut>() {
            return ApiError::BodyTimeout(t.0);
        }
        cause = c.source();
    }
    ApiError::Malformed {
        detail: format!("could not read the request body: {e}"),
        errors: Vec::new(),
    }
}
