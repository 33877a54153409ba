//! Data subjects: the fields a schema marks as identifying a person (`"x-data-subject": "nik"`,
//! `"no-kk"` or `"nip"`), found in payloads and indexed under an HMAC with the bus's own
//! secret, so the audit can answer "who touched data about this person" without holding the
//! identifier itself.

use std::path::Path;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The kinds of identifier a schema may mark.
pub const KINDS: [&str; 3] = ["nik", "no-kk", "nip"];

/// Where a marked field is: object keys, with `None` for "every item of an array".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPath {
    pub kind: &'static str,
    pub path: Vec<Option<String>>,
}

/// Every marked field of a schema, through `properties`, `items` and the `*Of` combinators.
/// A marking with an unknown kind is an error, so a typo cannot silently index nothing.
pub fn marked(schema: &Value) -> Result<Vec<SubjectPath>, String> {
    let mut out = Vec::new();
    walk(schema, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn walk(
    s: &Value,
    path: &mut Vec<Option<String>>,
    out: &mut Vec<SubjectPath>,
) -> Result<(), String> {
    if let Some(k) = s.get("x-data-subject") {
        let kind = KINDS
            .iter()
            .find(|known| k.as_str() == Some(known))
            .ok_or_else(|| format!("x-data-subject {k} is not one of {KINDS:?}"))?;
        out.push(SubjectPath {
            kind,
            path: path.clone(),
        });
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            path.push(Some(name.clone()));
            walk(sub, path, out)?;
            path.pop();
        }
    }
    if let Some(items) = s.get("items") {
        path.push(None);
        walk(items, path, out)?;
        path.pop();
    }
    for comb in ["allOf", "anyOf", "oneOf"] {
        for sub in s.get(comb).and_then(Value::as_array).into_iter().flatten() {
            walk(sub, path, out)?;
        }
    }
    Ok(())
}

/// The string values at `path` in `data`.
fn values<'a>(data: &'a Value, path: &[Option<String>], out: &mut Vec<&'a str>) {
    match path.split_first() {
        None => out.extend(data.as_str()),
        Some((Some(key), rest)) => {
            if let Some(v) = data.get(key) {
                values(v, rest, out);
            }
        }
        Some((None, rest)) => {
            for v in data.as_array().into_iter().flatten() {
                values(v, rest, out);
            }
        }
    }
}

/// The bus's secret for subject HMACs: 32 random bytes in `certs/subject.key`, made on first
/// start. Nodes of one bus share it with their PKI; without it no one can link an identifier
/// to the index, not even someone who reads the whole database.
pub struct SubjectKey([u8; 32]);

pub const KEY_FILE: &str = "subject.key";

impl SubjectKey {
    pub fn load_or_create(certs: &Path) -> std::io::Result<SubjectKey> {
        let path = certs.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(b) if b.len() == 32 => {
                let mut k = [0; 32];
                k.copy_from_slice(&b);
                Ok(SubjectKey(k))
            }
            Ok(_) => Err(std::io::Error::other(format!(
                "{}: not a 32-byte key",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = [0u8; 32];
                aws_lc_rs::rand::fill(&mut k).map_err(|_| std::io::Error::other("no RNG"))?;
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                f.write_all(&k)?;
                f.sync_all()?;
                Ok(SubjectKey(k))
            }
            Err(e) => Err(e),
        }
    }

    /// HMAC-SHA256 of `kind:value` (a NIK and an equal No. KK index apart).
    pub fn hmac(&self, kind: &str, value: &str) -> [u8; 32] {
        // HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC key");
        mac.update(kind.as_bytes());
        mac.update(b":");
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The HMACs of `ids`, each once.
    pub fn hmacs(&self, ids: &[Identifier]) -> Vec<[u8; 32]> {
        let mut out: Vec<[u8; 32]> = ids.iter().map(|(k, v)| self.hmac(k, v)).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// A marked identifier found in a payload: its kind and value. Held only in memory, on the
/// way to its HMAC.
pub type Identifier = (&'static str, String);

/// Every marked identifier in `data`.
pub fn identifiers(marked: &[SubjectPath], data: &Value) -> Vec<Identifier> {
    let mut out = Vec::new();
    for m in marked {
        let mut found = Vec::new();
        values(data, &m.path, &mut found);
        out.extend(found.into_iter().map(|v| (m.kind, v.to_owned())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_marked_fields_in_objects_and_arrays() {
        let schema = json!({"properties": {
            "nik": {"type": "string", "x-data-subject": "nik"},
            "pemohon": {"properties": {"nik": {"x-data-subject": "nik"}}},
            "anggota": {"items": {"properties": {"no_kk": {"x-data-subject": "no-kk"}}}}
        }});
        let m = marked(&schema).unwrap();
        assert_eq!(m.len(), 3);
        let key = SubjectKey([1; 32]);
        let data = json!({"nik": "1", "pemohon": {"nik": "2"},
                          "anggota": [{"no_kk": "3"}, {"no_kk": "1"}]});
        let got = key.hmacs(&identifiers(&m, &data));
        let mut want = vec![
            key.hmac("nik", "1"),
            key.hmac("nik", "2"),
            key.hmac("no-kk", "3"),
            key.hmac("no-kk", "1"),
        ];
        want.sort_unstable();
        assert_eq!(got, want);
        assert_ne!(key.hmac("nik", "1"), SubjectKey([2; 32]).hmac("nik", "1"));
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        let schema = json!({"properties": {"x": {"x-data-subject": "ktp"}}});
        assert!(marked(&schema).unwrap_err().contains("ktp"));
    }
}
