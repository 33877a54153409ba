//! Normalising what agency systems really send, before anything is validated.
//!
//! Exports pass through spreadsheets and old web services: numbers lose their leading zeros,
//! dates come day-first or year-first, vocabularies arrive in any case and spacing, and
//! copy-pasted IDs carry zero-width spaces or non-breaking spaces. Each helper takes the native
//! field name so a failure names the field as the agency knows it, and never quotes an ID.

use bus::formats::Format;
use serde_json::Value;
use time::{Date, Month};

use crate::agency::MappingError;

/// Drops characters that are invisible in an export but break a comparison: zero-width
/// spaces and joiners, BOM, soft hyphen, word joiner, bidi marks and control characters.
pub fn strip_invisible(s: &str) -> String {
    s.chars()
        .filter(|c| {
            !matches!(
                c,
                '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}'
            ) && !c.is_control()
        })
        .collect()
}

/// A value that should be a string of digits, as a string: JSON numbers are printed as
/// integers, strings lose invisible characters, spaces and punctuation (`.`, `-`, `/`).
fn digit_text(field: &str, v: &Value) -> Result<(String, bool), MappingError> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(u) => Ok((u.to_string(), true)),
            None => Err(MappingError::one(
                field,
                "must be a whole non-negative number",
            )),
        },
        Value::String(s) => {
            let cleaned: String = strip_invisible(s)
                .chars()
                .filter(|c| !c.is_whitespace() && !matches!(c, '.' | '-' | '/' | '\u{00A0}'))
                .collect();
            if cleaned.is_empty() {
                return Err(MappingError::one(field, "is empty"));
            }
            if !cleaned.chars().all(|c| c.is_ascii_digit()) {
                return Err(MappingError::one(field, "must contain only digits"));
            }
            Ok((cleaned, false))
        }
        Value::Null => Err(MappingError::one(field, "is missing")),
        _ => Err(MappingError::one(field, "must be a string or a number")),
    }
}

/// A fixed-length code (RT, RW, region parts). Numbers are left-padded with zeros, because a
/// JSON number has already lost them; so are short strings, which spreadsheets produce too.
pub fn code(field: &str, v: &Value, len: usize) -> Result<String, MappingError> {
    let (s, _) = digit_text(field, v)?;
    if s.len() > len {
        return Err(MappingError::one(
            field,
            format!("has {} digits, at most {len} expected", s.len()),
        ));
    }
    Ok(format!("{s:0>len$}"))
}

/// A personal ID (NIK, No. KK): cleaned, zero-padded when it arrived as a number, then checked
/// with the bus's own format so the adapter never forwards what the bus would refuse.
pub fn personal_id(field: &str, v: &Value, format: Format) -> Result<String, MappingError> {
    let (mut s, was_number) = digit_text(field, v)?;
    if was_number && s.len() < 16 {
        s = format!("{s:0>16}");
    }
    format.check(&s).map_err(|reasons| {
        MappingError::one(
            field,
            format!("is not a valid {}: {}", format.name(), reasons.join(", ")),
        )
    })?;
    Ok(s)
}

/// A date as `DD-MM-YYYY`, `DD/MM/YYYY` or `YYYY-MM-DD`, returned as ISO `YYYY-MM-DD`.
pub fn date(field: &str, v: &Value) -> Result<String, MappingError> {
    let Some(s) = v.as_str() else {
        return Err(MappingError::one(field, "must be a date string"));
    };
    let s = strip_invisible(s);
    let s = s.trim();
    let s = s.split([' ', 'T']).next().unwrap_or_default();
    let parts: Vec<&str> = s.split(['-', '/']).collect();
    let bad = || MappingError::one(field, "must be DD-MM-YYYY or YYYY-MM-DD");
    if parts.len() != 3 || parts.iter().any(|p| !p.chars().all(|c| c.is_ascii_digit())) {
        return Err(bad());
    }
    let (y, m, d) = match (parts[0].len(), parts[2].len()) {
        (4, 1..=2) => (parts[0], parts[1], parts[2]),
        (1..=2, 4) => (parts[2], parts[1], parts[0]),
        _ => return Err(bad()),
    };
    let (y, m, d): (i32, u8, u8) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let month = Month::try_from(m).map_err(|_| MappingError::one(field, "month is not 1-12"))?;
    let date = Date::from_calendar_date(y, month, d)
        .map_err(|_| MappingError::one(field, "is not a real date"))?;
    Ok(format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        date.month() as u8,
        date.day()
    ))
}

/// The lookup key of a vocabulary value: upper case, no whitespace at all, so
/// "SLTP / SEDERAJAT", "Sltp/Sederajat" and "SLTP/SEDERAJAT" are one value.
pub fn vocab_key(s: &str) -> String {
    strip_invisible(s)
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_uppercase)
        .collect()
}

/// Maps a vocabulary value through `table` (keys as [`vocab_key`] makes them).
pub fn vocab(
    field: &str,
    v: &Value,
    table: &[(&str, &'static str)],
) -> Result<&'static str, MappingError> {
    let raw = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(MappingError::one(field, "must be a string")),
    };
    let key = vocab_key(&raw);
    table
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, canon)| *canon)
        .ok_or_else(|| {
            MappingError::one(
                field,
                format!("unknown value {:?}", bus::formats::mask_digit_runs(&raw)),
            )
        })
}

/// Free text (names, places, addresses): invisible characters out, whitespace collapsed.
pub fn text(field: &str, v: &Value) -> Result<String, MappingError> {
    let Some(s) = v.as_str() else {
        return Err(MappingError::one(field, "must be a string"));
    };
    let t = strip_invisible(s)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if t.is_empty() {
        return Err(MappingError::one(field, "is empty"));
    }
    Ok(t)
}

/// The comparison form of a name or address: upper case, punctuation out, common
/// abbreviations written out (JL → JALAN), whitespace collapsed.
pub fn comparable(s: &str) -> String {
    let upper: String = strip_invisible(s)
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                ' '
            }
        })
        .collect();
    upper
        .split_whitespace()
        .map(|w| match w {
            "JL" | "JLN" => "JALAN",
            "GG" => "GANG",
            "NO" | "NOMOR" => "NO",
            "KEL" => "KELURAHAN",
            "KEC" => "KECAMATAN",
            "MUH" | "MOCH" | "MOH" | "MUHAMAD" | "MUHAMMAD" | "MOHAMMAD" => "MUHAMMAD",
            w => w,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Similarity of two names or addresses in 0..=1: one minus the Levenshtein distance of
/// their comparison forms over the longer length. Deterministic and explainable to a clerk.
pub fn similarity(a: &str, b: &str) -> f64 {
    let a: Vec<char> = comparable(a).chars().collect();
    let b: Vec<char> = comparable(b).chars().collect();
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let d = prev[b.len()];
    ((1.0 - d as f64 / longest as f64) * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invisible_characters_and_numbers_become_canonical_ids() {
        let nik = "3273\u{200B}0122\u{FEFF}08850001";
        assert_eq!(
            personal_id("NIK", &json!(nik), Format::Nik).unwrap(),
            "3273012208850001"
        );
        // Aceh (11) keeps its digits as a number; a region starting with 0 does not exist,
        // but a No. KK typed as a number still gets padded before the check.
        assert_eq!(
            personal_id("NIK", &json!(3273012208850001u64), Format::Nik).unwrap(),
            "3273012208850001"
        );
        let e = personal_id("NO_KK", &json!("32730A"), Format::NoKk).unwrap_err();
        assert_eq!(e.fields(), ["NO_KK"]);
        assert_eq!(code("NO_RT", &json!(1), 3).unwrap(), "001");
        assert_eq!(code("NO_RW", &json!("12"), 3).unwrap(), "012");
        assert!(code("NO_RT", &json!(12345), 3).is_err());
    }

    #[test]
    fn both_date_orders_and_impossible_dates() {
        assert_eq!(date("TGL_LHR", &json!("22-08-1985")).unwrap(), "1985-08-22");
        assert_eq!(date("TGL_LHR", &json!("1985-08-22")).unwrap(), "1985-08-22");
        assert_eq!(date("TGL_LHR", &json!("22/08/1985")).unwrap(), "1985-08-22");
        assert_eq!(
            date("TGL_LHR", &json!("31-02-1985")).unwrap_err().fields(),
            ["TGL_LHR"]
        );
        assert!(date("TGL_LHR", &json!("1985")).is_err());
    }

    #[test]
    fn similarity_forgives_abbreviation_and_case() {
        assert_eq!(similarity("Jl. Merdeka No. 10", "JALAN MERDEKA NO 10"), 1.0);
        assert!(similarity("BUDI SANTOSO", "BUDI SANTOSA") > 0.9);
        assert!(similarity("BUDI SANTOSO", "SITI AMINAH") < 0.5);
    }
}
