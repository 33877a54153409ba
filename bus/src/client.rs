//! A client for members: mTLS with the member's certificate, the bus's endpoints as methods.
//!
//! Adapters and tests use it the way any agency system would talk to the bus.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::{BATCH_CONTENT_TYPE, CONTENT_TYPE};
use crate::identity::MemberId;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("TLS setup: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
}

/// An HTTP answer from the bus: status and JSON body (problem+json on errors).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Reads a whole response; a body that is not JSON is kept as a JSON string.
    async fn read(resp: reqwest::Response) -> Result<Answer, ClientError> {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Answer {
            status,
            retry_after,
            headers,
            body,
        })
    }

    /// The problem `type` slug, e.g. `schema-validation`, for error answers.
    pub fn problem(&self) -> Option<&str> {
        self.body["type"]
            .as_str()?
            .strip_prefix("urn:simpul:problem:")
    }

    /// JSON pointers of the failing fields of a problem answer.
    pub fn pointers(&self) -> Vec<&str> {
        self.body["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["pointer"].as_str()).collect())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(base: &str, ca: &Path, cert: &Path, key: &Path) -> Result<Client, ClientError> {
        let tls = crate::tls::client_config(ca, cert, key)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// A client using the dev PKI layout written by `simpul certs init`.
    pub fn for_member(base: &str, certs: &Path, member: &MemberId) -> Result<Client, ClientError> {
        let paths = crate::pki::member_paths(certs, member);
        Client::new(base, &certs.join("ca.pem"), &paths.cert, &paths.key)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a raw request and returns whatever the bus answered.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        Answer::read(req.send().await?).await
    }

    /// `POST /v1/messages` with one CloudEvent.
    pub async fn send(&self, event: &Value) -> Result<Answer, ClientError> {
        let body = serde_json::to_vec(event).unwrap_or_default();
        self.request(Method::POST, "/v1/messages", Some(CONTENT_TYPE), Some(body))
            .await
    }

    /// `POST /v1/messages` with a batch of CloudEvents, stored all or nothing.
    pub async fn send_batch(&self, events: &[Value]) -> Result<Answer, ClientError> {
        let body = serde_json::to_vec(events).unwrap_or_default();
        self.request(
            Method::POST,
            "/v1/messages",
            Some(BATCH_CONTENT_TYPE),
            Some(body),
        )
        .await
    }

    /// `POST /v1/messages` with a batch already serialised as a JSON array and gzip-compressed
    /// (`Content-Encoding: gzip`), for members on slow links.
    pub async fn send_batch_gzip(&self, gzipped: Vec<u8>) -> Result<Answer, ClientError> {
        let resp = self
            .http
            .post(self.url("/v1/messages"))
            .header(reqwest::header::CONTENT_TYPE, BATCH_CONTENT_TYPE)
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .body(gzipped)
            .send()
            .await?;
        Answer::read(resp).await
    }

    /// `GET /v1/inbox`: lease up to `max` messages, waiting up to `wait` for one.
    pub async fn pull(
        &self,
        max: usize,
        wait: Duration,
        lease: Duration,
    ) -> Result<Answer, ClientError> {
        let path = format!(
            "/v1/inbox?max={max}&wait={}&lease={}",
            wait.as_secs(),
            lease.as_secs()
        );
        self.request(Method::GET, &path, None, None).await
    }

    pub async fn ack(&self, id: Uuid) -> Result<Answer, ClientError> {
        self.request(Method::POST, &format!("/v1/inbox/{id}/ack"), None, None)
            .await
    }

    /// `POST /v1/inbox/ack`: acks every id in one request (`{"results":[…]}`, one per id).
    pub async fn ack_many(&self, ids: &[Uuid]) -> Result<Answer, ClientError> {
        let body = serde_json::to_vec(&serde_json::json!({ "ids": ids })).unwrap_or_default();
        self.request(
            Method::POST,
            "/v1/inbox/ack",
            Some("application/json"),
            Some(body),
        )
        .await
    }

    pub async fn nack(&self, id: Uuid, reason: &str) -> Result<Answer, ClientError> {
        let body = serde_json::to_vec(&serde_json::json!({ "reason": reason })).unwrap_or_default();
        self.request(
            Method::POST,
            &format!("/v1/inbox/{id}/nack"),
            Some("application/json"),
            Some(body),
        )
        .await
    }

    pub async fn status(&self, id: Uuid) -> Result<Answer, ClientError> {
        self.request(Method::GET, &format!("/v1/messages/{id}"), None, None)
            .await
    }

    pub async fn feed(&self, type_: &str, after: i64, limit: usize) -> Result<Answer, ClientError> {
        let path = format!("/v1/feeds/{type_}?after={after}&limit={limit}");
        self.request(Method::GET, &path, None, None).await
    }

    /// `POST /v1/queries/{id}/reply`, for the provider of a query type.
    pub async fn reply(&self, id: Uuid, data: &Value) -> Result<Answer, ClientError> {
        let body = serde_json::to_vec(data).unwrap_or_default();
        self.request(
            Method::POST,
            &format!("/v1/queries/{id}/reply"),
            Some("application/json"),
            Some(body),
        )
        .await
    }

    /// `GET /v1/admin/dead-letters/{recipient}`, for operators.
    pub async fn dead_letters(
        &self,
        recipient: &MemberId,
        after: i64,
        limit: usize,
    ) -> Result<Answer, ClientError> {
        let path = format!(
            "/v1/admin/dead-letters/{}?after={after}&limit={limit}",
            member_segment(recipient)
        );
        self.request(Method::GET, &path, None, None).await
    }

    /// `POST /v1/admin/dead-letters/{recipient}/redrive` with `{"id": …}` or `{"all": true}`.
    pub async fn redrive(&self, recipient: &MemberId, body: &Value) -> Result<Answer, ClientError> {
        let path = format!(
            "/v1/admin/dead-letters/{}/redrive",
            member_segment(recipient)
        );
        let body = serde_json::to_vec(body).unwrap_or_default();
        self.request(Method::POST, &path, Some("application/json"), Some(body))
            .await
    }

    /// `GET /v1/admin/messages/{id}/trace`, for operators.
    pub async fn trace(&self, id: Uuid) -> Result<Answer, ClientError> {
        self.request(
            Method::GET,
            &format!("/v1/admin/messages/{id}/trace"),
            None,
            None,
        )
        .await
    }
}

/// A member id as one path segment: its `/` percent-encoded.
pub fn member_segment(m: &MemberId) -> String {
    percent_encoding::utf8_percent_encode(m.as_str(), percent_encoding::NON_ALPHANUMERIC)
        .to_string()
}
