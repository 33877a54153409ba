//! The one error type that becomes an HTTP response: RFC 9457 `application/problem+json`.
//!
//! Every problem has a stable `type` URI per error class, so clients can branch on it
//! without parsing English. Field errors are listed by JSON pointer, all at once.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::core::Refusal;
use crate::core::node::Failure;
use crate::core::query::NoQuery;
use crate::problem::FieldError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {detail}")]
    Malformed {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("no verified member identity on this connection")]
    Unauthenticated,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("unknown message type {0}")]
    UnknownType(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("this endpoint does not take that method")]
    MethodNotAllowed,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("unsupported content type {0}")]
    UnsupportedMediaType(String),
    #[error("{} problem(s) with the payload; each is listed under `errors`", errors.len())]
    Schema { errors: Vec<FieldError> },
    #[error("the sender's signature does not verify")]
    Signature { errors: Vec<FieldError> },
    #[error("the bus is overloaded")]
    Overloaded { retry_after: Duration },
    #[error("the store is unavailable: {detail}")]
    StoreUnavailable {
        detail: String,
        retry_after: Duration,
    },
    #[error("the provider refused the query: {0}")]
    ProviderRefused(String),
    #[error("the provider did not answer within {0:?}")]
    QueryTimeout(Duration),
    #[error("the provider did not answer: {0}")]
    ProviderUnavailable(String),
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error("request rate over this member's limit")]
    RateLimited { retry_after: Duration },
    #[error("{0}")]
    Busy(String),
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    CertificateRevoked(String),
    #[error("{0}")]
    CertificateStatusUnknown(String),
}

/// A member refused by OCSP after its handshake is told why on its first request.
impl From<&crate::tls::ocsp::OcspRefusal> for ApiError {
    fn from(r: &crate::tls::ocsp::OcspRefusal) -> Self {
        use crate::tls::ocsp::OcspRefusal;
        match r {
            OcspRefusal::Revoked { .. } => ApiError::CertificateRevoked(r.to_string()),
            OcspRefusal::Unknown { .. } => ApiError::CertificateStatusUnknown(r.to_string()),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Malformed { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::CertificateRevoked(_) => StatusCode::FORBIDDEN,
            ApiError::UnknownType(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Schema { .. } | ApiError::Signature { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Overloaded { .. } | ApiError::StoreUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::ProviderRefused(_) => StatusCode::BAD_GATEWAY,
            ApiError::QueryTimeout(_) | ApiError::ProviderUnavailable(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } | ApiError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotReady(_) | ApiError::CertificateStatusUnknown(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the bus refused what a member sent (its content, type, size or rights), as
    /// opposed to being unable to take it now: refusals are audited, capacity answers are not
    /// (recording each of a flood's 429s would let the flood write to the disk).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ApiError::Malformed { .. }
                | ApiError::Forbidden(_)
                | ApiError::UnknownType(_)
                | ApiError::Conflict(_)
                | ApiError::TooLarge { .. }
                | ApiError::UnsupportedMediaType(_)
                | ApiError::Schema { .. }
                | ApiError::Signature { .. }
        )
    }

    /// Stable slug of the error class; the problem `type` is `urn:simpul:problem:<slug>`.
    /// One of each problem class, for the API's description.
    pub fn examples() -> Vec<ApiError> {
        let (d, s) = (Duration::from_secs(1), String::new);
        vec![
            ApiError::Malformed {
                detail: s(),
                errors: Vec::new(),
            },
            ApiError::Unauthenticated,
            ApiError::Forbidden(s()),
            ApiError::UnknownType(s()),
            ApiError::NotFound(s()),
            ApiError::MethodNotAllowed,
            ApiError::Conflict(s()),
            ApiError::TooLarge { limit: 0 },
            ApiError::UnsupportedMediaType(s()),
            ApiError::Schema { errors: Vec::new() },
            ApiError::Signature { errors: Vec::new() },
            ApiError::Overloaded { retry_after: d },
            ApiError::StoreUnavailable {
                detail: s(),
                retry_after: d,
            },
            ApiError::ProviderRefused(s()),
            ApiError::QueryTimeout(d),
            ApiError::ProviderUnavailable(s()),
            ApiError::BodyTimeout(d),
            ApiError::RateLimited { retry_after: d },
            ApiError::Busy(s()),
            ApiError::NotReady(s()),
            ApiError::Internal(s()),
            ApiError::CertificateRevoked(s()),
            ApiError::CertificateStatusUnknown(s()),
        ]
    }

    pub fn slug(&self) -> &'static str {
        match self {
            ApiError::Malformed { .. } => "malformed",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::UnknownType(_) => "unknown-type",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed => "method-not-allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge { .. } => "too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::Schema { .. } => "schema-validation",
            ApiError::Signature { .. } => "signature-invalid",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::StoreUnavailable { .. } => "store-unavailable",
            ApiError::ProviderRefused(_) => "provider-refused",
            ApiError::QueryTimeout(_) => "query-timeout",
            ApiError::ProviderUnavailable(_) => "provider-unavailable",
            ApiError::BodyTimeout(_) => "body-timeout",
            ApiError::RateLimited { .. } => "rate-limited",
            ApiError::Busy(_) => "concurrency-limit",
            ApiError::NotReady(_) => "not-ready",
            ApiError::Internal(_) => "internal",
            ApiError::CertificateRevoked(_) => "certificate-revoked",
            ApiError::CertificateStatusUnknown(_) => "certificate-status-unknown",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::Malformed { .. } => "Malformed request",
            ApiError::Unauthenticated => "Not authenticated",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::UnknownType(_) => "Unknown message type",
            ApiError::NotFound(_) => "Not found",
            ApiError::MethodNotAllowed => "Method not allowed",
            ApiError::Conflict(_) => "Conflict",
            ApiError::TooLarge { .. } => "Request too large",
            ApiError::UnsupportedMediaType(_) => "Unsupported media type",
            ApiError::Schema { .. } => "Payload does not match its schema",
            ApiError::Signature { .. } => "Sender signature invalid",
            ApiError::Overloaded { .. } => "Bus overloaded",
            ApiError::StoreUnavailable { .. } => "Store unavailable",
            ApiError::ProviderRefused(_) => "Provider refused the query",
            ApiError::QueryTimeout(_) => "Query timed out",
            ApiError::ProviderUnavailable(_) => "Provider unavailable",
            ApiError::BodyTimeout(_) => "Request body timed out",
            ApiError::RateLimited { .. } => "Rate limit exceeded",
            ApiError::Busy(_) => "Too many concurrent requests",
            ApiError::NotReady(_) => "Not ready",
            ApiError::Internal(_) => "Internal error",
            ApiError::CertificateRevoked(_) => "Certificate revoked",
            ApiError::CertificateStatusUnknown(_) => "Certificate status unknown",
        }
    }

    fn field_errors(&self) -> &[FieldError] {
        match self {
            ApiError::Malformed { errors, .. }
            | ApiError::Schema { errors }
            | ApiError::Signature { errors } => errors,
            _ => &[],
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Overloaded { retry_after }
            | ApiError::StoreUnavailable { retry_after, .. }
            | ApiError::RateLimited { retry_after } => Some(*retry_after),
            ApiError::Busy(_) | ApiError::NotReady(_) => Some(Duration::from_secs(1)),
            ApiError::CertificateStatusUnknown(_) => Some(Duration::from_secs(10)),
            _ => None,
        }
    }

    /// The RFC 9457 body. Also printed by `simpul check`, so offline and online agree.
    pub fn problem(&self) -> Problem<'_> {
        Problem {
            type_: format!("urn:simpul:problem:{}", self.slug()),
            title: self.title(),
            status: self.status().as_u16(),
            detail: crate::formats::mask_digit_runs(&self.to_string()),
            errors: self.field_errors(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub errors: &'a [FieldError],
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Malformed { detail, errors } => ApiError::Malformed { detail, errors },
            Refusal::UnknownType(t) => ApiError::UnknownType(t),
            Refusal::Forbidden(why) => ApiError::Forbidden(why),
            Refusal::Schema { errors } => ApiError::Schema { errors },
            Refusal::Signature(why) => ApiError::Signature {
                errors: vec![FieldError::new("/signature", why)],
            },
        }
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Store(e) => e.into(),
            Failure::Conflict(why) => ApiError::Conflict(why),
            Failure::NoQuery(e) => e.into(),
            Failure::Reply { errors } => ApiError::Schema { errors },
            Failure::ProviderRefused(why) => ApiError::ProviderRefused(why),
            Failure::ProviderUnavailable(why) => ApiError::ProviderUnavailable(why),
            Failure::QueryTimeout(d) => ApiError::QueryTimeout(d),
            Failure::Forbidden(why) => ApiError::Forbidden(why),
            Failure::NotFound(why) => ApiError::NotFound(why),
            Failure::BadParameter { name, detail } => ApiError::Malformed {
                detail: format!("invalid parameter {name}"),
                errors: vec![FieldError::new(format!("/{name}"), detail)],
            },
        }
    }
}

impl From<NoQuery> for ApiError {
    fn from(e: NoQuery) -> Self {
        match e {
            NoQuery::NotYours { .. } => ApiError::NotFound(e.to_string()),
            NoQuery::Ambiguous(_) => ApiError::Conflict(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => ApiError::StoreUnavailable {
                detail,
                retry_after: Duration::from_secs(1),
            },
            StoreError::Overloaded => ApiError::Overloaded {
                retry_after: Duration::from_secs(1),
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = crate::formats::mask_digit_runs(&self.to_string());
        if status.is_server_error() {
            tracing::warn!(problem = self.slug(), "{detail}");
        } else {
            tracing::debug!(
                problem = self.slug(),
                fields = self.field_errors().len(),
                "{detail}"
            );
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(after) = self.retry_after() {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        resp
    }
}
