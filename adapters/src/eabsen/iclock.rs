//! The LAN side of e-absen: the HTTP push protocol of ZKTeco fingerprint and face terminals
//! ("ADMS", the `/iclock/` endpoints), which offices' devices use to send attendance as it
//! happens.
//!
//! - `GET /iclock/cdata?SN=…&options=all`: the device's handshake; the answer carries its
//!   options, among them `ATTLOGStamp`, where the device resumes its uploads from.
//! - `POST /iclock/cdata?SN=…&table=ATTLOG&Stamp=…`: punch lines (PIN, time, status, verify,
//!   workcode, reserved…, tab-separated); answered `OK: <lines taken>`.
//! - `GET /iclock/getrequest?SN=…`: the command poll (this adapter sends no commands: `OK`).
//! - `POST /iclock/devicecmd?SN=…`: command results (acknowledged: `OK`).
//!
//! Devices speak plain HTTP on the office LAN, as they are built to; only the adapter's own link
//! to the bus is mTLS. A device is admitted by its serial number (`SN`), which the adapter's
//! configuration maps to a unit; any other gets 403 and a log line. Punches go through the
//! outbox exactly once: their ids derive from NIP and time, so a device that sends the same
//! lines again (a lost answer, a restarted adapter) queues nothing new. A line that cannot be
//! read is set aside in the outbox with its reason (and counted in its health), and still
//! counted as taken, so the device does not send it forever.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::EabsenAdapter;

/// Where the stamp of each device's last ATTLOG upload is kept (in the outbox's state).
fn stamp_key(sn: &str) -> String {
    format!("iclock.{sn}.attlog_stamp")
}

/// The devices admitted: serial number → unit.
pub type Devices = HashMap<String, String>;

struct Push {
    adapter: Arc<EabsenAdapter>,
    devices: Devices,
}

/// The `/iclock/` endpoints for `devices`, feeding `adapter`.
pub fn router(adapter: Arc<EabsenAdapter>, devices: Devices) -> Router {
    Router::new()
        .route("/iclock/cdata", get(handshake).post(upload))
        .route("/iclock/getrequest", get(|| async { "OK" }))
        .route("/iclock/devicecmd", post(|| async { "OK" }))
        .with_state(Arc::new(Push { adapter, devices }))
}

type Params = Query<HashMap<String, String>>;

/// The admitted device's serial number, or why it is refused.
fn admitted<'a>(push: &'a Push, q: &'a HashMap<String, String>) -> Result<&'a str, String> {
    let sn = q.get("SN").map(String::as_str).unwrap_or_default();
    match push.devices.get(sn) {
        Some(_) => Ok(sn),
        None => {
            tracing::warn!(sn, "a device that is not in the configuration was refused");
            Err(format!(
                "device {sn:?} is not admitted: add its serial number to the adapter's configuration\n"
            ))
        }
    }
}

fn refused(why: String) -> Response {
    (StatusCode::FORBIDDEN, why).into_response()
}

fn failed(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "device upload not taken; the device will send it again");
    (StatusCode::SERVICE_UNAVAILABLE, "ERROR\n").into_response()
}

async fn handshake(State(push): State<Arc<Push>>, Query(q): Params) -> Response {
    let sn = match admitted(&push, &q) {
        Ok(sn) => sn,
        Err(why) => return refused(why),
    };
    let stamp = match push.adapter.link.outbox.meta(&stamp_key(sn)) {
        Ok(s) => s.unwrap_or_else(|| "None".into()),
        Err(e) => return failed(e),
    };
    let zone = push.adapter.config.offset.whole_hours();
    let unit = &push.devices[sn];
    tracing::info!(sn, unit, stamp, "device handshake");
    format!(
        "GET OPTION FROM: {sn}\r\nATTLOGStamp={stamp}\r\nOPERLOGStamp=9999\r\nATTPHOTOStamp=None\r\n\
         ErrorDelay=30\r\nDelay=10\r\nTransTimes=00:00;14:05\r\nTransInterval=1\r\n\
         TransFlag=TransData AttLog\r\nTimeZone={zone}\r\nRealtime=1\r\nEncrypt=None\r\n"
    )
    .into_response()
}

async fn upload(State(push): State<Arc<Push>>, Query(q): Params, body: String) -> Response {
    let sn = match admitted(&push, &q) {
        Ok(sn) => sn.to_owned(),
        Err(why) => return refused(why),
    };
    let lines = body.lines().filter(|l| !l.trim().is_empty()).count();
    if q.get("table").map(String::as_str) != Some("ATTLOG") {
        // Operation logs, photos, user records: not attendance, taken and not kept.
        return format!("OK: {lines}").into_response();
    }
    let stamp = q.get("Stamp").cloned();
    let adapter = push.adapter.clone();
    let taken = tokio::task::spawn_blocking(move || {
        let report = adapter.import_push(&sn, &body)?;
        let outbox = &adapter.link.outbox;
        for e in &report.errors {
            let key = format!(
                "iclock/{sn}/{}/line {}",
                stamp.as_deref().unwrap_or("-"),
                e.line
            );
            let reason = bus::formats::mask_digit_runs(&format!("{}: {}", e.field, e.reason));
            outbox.set_aside(&key, "ATTLOG", &reason)?;
        }
        if let Some(stamp) = &stamp {
            outbox.set_meta(&stamp_key(&sn), stamp)?;
        }
        Ok::<_, crate::AdapterError>(report)
    })
    .await;
    match taken {
        Ok(Ok(_)) => format!("OK: {lines}").into_response(),
        Ok(Err(e)) => failed(e),
        Err(e) => failed(e),
    }
}
