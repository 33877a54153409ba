//! The shared JSON Schemas, compiled once at start with simpul's custom formats switched on.
//!
//! Draft 2020-12 treats `format` as an annotation unless told otherwise, which would let a
//! malformed NIK through silently; we force assertion and refuse unknown formats, so a typo in
//! a schema is a start-up error rather than a hole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::formats::{self, Format};
use crate::problem::{FieldError, pointer_token};

/// One compiled schema. `id` is the file stem, e.g. `siak.penduduk.meninggal.v1`.
pub struct Schema {
    pub id: String,
    /// The schema's own `$id`, accepted as `dataschema` as well as `id`.
    pub uri: Option<String>,
    pub raw: Value,
    /// The fields marked `x-data-subject`, which the audit indexes by person.
    pub subjects: Vec<crate::subjects::SubjectPath>,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("id", &self.id).finish()
    }
}

/// What validation found: errors make the payload invalid; warnings do not.
#[derive(Debug, Default)]
pub struct Verdict {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<FieldError>,
}

impl Schema {
    pub fn compile(id: &str, raw: Value) -> Result<Schema, String> {
        let mut opts = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .should_ignore_unknown_formats(false);
        for f in Format::ALL {
            opts = opts.with_format(f.name(), move |v: &str| f.is_valid(v));
        }
        let validator = opts
            .build(&raw)
            .map_err(|e| formats::mask_digit_runs(&e.to_string()))?;
        let uri = raw.get("$id").and_then(Value::as_str).map(str::to_owned);
        Ok(Schema {
            id: id.to_owned(),
            uri,
            subjects: crate::subjects::marked(&raw)?,
            raw,
            validator,
        })
    }

    /// Validates `data`, naming every failing field; never echoes field values.
    pub fn validate(&self, data: &Value) -> Verdict {
        let mut verdict = Verdict::default();
        if self.validator.is_valid(data) {
            nik_warnings(data, "", &mut verdict.warnings);
            return verdict;
        }
        for err in self.validator.iter_errors(data) {
            let path = err.instance_path().as_str().to_owned();
            let e = match err.kind() {
                ValidationErrorKind::Required { property } => {
                    let name = property.as_str().unwrap_or_default();
                    FieldError::new(format!("{path}/{}", pointer_token(name)), "is required")
                }
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    // Each field that is not allowed, by its own pointer.
                    for name in unexpected {
                        let pointer = format!("{path}/{}", pointer_token(name));
                        verdict
                            .errors
                            .push(FieldError::new(pointer, "is not allowed here"));
                    }
                    continue;
                }
                ValidationErrorKind::Format { format } => {
                    let reasons = match (Format::from_name(format), err.instance().as_str()) {
                        (Some(f), Some(s)) => f.check(s).err().unwrap_or_default().join("; "),
                        _ => String::new(),
                    };
                    FieldError::new(path, format!("is not a valid {format}: {reasons}"))
                }
                _ => {
                    // The library's message starts with the offending value; drop it so
                    // personal data never reaches a response or a log.
                    let msg = err.to_string();
                    let value = err.instance().to_string();
                    FieldError::new(path, msg.replacen(&value, "value", 1))
                }
            };
            verdict.errors.push(e);
        }
        verdict
    }
}

/// A NIK encodes a birth date and a gender. When they disagree with the payload's own fields we
/// warn rather than refuse: Dukcapil does not renumber people whose NIK date is wrong.
fn nik_warnings(value: &Value, path: &str, out: &mut Vec<FieldError>) {
    match value {
        Value::Object(map) => {
            if let Some(facts) = map
                .get("nik")
                .and_then(Value::as_str)
                .and_then(formats::nik_facts)
            {
                if let Some(date) = map.get("tanggal_lahir").and_then(Value::as_str) {
                    let parts: Vec<&str> = date.split('-').collect();
                    if let [y, m, d] = parts[..] {
                        let same = y.get(2..).and_then(|yy| yy.parse::<u8>().ok())
                            == Some(facts.yy)
                            && m.parse::<u8>().ok() == Some(facts.month)
                            && d.parse::<u8>().ok() == Some(facts.day);
                        if !same {
                            out.push(FieldError::new(
                                format!("{path}/tanggal_lahir"),
                                "differs from the birth date encoded in the NIK",
                            ));
                        }
                    }
                }
                if let Some(gender) = map.get("jenis_kelamin").and_then(Value::as_str) {
                    let female = matches!(gender.to_ascii_uppercase().as_str(), "P" | "PEREMPUAN");
                    let male = matches!(gender.to_ascii_uppercase().as_str(), "L" | "LAKI-LAKI");
                    if (female && !facts.female) || (male && facts.female) {
                        out.push(FieldError::new(
                            format!("{path}/jenis_kelamin"),
                            "differs from the gender encoded in the NIK",
                        ));
                    }
                }
            }
            for (k, v) in map {
                nik_warnings(v, &format!("{path}/{}", pointer_token(k)), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                nik_warnings(v, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Every schema under a directory, by id. Loading reports every bad file at once.
#[derive(Debug, Default)]
pub struct Schemas {
    by_id: HashMap<String, Arc<Schema>>,
}

/// Reads and compiles every schema, in `paths`' order, spread over the machine's cores: each
/// file is independent, and with 10,000 schemas this was most of a cold start.
fn load_all(paths: &[PathBuf]) -> Vec<Result<Schema, String>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = paths.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = paths
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|p| load(p)).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// One schema file, its id from the file's name.
fn load(path: &Path) -> Result<Schema, String> {
    let id = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let raw = std::fs::read(path).map_err(|e| e.to_string())?;
    let raw = serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
    Schema::compile(id, raw)
}

impl Schemas {
    pub fn load_dir(dir: &Path) -> Result<Schemas, Vec<String>> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| vec![format!("schemas dir {}: {e}", dir.display())])?;
        let mut by_id = HashMap::new();
        let mut errors = Vec::new();
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for (path, loaded) in paths.iter().zip(load_all(&paths)) {
            match loaded {
                Ok(s) => {
                    by_id.insert(s.id.clone(), Arc::new(s));
                }
                Err(e) => errors.push(format!("schema {}: {e}", path.display())),
            }
        }
        if errors.is_empty() {
            Ok(Schemas { by_id })
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Schema>> {
        self.by_id.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Schema>> {
        self.by_id.values()
    }
}
