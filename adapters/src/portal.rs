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
use crate::link::Link;

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

    /// Forwards queued requests and takes status notices from the inbox.
    pub async fn sync(&self, wait: Duration) -> Result<Vec<Value>, AdapterError> {
        if let Err(e) = self.link.flush().await {
            tracing::warn!(error = %e, "bus unreachable; requests stay in the outbox");
        }
        let mut notices = Vec::new();
        for m in self.link.pull(50, wait).await? {
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
                self.link.trace.hop(
                    &m.source,
                    Self::MEMBER,
                    &m.type_,
                    &format!(
                        "{} {}",
                        d["layanan"].as_str().unwrap_or_default(),
                        d["status"].as_str().unwrap_or_default()
                    ),
                );
                notices.push(m.data.clone());
            }
            self.link.ack(m.id).await?;
        }
        Ok(notices)
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
