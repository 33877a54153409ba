//! NPWP (tax ID) in both forms the bus meets.
//!
//! Before 2024 an NPWP was 15 digits whose 9th is a Luhn check digit over the first 8. Since
//! PMK 112/2022 it is 16 digits: a resident individual's NPWP is their NIK, and every older NPWP
//! becomes `0` followed by its 15 digits. No NIK starts with `0` (there is no province 0x), so the
//! first digit says which 16-digit form to check.

use super::digits::{self, all_ascii_digits};
use super::nik;

/// The Luhn check digit for `payload`: double every second digit from the right, starting with
/// the rightmost. Verified against the design's example `013121660091000`, whose check digit 0
/// this gives; doubling from the other end would give 8.
fn luhn_check_digit(payload: &str) -> u32 {
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// The pre-2024 form; `value` is already known to be 15 ASCII digits.
fn check15(value: &str) -> Result<(), Vec<String>> {
    if digits::num(&value[8..9]) == luhn_check_digit(&value[..8]) {
        Ok(())
    } else {
        Err(vec![
            "9th digit is not the Luhn check digit of the first 8".to_owned(),
        ])
    }
}

pub(super) fn check(value: &str) -> Result<(), Vec<String>> {
    if !all_ascii_digits(value) {
        return Err(vec![digits::NOT_DIGITS.to_owned()]);
    }
    match value.len() {
        15 => check15(value),
        16 if value.starts_with('0') => {
            check15(&value[1..]).map_err(|r| prefixed("as 0 + 15-digit NPWP", r))
        }
        16 => nik::check(value).map_err(|r| prefixed("as NIK", r)),
        n => Err(vec![format!(
            "must be 15 digits (pre-2024 NPWP) or 16 digits (0 + 15-digit NPWP, or a NIK), not {n}"
        )]),
    }
}

/// Say which form the reasons are about: a 16-digit NPWP failing as a NIK reads oddly otherwise.
fn prefixed(form: &str, reasons: Vec<String>) -> Vec<String> {
    reasons
        .into_iter()
        .map(|r| format!("{form}: {r}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_from_the_design() {
        assert_eq!(luhn_check_digit("01312166"), 0);
        assert!(check("013121660091000").is_ok());
        for d in 1..=9 {
            let changed = format!("01312166{d}091000");
            assert!(check(&changed).is_err(), "{changed}");
        }
    }

    #[test]
    fn sixteen_digit_forms() {
        assert!(
            check("0013121660091000").is_ok(),
            "0 + a valid 15-digit NPWP"
        );
        assert!(check("0013121665091000").unwrap_err()[0].starts_with("as 0 + 15-digit NPWP"));
        assert!(check("3204051701900001").is_ok(), "a valid NIK");
        assert!(check("3204053104900001").unwrap_err()[0].starts_with("as NIK"));
    }

    #[test]
    fn shape() {
        assert!(check("01312166009100").is_err());
        assert!(check("01.312.166.0-091.000").is_err());
        assert!(check("00131216600910001").is_err());
    }
}
