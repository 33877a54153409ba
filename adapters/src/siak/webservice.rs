//! SIAK over the network: Dukcapil's JSON web service, both sides of it.
//!
//! [`SiakWebService`] is the adapter's client, the one it uses against the real system;
//! [`router`] serves the same interface from the simulator, so `simpul simulate siak` is a
//! separate process the adapter reaches exactly as it would reach Dukcapil.
//!
//! The interface, as Dukcapil's web service shapes it:
//! - every call is `POST {base}/{CALL}`, where `base` is the agency's address
//!   (`…/dukcapil/get_json/<INSTANSI>`) and `CALL` the operation: `CALL_NIK`, `CALL_NAMA`,
//!   `LOG_PERUBAHAN`, `TERIMA_LAYANAN`;
//! - the body carries the agency's `USER_ID`, `PASSWORD` and `IP_USER` beside the operation's
//!   upper-case fields (`NIK`, `NAMA_LGKP`, `SEQ_AWAL`, `JUMLAH`, …);
//! - every answer is HTTP 200 with `{"content": [...], "lastPage": true, "numberOfElements": n}`.
//!   Failures are 200 too: `content` holds one `{"RESPON": "…"}`, which is "Data Tidak
//!   Ditemukan" when nothing matched and anything else (a wrong password, say) when the call
//!   was refused;
//! - records come as SIAK exports them: numbers for IDs, day-first dates, `STAT_KWN` or
//!   `STATUS_KAWIN`, stray zero-width characters. The adapter's mapping reads them all.
//!   Sequence and registration numbers come as strings.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::simulator::SiakSimulator;
use super::{NativeError, Perubahan, SiakSystem};
use crate::agency::Account;

/// `RESPON` when nothing matched: an empty answer, not a failure.
const NOT_FOUND: &str = "Data Tidak Ditemukan";
/// `RESPON` when the agency's credentials are wrong.
const REFUSED: &str = "User ID atau Password Salah";

/// The adapter's client of SIAK's web service.
pub struct SiakWebService {
    http: reqwest::Client,
    base: String,
    account: Account,
    /// The address Dukcapil has on its allow-list for this agency.
    ip_user: String,
}

impl SiakWebService {
    /// `base` is the agency's address at the web service, up to and without the operation.
    pub fn new(base: &str, account: Account, ip_user: &str) -> Result<SiakWebService, NativeError> {
        let http =
            crate::agency::native_client().map_err(|e| NativeError::Service(e.to_string()))?;
        Ok(SiakWebService {
            http,
            base: base.trim_end_matches('/').to_owned(),
            account,
            ip_user: ip_user.to_owned(),
        })
    }

    /// One call: the rows of `content`, none when SIAK says nothing matched. A failure names
    /// the call, never the address: its text may reach the asking agency in a refusal.
    async fn call(&self, op: &str, mut body: Value) -> Result<Vec<Value>, NativeError> {
        let failed = |e: &dyn std::fmt::Display| NativeError::Service(format!("{op}: {e}"));
        body["USER_ID"] = json!(self.account.user_id);
        body["PASSWORD"] = json!(self.account.password);
        body["IP_USER"] = json!(self.ip_user);
        let r = self
            .http
            .post(format!("{}/{op}", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| failed(&e.without_url()))?;
        let status = r.status();
        if !status.is_success() {
            return Err(failed(&format_args!("HTTP {status}")));
        }
        let answer: Value = r.json().await.map_err(|e| failed(&e.without_url()))?;
        let Some(content) = answer.get("content").and_then(Value::as_array) else {
            return Err(failed(&"the answer has no content"));
        };
        if let [one] = content.as_slice()
            && let Some(respon) = one.get("RESPON").and_then(Value::as_str)
        {
            return if respon == NOT_FOUND {
                Ok(Vec::new())
            } else {
                Err(failed(&respon))
            };
        }
        Ok(content.clone())
    }
}

/// A number SIAK may send as a number or as a string.
fn number(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())
}

#[async_trait::async_trait]
impl SiakSystem for SiakWebService {
    async fn cari_nik(&self, nik: &str) -> Result<Option<Value>, NativeError> {
        Ok(self
            .call("CALL_NIK", json!({ "NIK": nik }))
            .await?
            .into_iter()
            .next())
    }

    async fn cari_nama(&self, nama: &str) -> Result<Vec<Value>, NativeError> {
        self.call("CALL_NAMA", json!({ "NAMA_LGKP": nama })).await
    }

    async fn log_perubahan(&self, after: i64, max: usize) -> Result<Vec<Perubahan>, NativeError> {
        let rows = self
            .call(
                "LOG_PERUBAHAN",
                json!({ "SEQ_AWAL": after.to_string(), "JUMLAH": max.to_string() }),
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Perubahan {
                    seq: number(&r["SEQ"]).ok_or_else(|| {
                        NativeError::Service(format!("LOG_PERUBAHAN: a row without SEQ: {r}"))
                    })?,
                    jenis: r["JENIS"].as_str().unwrap_or_default().to_owned(),
                    data: r["DATA"].clone(),
                })
            })
            .collect()
    }

    async fn terima_layanan(
        &self,
        nik: &str,
        jenis: &str,
        referensi: &str,
        rincian: &Value,
    ) -> Result<String, NativeError> {
        let body = json!({ "NIK": nik, "JENIS_LAYANAN": jenis, "REFERENSI": referensi,
                           "RINCIAN": rincian });
        let rows = self.call("TERIMA_LAYANAN", body).await?;
        rows.first()
            .and_then(|r| number(&r["NO_REG"]))
            .map(|n| n.to_string())
            .ok_or_else(|| NativeError::Service("TERIMA_LAYANAN: no NO_REG in the answer".into()))
    }
}

struct Served {
    sim: Arc<SiakSimulator>,
    account: (String, String),
}

/// The simulator's web service (`/dukcapil/get_json/{instansi}/{CALL}`), with the clerk's
/// desk beside it (`/simulator/…`: record a birth, a death, a move, a new family card; see and
/// move on service requests), so that tests and demos can act as the clerk over the network.
pub fn router(sim: Arc<SiakSimulator>, user_id: &str, password: &str) -> Router {
    let served = Arc::new(Served {
        sim,
        account: (user_id.to_owned(), password.to_owned()),
    });
    Router::new()
        .route("/dukcapil/get_json/{instansi}/{call}", post(call))
        .route("/simulator/kelahiran", post(kelahiran))
        .route("/simulator/kematian", post(kematian))
        .route("/simulator/pindah", post(pindah))
        .route("/simulator/ubah_kk", post(ubah_kk))
        .route("/simulator/layanan", get(layanan))
        .route("/simulator/layanan/{no_reg}", post(proses_layanan))
        .with_state(served)
}

/// SIAK's answer: rows in `content`, or one `RESPON`.
fn content(rows: Vec<Value>) -> Json<Value> {
    let n = rows.len();
    Json(json!({ "content": rows, "lastPage": true, "numberOfElements": n }))
}

fn respon(what: &str) -> Json<Value> {
    content(vec![json!({ "RESPON": what })])
}

fn text<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field].as_str().unwrap_or_default()
}

async fn call(
    State(s): State<Arc<Served>>,
    Path((_instansi, op)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let (user, password) = &s.account;
    if text(&body, "USER_ID") != user || text(&body, "PASSWORD") != password {
        return respon(REFUSED);
    }
    let answer = match op.as_str() {
        "CALL_NIK" => s
            .sim
            .cari_nik(text(&body, "NIK"))
            .map(|r| r.into_iter().collect()),
        "CALL_NAMA" => s.sim.cari_nama(text(&body, "NAMA_LGKP")),
        "LOG_PERUBAHAN" => {
            let after = number(&body["SEQ_AWAL"]).unwrap_or(0);
            let max = number(&body["JUMLAH"]).unwrap_or(100).clamp(1, 1000) as usize;
            s.sim.log_perubahan(after, max).map(|rows| {
                rows.into_iter()
                    .map(|p| json!({ "SEQ": p.seq.to_string(), "JENIS": p.jenis, "DATA": p.data }))
                    .collect()
            })
        }
        "TERIMA_LAYANAN" => s
            .sim
            .terima_layanan(
                text(&body, "NIK"),
                text(&body, "JENIS_LAYANAN"),
                text(&body, "REFERENSI"),
                &body["RINCIAN"],
            )
            .map(|no| vec![json!({ "NO_REG": no })]),
        other => return respon(&format!("Layanan {other} tidak dikenal")),
    };
    match answer {
        Ok(rows) if rows.is_empty() => respon(NOT_FOUND),
        Ok(rows) => content(rows),
        Err(e) => respon(&e.to_string()),
    }
}

/// The clerk's desk answers `{"SEQ": n}` (the change-log entry made) or `{"RESPON": why}`.
fn desk(r: Result<i64, NativeError>) -> Json<Value> {
    Json(match r {
        Ok(seq) => json!({ "SEQ": seq }),
        Err(e) => json!({ "RESPON": e.to_string() }),
    })
}

async fn kelahiran(State(s): State<Arc<Served>>, Json(rec): Json<Value>) -> Json<Value> {
    desk(s.sim.catat_kelahiran(&rec))
}

async fn kematian(State(s): State<Arc<Served>>, Json(b): Json<Value>) -> Json<Value> {
    desk(s.sim.catat_kematian(
        text(&b, "NIK"),
        text(&b, "TGL_MATI"),
        text(&b, "TMPT_MATI"),
        text(&b, "NO_AKTA_MATI"),
    ))
}

async fn pindah(State(s): State<Arc<Served>>, Json(b): Json<Value>) -> Json<Value> {
    desk(s.sim.catat_pindah(text(&b, "NIK"), &b["TUJUAN"]))
}

async fn ubah_kk(State(s): State<Arc<Served>>, Json(b): Json<Value>) -> Json<Value> {
    desk(
        s.sim
            .ubah_kk(text(&b, "NIK"), text(&b, "NKK_BARU"), text(&b, "ALASAN")),
    )
}

async fn layanan(State(s): State<Arc<Served>>) -> Json<Value> {
    Json(match s.sim.daftar_layanan() {
        Ok(rows) => json!(rows),
        Err(e) => json!({ "RESPON": e.to_string() }),
    })
}

async fn proses_layanan(
    State(s): State<Arc<Served>>,
    Path(no_reg): Path<String>,
    Json(b): Json<Value>,
) -> Json<Value> {
    desk(
        s.sim
            .proses_layanan(&no_reg, text(&b, "STATUS"), text(&b, "CATATAN")),
    )
}
