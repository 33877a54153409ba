//! Masking personal identifiers for logs, metrics and error messages.
//!
//! NIK, No. KK and NIP must never appear in plain text outside the store. Keeping the first 4
//! digits (the regency) and the last 4 lets an operator match a log line to a case without the
//! log being a copy of the population register.

/// Below this length there is too little left to hide after keeping 4 + 4, so everything goes.
const MIN_PARTIAL: usize = 12;

/// Mask a personal identifier for logs: keep first 4 and last 4 digits, e.g. 3204********0003.
/// Values shorter than 12 characters are masked entirely; the length is kept either way.
pub fn mask_id(value: &str) -> String {
    let n = value.chars().count();
    if n < MIN_PARTIAL {
        return "*".repeat(n);
    }
    value
        .chars()
        .enumerate()
        .map(|(i, c)| if i < 4 || i >= n - 4 { c } else { '*' })
        .collect()
}

/// Mask every run of 12 or more ASCII digits inside free text (for error messages and logs).
///
/// Twelve is below every personal ID (NIK and No. KK 16, NIP 18, NPWP 15) and above dates, years,
/// counts, ports and region codes (at most 10), so ordinary numbers in messages survive.
pub fn mask_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..start]);
        let run_len = rest[start..].bytes().take_while(u8::is_ascii_digit).count();
        let run = &rest[start..start + run_len];
        if run_len >= MIN_PARTIAL {
            out.push_str(&mask_id(run));
        } else {
            out.push_str(run);
        }
        rest = &rest[start + run_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(mask_id("3204051701900003"), "3204********0003");
        assert_eq!(mask_id("199009132025242014"), "1990**********2014");
        assert_eq!(mask_id("12345678901"), "***********");
        assert_eq!(mask_id(""), "");
    }

    #[test]
    fn runs_in_text() {
        assert_eq!(
            mask_digit_runs("nik 3204051701900003 is taken; see 2024-01-31, code 3204052001"),
            "nik 3204********0003 is taken; see 2024-01-31, code 3204052001"
        );
        assert_eq!(mask_digit_runs("199009132025242014"), "1990**********2014");
        assert_eq!(mask_digit_runs("x123456789012y"), "x1234****9012y");
        assert_eq!(mask_digit_runs("12345678901"), "12345678901");
        // Non-ASCII text around the run stays intact (byte offsets stay on char boundaries).
        assert_eq!(mask_digit_runs("é3204051701900003ü"), "é3204********0003ü");
        assert_eq!(mask_digit_runs("no digits"), "no digits");
    }
}
