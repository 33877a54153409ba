//! SIPANSE over the network: its HTTP API, both sides of it.
//!
//! [`SipanseApi`] is the adapter's client, the one it uses against the real system; [`router`]
//! serves the same API from the simulator, so `simpul simulate sipanse` is a separate process
//! the adapter reaches exactly as it would reach SIPANSE.
//!
//! The API, in SIPANSE's own words and row shape ([`NativePermohonan`]: lower-case columns,
//! KBLI codes as one comma-separated string, attachments as JSON text, status codes BARU …
//! DITARIK):
//! - HTTP Basic authentication with the agency's account;
//! - every answer is `{"status": true|false, "message": "…", "data": …}`; a missing
//!   application is 404, an action its state no longer allows is 409 with the current status
//!   code in `data.status`;
//! - `POST /api/v1/permohonan` registers (idempotent per `referensi`), answering
//!   `data.no_registrasi`; `GET /api/v1/permohonan/{no}` and `GET /api/v1/permohonan?referensi=`
//!   read one; `PUT /api/v1/permohonan/{no}` corrects; `POST …/{no}/verifikasi` and
//!   `POST …/{no}/tarik` move it on; `GET /api/v1/log-status?setelah=&jumlah=` reads the status
//!   log.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Serialize;
use serde_json::{Value, json};

use super::native::{
    NativePermohonan, NativeStatus, SipanseNativeError, SipanseSystem, StatusChange,
};
use super::simulator::SipanseSimulator;
use crate::agency::Account;

/// The adapter's client of SIPANSE's API.
pub struct SipanseApi {
    http: reqwest::Client,
    base: String,
    account: Account,
}

impl SipanseApi {
    /// `base` is SIPANSE's address, up to and without `/api/v1`.
    pub fn new(base: &str, account: Account) -> Result<SipanseApi, SipanseNativeError> {
        let http =
            crate::agency::native_client().map_err(|e| SipanseNativeError::Api(e.to_string()))?;
        Ok(SipanseApi {
            http,
            base: base.trim_end_matches('/').to_owned(),
            account,
        })
    }

    /// One call: `data` on success, `None` on 404, the typed refusal otherwise.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Option<Value>, SipanseNativeError> {
        let failed = |e: &dyn std::fmt::Display| SipanseNativeError::Api(format!("{path}: {e}"));
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .basic_auth(&self.account.user_id, Some(&self.account.password));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.map_err(|e| failed(&e.without_url()))?;
        let status = r.status();
        let answer: Value = r.json().await.map_err(|e| failed(&e.without_url()))?;
        match status {
            s if s.is_success() => Ok(Some(answer["data"].clone())),
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::CONFLICT => {
                let code = answer["data"]["status"].as_str().unwrap_or_default();
                Err(SipanseNativeError::WrongState(NativeStatus::from_code(
                    code,
                )?))
            }
            s => Err(failed(&format_args!(
                "HTTP {s}: {}",
                answer["message"].as_str().unwrap_or_default()
            ))),
        }
    }

    async fn act(&self, path: &str, body: Value) -> Result<(), SipanseNativeError> {
        self.call(reqwest::Method::POST, path, Some(body))
            .await?
            .map(drop)
            .ok_or(SipanseNativeError::NotFound)
    }

    async fn row(&self, path: &str) -> Result<Option<NativePermohonan>, SipanseNativeError> {
        match self.call(reqwest::Method::GET, path, None).await? {
            Some(data) => parse(data).map(Some),
            None => Ok(None),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(data: Value) -> Result<T, SipanseNativeError> {
    serde_json::from_value(data)
        .map_err(|e| SipanseNativeError::Api(format!("an answer SIPANSE should not give: {e}")))
}

/// Path segments and query values are the agency's own numbers; encoded all the same.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[async_trait::async_trait]
impl SipanseSystem for SipanseApi {
    async fn daftar(&self, p: &NativePermohonan) -> Result<String, SipanseNativeError> {
        let body = serde_json::to_value(p).map_err(|e| SipanseNativeError::Api(e.to_string()))?;
        let data = self
            .call(reqwest::Method::POST, "/permohonan", Some(body))
            .await?
            .ok_or(SipanseNativeError::NotFound)?;
        data["no_registrasi"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SipanseNativeError::Api("no no_registrasi in the answer".into()))
    }

    async fn cari(&self, no: &str) -> Result<Option<NativePermohonan>, SipanseNativeError> {
        self.row(&format!("/permohonan/{}", enc(no))).await
    }

    async fn cari_referensi(
        &self,
        referensi: &str,
    ) -> Result<Option<NativePermohonan>, SipanseNativeError> {
        self.row(&format!("/permohonan?referensi={}", enc(referensi)))
            .await
    }

    async fn catat_verifikasi(
        &self,
        no: &str,
        lolos: bool,
        catatan: &str,
    ) -> Result<(), SipanseNativeError> {
        let path = format!("/permohonan/{}/verifikasi", enc(no));
        self.act(&path, json!({ "lolos": lolos, "catatan": catatan }))
            .await
    }

    async fn tarik(&self, no: &str, alasan: &str) -> Result<(), SipanseNativeError> {
        let path = format!("/permohonan/{}/tarik", enc(no));
        self.act(&path, json!({ "alasan": alasan })).await
    }

    async fn ubah(&self, no: &str, p: &NativePermohonan) -> Result<(), SipanseNativeError> {
        let body = serde_json::to_value(p).map_err(|e| SipanseNativeError::Api(e.to_string()))?;
        let path = format!("/permohonan/{}", enc(no));
        self.call(reqwest::Method::PUT, &path, Some(body))
            .await?
            .map(drop)
            .ok_or(SipanseNativeError::NotFound)
    }

    async fn log_status(
        &self,
        after: i64,
        max: usize,
    ) -> Result<Vec<StatusChange>, SipanseNativeError> {
        let path = format!("/log-status?setelah={after}&jumlah={max}");
        match self.call(reqwest::Method::GET, &path, None).await? {
            Some(data) => parse(data),
            None => Err(SipanseNativeError::Api(format!("{path}: not found"))),
        }
    }
}

struct Served {
    sim: Arc<SipanseSimulator>,
    /// The `Authorization` header the agency's account sends.
    authorization: String,
}

/// The simulator's API, with the licensing officer's desk beside it (`/simulator/…`: decide,
/// issue), so that tests and demos can act as the officer over the network.
pub fn router(sim: Arc<SipanseSimulator>, user: &str, password: &str) -> Router {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let served = Arc::new(Served {
        sim,
        authorization: format!("Basic {basic}"),
    });
    Router::new()
        .route("/api/v1/permohonan", post(daftar).get(cari_referensi))
        .route("/api/v1/permohonan/{no}", get(cari).put(ubah))
        .route("/api/v1/permohonan/{no}/verifikasi", post(verifikasi))
        .route("/api/v1/permohonan/{no}/tarik", post(tarik))
        .route("/api/v1/log-status", get(log_status))
        .route("/simulator/permohonan/{no}/putusan", post(putusan))
        .route("/simulator/permohonan/{no}/terbit", post(terbit))
        .with_state(served)
}

fn answer(status: StatusCode, message: &str, data: Value) -> Response {
    let ok = status.is_success();
    let body = json!({ "status": ok, "message": message, "data": data });
    (status, Json(body)).into_response()
}

/// SIPANSE's answer for `r`, after checking the caller's account.
fn reply<T: Serialize>(
    s: &Served,
    headers: &HeaderMap,
    r: impl FnOnce() -> Result<T, SipanseNativeError>,
) -> Response {
    let auth = headers.get("authorization").and_then(|h| h.to_str().ok());
    if auth != Some(s.authorization.as_str()) {
        return answer(StatusCode::UNAUTHORIZED, "Akun tidak dikenal", Value::Null);
    }
    match r() {
        Ok(data) => answer(StatusCode::OK, "OK", json!(data)),
        Err(SipanseNativeError::NotFound) => answer(
            StatusCode::NOT_FOUND,
            "Permohonan tidak ditemukan",
            Value::Null,
        ),
        Err(e @ SipanseNativeError::WrongState(st)) => answer(
            StatusCode::CONFLICT,
            &e.to_string(),
            json!({ "status": st.code() }),
        ),
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
            Value::Null,
        ),
    }
}

type Shared = State<Arc<Served>>;

async fn daftar(State(s): Shared, h: HeaderMap, Json(p): Json<NativePermohonan>) -> Response {
    reply(&s, &h, || {
        s.sim.daftar(&p).map(|no| json!({ "no_registrasi": no }))
    })
}

async fn cari(State(s): Shared, h: HeaderMap, Path(no): Path<String>) -> Response {
    reply(&s, &h, || {
        s.sim.cari(&no)?.ok_or(SipanseNativeError::NotFound)
    })
}

async fn cari_referensi(
    State(s): Shared,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let referensi = q.get("referensi").cloned().unwrap_or_default();
    reply(&s, &h, || {
        s.sim
            .cari_referensi(&referensi)?
            .ok_or(SipanseNativeError::NotFound)
    })
}

async fn ubah(
    State(s): Shared,
    h: HeaderMap,
    Path(no): Path<String>,
    Json(p): Json<NativePermohonan>,
) -> Response {
    reply(&s, &h, || s.sim.ubah(&no, &p))
}

async fn verifikasi(
    State(s): Shared,
    h: HeaderMap,
    Path(no): Path<String>,
    Json(b): Json<Value>,
) -> Response {
    let lolos = b["lolos"].as_bool().unwrap_or(false);
    let catatan = b["catatan"].as_str().unwrap_or_default();
    reply(&s, &h, || s.sim.catat_verifikasi(&no, lolos, catatan))
}

async fn tarik(
    State(s): Shared,
    h: HeaderMap,
    Path(no): Path<String>,
    Json(b): Json<Value>,
) -> Response {
    let alasan = b["alasan"].as_str().unwrap_or_default();
    reply(&s, &h, || s.sim.tarik(&no, alasan))
}

async fn log_status(
    State(s): Shared,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let n = |k: &str, d: i64| q.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let (after, max) = (n("setelah", 0), n("jumlah", 100).clamp(1, 1000) as usize);
    reply(&s, &h, || s.sim.log_status(after, max))
}

/// The officer's desk is the simulator's own: the account is not asked for.
async fn putusan(State(s): Shared, Path(no): Path<String>, Json(b): Json<Value>) -> Response {
    let setuju = b["setuju"].as_bool().unwrap_or(false);
    let catatan = b["catatan"].as_str().unwrap_or_default();
    desk(s.sim.putuskan(&no, setuju, catatan).map(|()| Value::Null))
}

async fn terbit(State(s): Shared, Path(no): Path<String>) -> Response {
    desk(s.sim.terbitkan(&no).map(|n| json!({ "no_izin": n })))
}

fn desk(r: Result<Value, SipanseNativeError>) -> Response {
    match r {
        Ok(data) => answer(StatusCode::OK, "OK", data),
        Err(e) => answer(StatusCode::CONFLICT, &e.to_string(), Value::Null),
    }
}
