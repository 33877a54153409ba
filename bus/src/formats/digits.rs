//! Shape checks and calendar arithmetic shared by the formats.
//!
//! Every format is "ASCII digits only" before it is anything else: adapters normalise what
//! agencies send, so a space, dot, dash, sign or a digit from another script here means the
//! value was not normalised, and guessing would hide that. Reasons never quote the value, since
//! it may be a personal ID and reasons end up in problem documents and logs.

/// True when every byte is `0`–`9`. Bytes, not chars: `char::is_numeric` would let through
/// Arabic-Indic or full-width digits, which no Indonesian registry issues.
pub(super) fn all_ascii_digits(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_digit())
}

/// The reason for a value that is not all ASCII digits, shared so every format words it alike.
pub(super) const NOT_DIGITS: &str =
    "must contain only ASCII digits 0-9 (no spaces, punctuation, signs or other digits)";

/// Reasons unless `value` is exactly `len` ASCII digits. Both problems are reported at once, so
/// a sender fixes everything in one round trip.
pub(super) fn exact(value: &str, len: usize) -> Result<(), Vec<String>> {
    let mut reasons = Vec::new();
    if !all_ascii_digits(value) {
        reasons.push(NOT_DIGITS.to_owned());
    }
    let n = value.chars().count();
    if n != len {
        reasons.push(format!("must be exactly {len} digits, not {n} characters"));
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// The number written by a run of ASCII digits. Callers check the shape first, so this never
/// sees anything else; it is a fold rather than `str::parse` to avoid a `Result` nobody can hit.
pub(super) fn num(digits: &str) -> u32 {
    digits.bytes().fold(0, |n, b| n * 10 + u32::from(b - b'0'))
}

/// Gregorian leap years: a NIP carries a four-digit year, so the century rule applies.
pub(super) fn gregorian_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// Days in `month` (1–12); `leap` decides February.
pub(super) fn days_in_month(month: u32, leap: bool) -> u32 {
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Why `day`/`month` is not a calendar date, if it is not. `leap` decides 29 February; the
/// caller words that case itself because NIK and NIP know different things about the year.
pub(super) fn day_month_reasons(day: u32, month: u32, leap: bool, what: &str) -> Vec<String> {
    let mut reasons = Vec::new();
    if !(1..=12).contains(&month) {
        reasons.push(format!("{what} month {month:02} is not 01-12"));
    } else if day == 0 {
        reasons.push(format!("{what} day 00 is not a day"));
    } else if day > days_in_month(month, true) {
        reasons.push(format!(
            "{what} day {day:02} is not a day of month {month:02}"
        ));
    } else if month == 2 && day == 29 && !leap {
        reasons.push(format!("{what} date 29 February is not in a leap year"));
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        assert!(exact("0123", 4).is_ok());
        assert_eq!(exact("012", 4).unwrap_err().len(), 1);
        assert_eq!(exact("01a", 4).unwrap_err().len(), 2);
        // Arabic-Indic and full-width digits are digits to Unicode, not to us.
        assert!(exact("\u{0661}\u{0662}", 2).is_err());
        assert!(exact("\u{ff11}\u{ff12}", 2).is_err());
        assert!(exact("+1", 2).is_err());
    }

    #[test]
    fn calendar() {
        assert!(gregorian_leap(2000) && gregorian_leap(2024) && !gregorian_leap(1900));
        assert_eq!(days_in_month(2, false), 28);
        assert_eq!(days_in_month(4, false), 30);
        assert!(day_month_reasons(29, 2, true, "birth").is_empty());
        assert_eq!(day_month_reasons(29, 2, false, "birth").len(), 1);
        assert_eq!(day_month_reasons(31, 4, true, "birth").len(), 1);
        assert_eq!(day_month_reasons(1, 13, true, "birth").len(), 1);
        assert_eq!(num("0042"), 42);
    }
}
