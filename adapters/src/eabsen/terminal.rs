//! A simulated fingerprint terminal as its own process (`simpul simulate eabsen`).
//!
//! A real terminal is not a server the adapter calls: it pushes to the adapter's `/iclock/`
//! endpoint ([`super::iclock`]) on the office LAN. So the simulated one does too, with
//! [`push`]: the handshake (whose `ATTLOGStamp` says where to resume from), uploads of the
//! punches not yet taken (taken only on an `OK` answer, so a lost answer means sending them
//! again), and the command poll. Between, it waits as a device does, longer after an error.
//!
//! On its own address ([`router`]) it has what a person at the device has: the reader
//! (`POST /simulator/scan`, a finger on it) and the USB export (`GET /attlog`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use tokio::sync::watch;

use super::simulator::EabsenSimulator;

/// The wait between rounds (a device's `Delay`, here short: the simulator is for tests).
const DELAY: Duration = Duration::from_millis(300);
/// The wait after a failed round (a device's `ErrorDelay`).
const ERROR_DELAY: Duration = Duration::from_secs(1);

/// The reader and the export.
pub fn router(dev: Arc<EabsenSimulator>) -> Router {
    Router::new()
        .route("/simulator/scan", post(scan))
        .route("/attlog", get(export))
        .with_state(dev)
}

fn failed(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

/// `{"pin": "1", "time": "2026-12-07 07:01:02", "status": 0, "verify": 1}`; `time` is the
/// device's local clock.
async fn scan(State(dev): State<Arc<EabsenSimulator>>, Json(b): Json<Value>) -> Response {
    let (Some(pin), Some(time)) = (b["pin"].as_str(), b["time"].as_str()) else {
        return (StatusCode::BAD_REQUEST, "pin and time are needed").into_response();
    };
    let code = |k: &str, d: i64| b[k].as_i64().unwrap_or(d);
    match dev.scan(pin, time, code("status", 0), code("verify", 1)) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failed(e),
    }
}

async fn export(State(dev): State<Arc<EabsenSimulator>>) -> Response {
    dev.export_attlog()
        .map_or_else(failed, IntoResponse::into_response)
}

/// Pushes `dev`'s punches to the adapter at `server` (`http://host:port`) until `stop`.
pub async fn push(dev: Arc<EabsenSimulator>, server: String, mut stop: watch::Receiver<bool>) {
    let http = match reqwest::Client::builder()
        .user_agent("iClock Proxy/1.09")
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(h) => h,
        Err(e) => return tracing::error!(error = %e, "no HTTP client"),
    };
    let server = server.trim_end_matches('/').to_owned();
    let mut handshaken = false;
    while !*stop.borrow() {
        let wait = match round(&http, &dev, &server, &mut handshaken).await {
            Ok(()) => DELAY,
            Err(e) => {
                tracing::warn!(error = %e, server, "push failed; the device tries again");
                handshaken = false;
                ERROR_DELAY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The answer's text, or why there is none.
async fn text(req: reqwest::RequestBuilder) -> Result<String, String> {
    req.send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())
}

async fn round(
    http: &reqwest::Client,
    dev: &EabsenSimulator,
    server: &str,
    handshaken: &mut bool,
) -> Result<(), String> {
    let sn = &dev.serial;
    if !*handshaken {
        let options = text(http.get(format!(
            "{server}/iclock/cdata?SN={sn}&options=all&pushver=2.4.1&language=69"
        )))
        .await?;
        let stamp = options
            .lines()
            .find_map(|l| l.trim().strip_prefix("ATTLOGStamp="))
            .and_then(|s| s.trim().parse().ok());
        dev.resume_from(stamp).map_err(|e| e.to_string())?;
        *handshaken = true;
    }
    let (body, last) = dev.pending().map_err(|e| e.to_string())?;
    if let Some(last) = last {
        let url = format!("{server}/iclock/cdata?SN={sn}&table=ATTLOG&Stamp={last}");
        let answer = text(http.post(url).body(body)).await?;
        if !answer.starts_with("OK") {
            return Err(format!("upload answered {answer:?}"));
        }
        dev.pushed_upto(last).map_err(|e| e.to_string())?;
    }
    text(http.get(format!("{server}/iclock/getrequest?SN={sn}"))).await?;
    Ok(())
}
