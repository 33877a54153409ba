//! Request bodies: valid CloudEvents of an exact size, each with a fresh UUIDv7 so the bus's
//! idempotency check never turns a request into a cheap duplicate.
//!
//! The JSON is rendered once with a placeholder id; every request splices a new id into it,
//! so building a body costs one UUID and one copy, not a serialisation.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};

pub const CONTENT_TYPE: &str = bus::envelope::CONTENT_TYPE;
pub const BATCH_CONTENT_TYPE: &str = bus::envelope::BATCH_CONTENT_TYPE;

/// A valid NIK (Kota Bandung, male, 22-08-1985), the same sample the tests use.
pub const NIK: &str = "3273012208850001";

const PLACEHOLDER: &str = "00000000-0000-0000-0000-000000000000";

/// An event rendered once, ready to be stamped with fresh ids.
#[derive(Clone)]
pub struct Template {
    parts: Vec<Bytes>,
    pub content_type: &'static str,
}

impl Template {
    /// `events` are rendered as one body (a JSON array when `batch`), each with the
    /// placeholder id that [`Template::body`] replaces.
    fn render(events: &[Value], batch: bool) -> Template {
        let text = if batch {
            serde_json::to_string(events).unwrap_or_default()
        } else {
            serde_json::to_string(&events[0]).unwrap_or_default()
        };
        let parts = text
            .split(PLACEHOLDER)
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        Template {
            parts,
            content_type: if batch {
                BATCH_CONTENT_TYPE
            } else {
                CONTENT_TYPE
            },
        }
    }

    /// One event of `type_` whose body is exactly `size` bytes (or the smallest valid body
    /// when `size` is smaller), padded with `pad_field` of `data`, at most `pad_max` chars.
    pub fn sized(type_: &str, data: Value, pad_field: &str, pad_max: usize, size: usize) -> Self {
        Self::sized_to(None, type_, data, pad_field, pad_max, size)
    }

    /// As [`Template::sized`], addressed `to` a member when given.
    pub fn sized_to(
        to: Option<&str>,
        type_: &str,
        data: Value,
        pad_field: &str,
        pad_max: usize,
        size: usize,
    ) -> Self {
        let ev = |data: Value| {
            let mut ev =
                json!({ "specversion": "1.0", "id": PLACEHOLDER, "type": type_, "data": data });
            if let Some(to) = to {
                ev["to"] = Value::String(to.to_owned());
            }
            ev
        };
        let base = serde_json::to_string(&ev(data.clone()))
            .unwrap_or_default()
            .len();
        // The padding field adds `"field":"…",` (key, quotes, colon, comma) besides its text.
        let overhead = pad_field.len() + 6;
        let pad = size.saturating_sub(base + overhead).min(pad_max);
        let mut data = data;
        if pad > 0 {
            data[pad_field] = Value::String(filler(pad));
        }
        Template::render(&[ev(data)], false)
    }

    /// A batch of `n` copies of `single`'s event, each with its own id.
    pub fn batch(single: &Template, n: usize) -> Template {
        let one: Value = serde_json::from_slice(&single.body_with(PLACEHOLDER)).unwrap_or_default();
        Template::render(&vec![one; n], true)
    }

    /// The body with a fresh UUIDv7 in every id slot.
    pub fn body(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                out.put_slice(uuid::Uuid::now_v7().hyphenated().to_string().as_bytes());
            }
            out.put_slice(p);
        }
        out.freeze()
    }

    fn body_with(&self, id: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(id.as_bytes());
            }
            out.extend_from_slice(p);
        }
        out
    }

    /// Size in bytes of every body this template produces.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum::<usize>()
            + (self.parts.len() - 1) * PLACEHOLDER.len()
    }

    /// Events per body (1, or the batch size).
    pub fn events(&self) -> usize {
        self.parts.len() - 1
    }
}

/// Readable filler text (the free-text fields are for humans), no characters to escape.
fn filler(n: usize) -> String {
    const WORDS: &str = "mohon diproses sesuai ketentuan yang berlaku terima kasih ";
    WORDS.chars().cycle().take(n).collect()
}

/// The default payload: a citizen-service request from the city portal to Dukcapil
/// (`layanan.permohonan`, a message with one recipient), padded in its free-text
/// `keterangan` field to `size` bytes. `keterangan` allows 1,000 characters, enough for 1 KiB.
pub fn layanan(size: usize) -> Template {
    Template::sized(
        "layanan.permohonan",
        json!({ "nik": NIK, "layanan": "akta_kematian", "kontak": "0812 0000 1111" }),
        "keterangan",
        1000,
        size,
    )
}

/// A status update from Dukcapil to the city portal (`layanan.status`, addressed with `to`),
/// padded in its `catatan` field to `size` bytes: what the AMQP scenarios deliver.
pub fn status_to_portal(size: usize) -> Template {
    Template::sized_to(
        Some("GOV/portal"),
        "layanan.status",
        json!({
            "permohonan_id": "0192b8a0-0000-7000-8000-000000000001",
            "layanan": "akta_kematian",
            "status": "selesai",
        }),
        "catatan",
        1000,
        size,
    )
}

/// A `siak.penduduk.verify` query (from an agency to Dukcapil, the provider).
pub fn verify() -> Template {
    Template::render(
        &[json!({
            "specversion": "1.0", "id": PLACEHOLDER, "type": "siak.penduduk.verify",
            "data": { "nik": NIK, "nama": "BUDI SANTOSO", "tanggal_lahir": "1985-08-22" }
        })],
        false,
    )
}

/// Dukcapil's answer to a verify query.
pub fn verify_reply() -> Bytes {
    Bytes::from(
        json!({
            "status": "aktif",
            "hasil": {
                "nama": { "hasil": "sesuai", "skor": 0.97, "ambang": 0.85 },
                "tanggal_lahir": { "hasil": "sesuai" }
            },
            "diperiksa_pada": "2026-11-23T10:00:00Z"
        })
        .to_string(),
    )
}

/// An event of a generated registry's type (see `gen`), padded in its unbounded `catatan`.
pub fn generated(type_: &str, size: usize) -> Template {
    Template::sized(type_, json!({ "nik": NIK }), "catatan", usize::MAX, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_requested_size_and_fresh_ids() {
        let t = layanan(1024);
        let (a, b) = (t.body(), t.body());
        assert_eq!(a.len(), 1024);
        assert_eq!(t.len(), 1024);
        let (va, vb): (Value, Value) = (
            serde_json::from_slice(&a).unwrap(),
            serde_json::from_slice(&b).unwrap(),
        );
        assert_ne!(va["id"], vb["id"]);
        for size in [256, 16 << 10, 256 << 10] {
            assert_eq!(generated("bench.t0", size).body().len(), size);
        }
        let batch = Template::batch(&t, 3);
        let v: Value = serde_json::from_slice(&batch.body()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 3);
        assert_eq!(batch.events(), 3);
    }
}
