//! NIP (civil servant number): PNS and PPPK.
//!
//! Both are 18 digits starting with a birth date. A PNS NIP goes on with the appointment year and
//! month; a PPPK number with the first appointment year and a two-digit contract field that is
//! deliberately never 01–12, so field 13–14 tells the two kinds apart without any other input.
//!
//! Sanity bounds, so a plausible-looking number with an impossible history is refused:
//! - the birth year is 1900–2100, and the birth date is a real Gregorian date (the century is
//!   written out, so 1900 was not a leap year and 2000 was);
//! - the appointment year is 1900–2100 and not before the birth year. Anything tighter (a
//!   minimum age, a retirement age) would refuse real records whose birth date is wrong, which
//!   BKN, like Dukcapil, does not renumber.

use super::digits::{self, day_month_reasons, gregorian_leap, num};

const YEARS: std::ops::RangeInclusive<u32> = 1900..=2100;

pub(super) fn check(value: &str) -> Result<(), Vec<String>> {
    digits::exact(value, 18)?;
    let mut reasons = Vec::new();

    let birth_year = num(&value[0..4]);
    if YEARS.contains(&birth_year) {
        let (month, day) = (num(&value[4..6]), num(&value[6..8]));
        reasons.extend(day_month_reasons(
            day,
            month,
            gregorian_leap(birth_year),
            "birth",
        ));
    } else {
        reasons.push("birth year must be 1900-2100".to_owned());
    }

    let appointed = num(&value[8..12]);
    if !YEARS.contains(&appointed) {
        reasons.push("appointment year must be 1900-2100".to_owned());
    } else if appointed < birth_year {
        reasons.push("appointment year is before the birth year".to_owned());
    }
    // Digits 13-14: a month for a PNS, a contract field outside 01-12 for a PPPK. Either way the
    // field itself is then valid, so there is nothing to report about it.

    if !matches!(&value[14..15], "1" | "2") {
        reasons.push("gender digit (15th) must be 1 (male) or 2 (female)".to_owned());
    }
    if &value[15..] == "000" {
        reasons.push("serial (last 3 digits) must be 001-999, not 000".to_owned());
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Which kind of NIP a well-formed value is, read from digits 13–14.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NipKind {
    /// Pegawai Negeri Sipil: digits 13–14 are the appointment month.
    Pns,
    /// Pegawai Pemerintah dengan Perjanjian Kerja: digits 13–14 are a contract field, never a month.
    Pppk,
}

/// The kind of a valid NIP, or `None` if it is not one.
pub fn nip_kind(value: &str) -> Option<NipKind> {
    check(value).ok()?;
    Some(if (1..=12).contains(&num(&value[12..14])) {
        NipKind::Pns
    } else {
        NipKind::Pppk
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pppk_example_from_the_design() {
        assert!(check("199009132025242014").is_ok());
        assert_eq!(nip_kind("199009132025242014"), Some(NipKind::Pppk));
    }

    #[test]
    fn pns() {
        for nip in [
            "198503302010121001",
            "197001011995031002",
            "200002292024012001",
        ] {
            assert!(check(nip).is_ok(), "{nip}");
            assert_eq!(nip_kind(nip), Some(NipKind::Pns));
        }
    }

    #[test]
    fn invalid() {
        let cases = [
            (
                "198502302010121001",
                "birth day 30 is not a day of month 02",
            ),
            ("190002292010121001", "not in a leap year"), // 1900 was not a leap year
            ("198513012010121001", "birth month 13"),
            ("185001012010121001", "birth year"),
            ("198501011980121001", "before the birth year"),
            ("198501012201121001", "appointment year"),
            ("198501012010123001", "gender"),
            ("198501012010120001", "gender"),
            ("198501012010121000", "serial"),
        ];
        for (nip, why) in cases {
            let reasons = check(nip).unwrap_err();
            assert!(
                reasons.iter().any(|r| r.contains(why)),
                "{nip}: {reasons:?}"
            );
        }
        assert!(check("19850101201012100").is_err());
        assert!(check("1985 01 01 2010 12 1 001").is_err());
    }
}
