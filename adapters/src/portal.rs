//! The citizen portal (G2C, a SLAWE-style city portal, member `GOV/portal`).
//!
//! It files citizen service requests to Dukcapil (`layanan.permohonan`) through its outbox,
//! so a request typed in at a kelurahan counter survives a dropped link, and keeps the status
//! notices that come back (`layanan.status`) for the citizen to see.

use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::agency::{AdapterError, Agency, envelope};
use crate::link::{Leased, Link};
use crate::runner::InboxHandler;

pub struct Portal {
    pub link: Link,
}

impl Agency for Portal {
    const NAME: &'static str = "portal";
    const MEMBER: &'static str = "GOV/portal";
    const PRODUCES: &'static [&'static str] = &["layanan.permohonan", "siak.penduduk.verify"];
    const CONSUMES: &'static [&'static str] = &["layanan.status", "siak.penduduk.lahir"];
}

impl Portal {
    pub fn new(link: Link) -> Result<Portal, AdapterError> {
        link.outbox.conn().execute_batch(
            "CREATE TABLE IF NOT EXISTS permohonan (
                 id TEXT PRIMARY KEY, layanan TEXT NOT NULL, status TEXT NOT NULL,
                 nomor_registrasi TEXT, catatan TEXT);",
        )?;
        Ok(Portal { link })
    }

    /// Files a request for a citizen: one of SLAWE's nine services, with the fields that
    /// service takes (`rincian`, an object: `{"kode_desa", "lokasi", "tanggal"}` for the
    /// mobile registration van, say). Returns its id (the bus message id).
    pub fn ajukan(&self, nik: &str, layanan: &str, rincian: Value) -> Result<Uuid, AdapterError> {
        let id = Uuid::now_v7();
        let mut data = json!({ "nik": nik, "layanan": layanan });
        if let (Value::Object(data), Value::Object(fields)) = (&mut data, rincian) {
            data.extend(fields);
        }
        self.link.outbox.conn().execute(
            "INSERT INTO permohonan (id, layanan, status) VALUES (?1, ?2, 'dikirim')",
            params![id.to_string(), layanan],
        )?;
        self.link
            .queue(&envelope(id, "layanan.permohonan", data, None))?;
        self.link.trace.hop(
            Self::MEMBER,
            "GOV/dukcapil",
            "layanan.permohonan",
            &format!("queued: {layanan}"),
        );
        Ok(id)
    }

    /// Forwards queued requests and takes status notices from the inbox; returns them.
    pub async fn sync(&self, wait: Duration) -> Result<Vec<Value>, AdapterError> {
        self.link.flush_or_keep().await;
        let mut notices = Vec::new();
        for m in self.link.pull(50, wait).await? {
            if m.type_ == "layanan.status" {
                notices.push(m.data.clone());
            }
            self.handle(m).await?;
        }
        Ok(notices)
    }

    /// What the portal application shows for a request: `{"id", "status"}`, or, for one the
    /// bus refused and that was never sent, `tidak_terkirim` with the bus's problem under
    /// `masalah`.
    pub fn view(&self, id: Uuid) -> Result<Option<Value>, AdapterError> {
        let Some(status) = self.status(id)? else {
            return Ok(None);
        };
        let refused = match status.as_str() {
            "dikirim" => self.link.outbox.refusal(&id.to_string())?,
            _ => None,
        };
        Ok(Some(match refused {
            Some(why) => {
                let problem: Value = serde_json::from_str(&why).unwrap_or(json!(why));
                json!({ "id": id, "status": "tidak_terkirim", "masalah": problem })
            }
            None => json!({ "id": id, "status": status }),
        }))
    }

    /// The status the citizen sees for a request.
    pub fn status(&self, id: Uuid) -> Result<Option<String>, AdapterError> {
        Ok(self
            .link
            .outbox
            .conn()
            .query_row(
                "SELECT status FROM permohonan WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?)
    }
}

impl InboxHandler for Portal {
    fn link(&self) -> &Link {
        &self.link
    }

    /// A status notice updates what the citizen sees; anything else is acknowledged.
    async fn handle(&self, m: Leased) -> Result<(), AdapterError> {
        if m.type_ == "layanan.status" {
            let d = &m.data;
            self.link.outbox.conn().execute(
                "UPDATE permohonan SET status = ?2, nomor_registrasi = ?3, catatan = ?4 WHERE id = ?1",
                params![
                    d["permohonan_id"].as_str(),
                    d["status"].as_str(),
                    d["nomor_registrasi"].as_str(),
                    d["catatan"].as_str()
                ],
            )?;
            let layanan = d["layanan"].as_str().unwrap_or_default();
            let status = d["status"].as_str().unwrap_or_default();
            let what = format!("{layanan} {status}");
            self.link
                .trace
                .hop(&m.source, Self::MEMBER, &m.type_, &what);
        }
        self.link.ack(m.id).await
    }
}

/// The portal application's way in, on a loopback address of the portal's host (`[portal]
/// listen`): `POST /permohonan` with `{"nik", "layanan", …the service's fields}` queues a
/// request and answers 202 `{"id"}`; `GET /permohonan/{id}` answers `{"id", "status"}`
/// (`dikirim` until Dukcapil's first notice). The bus checks each request's fields when it
/// arrives; one it refuses is `tidak_terkirim`, with the bus's problem (every failing field)
/// under `masalah`, and counted in the health output's `rejected`.
pub fn intake(portal: std::sync::Arc<Portal>) -> axum::Router {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use std::sync::Arc;

    async fn file(
        State(p): State<Arc<Portal>>,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        let Ok(Value::Object(mut data)) = serde_json::from_slice::<Value>(&body) else {
            return (
                StatusCode::BAD_REQUEST,
                "a JSON object: {\"nik\", \"layanan\", …}\n",
            )
                .into_response();
        };
        let text = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_owned));
        let (Some(nik), Some(layanan)) = (text(data.remove("nik")), text(data.remove("layanan")))
        else {
            return (StatusCode::BAD_REQUEST, "nik and layanan are required\n").into_response();
        };
        match p.ajukan(&nik, &layanan, Value::Object(data)) {
            Ok(id) => (StatusCode::ACCEPTED, axum::Json(json!({ "id": id }))).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        }
    }

    async fn status(
        State(p): State<Arc<Portal>>,
        Path(id): Path<String>,
    ) -> axum::response::Response {
        match Uuid::parse_str(&id).ok().map(|id| p.view(id)) {
            Some(Ok(Some(view))) => axum::Json(view).into_response(),
            Some(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
            _ => (StatusCode::NOT_FOUND, "no such request\n").into_response(),
        }
    }

    axum::Router::new()
        .route("/permohonan", axum::routing::post(file))
        .route("/permohonan/{id}", axum::routing::get(status))
        .with_state(portal)
}
