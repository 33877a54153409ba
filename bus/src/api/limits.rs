//! The layer that bounds what one request may take: its rate, its body's memory and time,
//! and its encoding; and the last word on errors, so every 4xx and 5xx is problem+json.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::SharedState;
use crate::error::ApiError;
use crate::identity::Peer;
use crate::registry::RateLimit;

/// The body did not arrive in full within `--body-timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// A request body that must be complete by a deadline: a sender that trickles bytes cannot
/// hold a connection, a buffer and a handler for longer than the body timeout.
///
/// The timer is only made when the body first has to wait: most bodies arrive with their
/// headers, and a timer per request showed on the hot path.
struct DeadlineBody {
    inner: Body,
    deadline: tokio::time::Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    limit: Duration,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(self.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Content codings the bus decodes; anything else is refused rather than read as plain.
fn known_encoding(headers: &HeaderMap) -> Result<bool, ApiError> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    let v = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match v.as_str() {
        "" | "identity" => Ok(false),
        "gzip" | "x-gzip" => Ok(true),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding {other:?}; send gzip or no encoding"
        ))),
    }
}

/// Everything a request passes through before its handler, in one layer (each `from_fn`
/// layer costs a boxed future per request on the hot path):
/// - the member's token bucket, if the registry gives it a rate, and the IETF httpapi
///   RateLimit headers telling it where it stands;
/// - the content coding: anything but gzip is refused rather than read as plain;
/// - the body's bytes, reserved from `--max-buffered` before anything is read: the declared
///   length when the body is plain, `--max-body` when it is compressed or its length is
///   unknown (it may decompress to that much); over budget, 503 with Retry-After instead of
///   the bus running out of memory;
/// - the whole body under `--body-timeout`;
/// - and on the way out, every error answer in the problem catalogue.
pub async fn admission(
    State(st): State<SharedState>,
    peer: Peer,
    req: Request,
    next: Next,
) -> Response {
    let limit = st.node.registry.member(&peer.member).and_then(|m| m.rate);
    let allowance = match limit.map(|l| (l, st.limits.rate.take(&peer.member, l))) {
        None => None,
        Some((l, Ok(a))) => Some((l, a.remaining, a.reset)),
        Some((l, Err(over))) => {
            crate::telemetry::rate_limited(&peer.member);
            let after = over.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            let e = ApiError::RateLimited {
                retry_after: Duration::from_secs(after),
            };
            return with_rate_headers(e.into_response(), l, 0, after);
        }
    };
    let resp = match reserve_and_run(&st, req, next).await {
        Ok(r) if r.status().is_client_error() || r.status().is_server_error() => {
            problems_only(&st, r).await
        }
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    match allowance {
        Some((l, remaining, reset)) => with_rate_headers(resp, l, remaining, reset),
        None => resp,
    }
}

async fn reserve_and_run(st: &SharedState, req: Request, next: Next) -> Result<Response, ApiError> {
    let compressed = known_encoding(req.headers())?;
    let cfg = &st.config;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let reserve = match declared {
        Some(0) => 0,
        Some(n) if !compressed => n.min(cfg.max_body),
        _ if req.method() == axum::http::Method::GET => 0,
        _ => cfg.max_body,
    };
    let _reserved = if reserve == 0 {
        None
    } else {
        let n = u32::try_from(reserve).unwrap_or(u32::MAX);
        Some(
            st.buffered
                .try_acquire_many(n)
                .map_err(|_| ApiError::Overloaded {
                    retry_after: Duration::from_secs(1),
                })?,
        )
    };
    let (parts, body) = req.into_parts();
    let body = Body::new(DeadlineBody {
        inner: body,
        deadline: tokio::time::Instant::now() + cfg.body_timeout,
        sleep: None,
        limit: cfg.body_timeout,
    });
    Ok(next.run(Request::from_parts(parts, body)).await)
}

fn with_rate_headers(mut resp: Response, limit: RateLimit, remaining: u32, reset: u64) -> Response {
    let window = (f64::from(limit.burst) / limit.per_second).ceil().max(1.0) as u64;
    let h = resp.headers_mut();
    let policy = format!("\"member\";q={};w={window}", limit.burst);
    if let Ok(v) = HeaderValue::from_str(&policy) {
        h.insert("ratelimit-policy", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"member\";r={remaining};t={reset}")) {
        h.insert("ratelimit", v);
    }
    resp
}

/// Turns any error answer that is not problem+json (axum's own rejections, a panic caught by
/// a layer) into one of the catalogue's problems, so clients can rely on one error format.
async fn problems_only(st: &SharedState, resp: Response) -> Response {
    let status = resp.status();
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let detail = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let e = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound(detail),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge {
            limit: st.config.max_body,
        },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(detail),
        StatusCode::UNAUTHORIZED => ApiError::Unauthenticated,
        s if s.is_client_error() => ApiError::Malformed {
            detail,
            errors: Vec::new(),
        },
        _ => ApiError::Internal(detail),
    };
    e.into_response()
}
