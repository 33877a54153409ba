//! Parsing what attendance devices produce (ZKTeco-style), without interpreting codes.
//!
//! - ATTLOG export: `PIN<TAB>YYYY-MM-DD HH:MM:SS<TAB>device<TAB>status<TAB>verify<TAB>workcode`,
//!   PIN left-padded with spaces, lines ending in CRLF.
//! - Push (ADMS `cdata?table=ATTLOG`): `PIN<TAB>time<TAB>status<TAB>verify<TAB>workcode`, possibly
//!   followed by reserved fields, which are ignored; the device is named by the request (`SN`).
//!
//! Status and verify codes stay opaque integers: devices disagree on what they mean.

use time::PrimitiveDateTime;
use time::macros::format_description;

/// One punch as the device recorded it, in device-local time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Punch {
    /// 1-based line number in the input, for error reports.
    pub line: usize,
    /// The PIN with padding removed (and leading zeros, which some devices add).
    pub pin: String,
    pub local: PrimitiveDateTime,
    pub device: String,
    pub status: i64,
    pub verify: i64,
    pub workcode: Option<i64>,
}

/// A line that could not be parsed, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {field}: {reason}")]
pub struct LineError {
    pub line: usize,
    pub field: &'static str,
    pub reason: String,
}

/// PINs compare without padding or leading zeros: `"   0042"` and `"42"` are one person.
pub fn normalize_pin(raw: &str) -> Option<String> {
    let t = raw.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\u{FEFF}');
    if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    if t.chars().all(|c| c.is_ascii_digit()) {
        let s = t.trim_start_matches('0');
        return Some(if s.is_empty() { "0".into() } else { s.into() });
    }
    Some(t.to_owned())
}

fn parse_time(s: &str) -> Option<PrimitiveDateTime> {
    PrimitiveDateTime::parse(
        s.trim(),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .ok()
}

fn int(line: usize, field: &'static str, s: Option<&str>) -> Result<i64, LineError> {
    let s = s.map(str::trim).unwrap_or_default();
    s.parse().map_err(|_| LineError {
        line,
        field,
        reason: "must be an integer".into(),
    })
}

fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
}

fn common(
    n: usize,
    pin: Option<&str>,
    time: Option<&str>,
) -> Result<(String, PrimitiveDateTime), LineError> {
    let pin = pin.and_then(normalize_pin).ok_or(LineError {
        line: n,
        field: "PIN",
        reason: "missing or not alphanumeric".into(),
    })?;
    let local = time.and_then(parse_time).ok_or(LineError {
        line: n,
        field: "time",
        reason: "must be YYYY-MM-DD HH:MM:SS".into(),
    })?;
    Ok((pin, local))
}

/// Parses an ATTLOG export. Every bad line is reported; good lines are kept.
pub fn parse_attlog(text: &str) -> (Vec<Punch>, Vec<LineError>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (n, l) in lines(text) {
        let f: Vec<&str> = l.split('\t').collect();
        let r = (|| {
            if f.len() < 5 {
                return Err(LineError {
                    line: n,
                    field: "line",
                    reason: format!("{} tab-separated fields, at least 5 expected", f.len()),
                });
            }
            let (pin, local) = common(n, f.first().copied(), f.get(1).copied())?;
            let device = f[2].trim();
            if device.is_empty() {
                return Err(LineError {
                    line: n,
                    field: "device",
                    reason: "is empty".into(),
                });
            }
            Ok(Punch {
                line: n,
                pin,
                local,
                device: device.to_owned(),
                status: int(n, "status", f.get(3).copied())?,
                verify: int(n, "verify", f.get(4).copied())?,
                workcode: f.get(5).and_then(|s| s.trim().parse().ok()),
            })
        })();
        match r {
            Ok(p) => ok.push(p),
            Err(e) => bad.push(e),
        }
    }
    (ok, bad)
}

/// Parses a push body from device `sn`.
pub fn parse_push(sn: &str, text: &str) -> (Vec<Punch>, Vec<LineError>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (n, l) in lines(text) {
        let f: Vec<&str> = l.split('\t').collect();
        let r = (|| {
            if f.len() < 4 {
                return Err(LineError {
                    line: n,
                    field: "line",
                    reason: format!("{} tab-separated fields, at least 4 expected", f.len()),
                });
            }
            let (pin, local) = common(n, f.first().copied(), f.get(1).copied())?;
            Ok(Punch {
                line: n,
                pin,
                local,
                device: sn.to_owned(),
                status: int(n, "status", f.get(2).copied())?,
                verify: int(n, "verify", f.get(3).copied())?,
                workcode: f.get(4).and_then(|s| s.trim().parse().ok()),
            })
        })();
        match r {
            Ok(p) => ok.push(p),
            Err(e) => bad.push(e),
        }
    }
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attlog_with_padded_pins_and_crlf() {
        let text = "        1\t2026-11-23 07:01:02\t1\t0\t1\t0\r\n       23\t2026-11-23 16:30:00\t1\t1\t15\t\r\n";
        let (ok, bad) = parse_attlog(text);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].pin, "1");
        assert_eq!(ok[0].local.to_string(), "2026-11-23 7:01:02.0");
        assert_eq!(
            (ok[1].pin.as_str(), ok[1].status, ok[1].verify),
            ("23", 1, 15)
        );
        assert_eq!(ok[1].workcode, None);
    }

    #[test]
    fn push_variant_ignores_reserved_fields() {
        let text =
            "105\t2026-11-23 07:45:10\t0\t1\t0\t0\t0\n0002\t2026-11-23 07:50:00\t255\t4\t0\n";
        let (ok, bad) = parse_push("CQZ7231160002", text);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok[0].device, "CQZ7231160002");
        assert_eq!(ok[1].pin, "2");
        assert_eq!(ok[1].status, 255);
    }

    #[test]
    fn bad_lines_are_reported_by_field_not_dropped() {
        let text = "  1\t2026-13-01 07:00:00\t1\t0\t1\r\n  2\t2026-11-23 07:00:00\t1\tx\t1\r\n\t2026-11-23 07:00:00\t1\t0\t1\r\nshort\r\n";
        let (ok, bad) = parse_attlog(text);
        assert!(ok.is_empty());
        let fields: Vec<_> = bad.iter().map(|e| (e.line, e.field)).collect();
        assert_eq!(
            fields,
            [(1, "time"), (2, "status"), (3, "PIN"), (4, "line")]
        );
    }
}
