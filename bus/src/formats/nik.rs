//! NIK (national ID number) and No. KK (family card number).
//!
//! A NIK is `PPKKCC DDMMYY SSSS`: the district where it was issued, the birth date (day + 40 for
//! women) and a serial. We check meaning, not only shape, because the field studies found
//! duplicate identities under different NIKs: a number that cannot exist is caught at the door.
//! The district may be historical, since a NIK keeps its first region for life.

use super::digits::{self, day_month_reasons, num};
use super::wilayah::district_prefix_known;

/// Facts a NIK encodes, used to warn (not fail) when the payload's own birth date / gender disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NikFacts {
    /// Day of birth, 1–31 (women's +40 already removed).
    pub day: u8,
    /// Month of birth, 1–12.
    pub month: u8,
    /// Two-digit year of birth; the century is not encoded.
    pub yy: u8,
    pub female: bool,
}

const DISTRICT_UNKNOWN: &str =
    "district code (first 6 digits) is neither a current nor a historical Kemendagri district";

/// The birth facts, or every reason the `DDMMYY` part is not a date.
fn birth(nik: &str) -> Result<NikFacts, Vec<String>> {
    let dd = num(&nik[6..8]);
    let month = num(&nik[8..10]);
    let yy = num(&nik[10..12]);
    let (day, female) = match dd {
        1..=31 => (dd, false),
        41..=71 => (dd - 40, true),
        _ => {
            let mut reasons = vec![format!(
                "birth day field {dd:02} is neither 01-31 nor 41-71 (women)"
            )];
            if !(1..=12).contains(&month) {
                reasons.push(format!("birth month {month:02} is not 01-12"));
            }
            return Err(reasons);
        }
    };
    // The century is unknown, and 2000 was a leap year, so any YY divisible by 4 may be one.
    let mut reasons = day_month_reasons(day, month, yy.is_multiple_of(4), "birth");
    if let Some(r) = reasons.first_mut().filter(|r| r.contains("29 February")) {
        *r = "birth date 29 February needs YY divisible by 4".to_owned();
    }
    if reasons.is_empty() {
        // All three fit in u8: checked ranges above, and yy < 100.
        Ok(NikFacts {
            day: day as u8,
            month: month as u8,
            yy: yy as u8,
            female,
        })
    } else {
        Err(reasons)
    }
}

/// Every reason `value` is not a NIK, checking all parts so one answer lists all of them.
pub(super) fn check(value: &str) -> Result<(), Vec<String>> {
    facts(value).map(|_| ())
}

fn facts(value: &str) -> Result<NikFacts, Vec<String>> {
    digits::exact(value, 16)?;
    let mut reasons = Vec::new();
    if !district_prefix_known(&value[..6]) {
        reasons.push(DISTRICT_UNKNOWN.to_owned());
    }
    let facts = birth(value).map_err(|r| reasons.extend(r)).ok();
    if &value[12..] == "0000" {
        reasons.push("serial (last 4 digits) must be 0001-9999, not 0000".to_owned());
    }
    match facts {
        Some(f) if reasons.is_empty() => Ok(f),
        _ => Err(reasons),
    }
}

/// The birth date and gender a valid NIK encodes; `None` if it is not a valid NIK, so callers
/// never warn about facts read from garbage.
pub fn nik_facts(nik: &str) -> Option<NikFacts> {
    facts(nik).ok()
}

/// A No. KK is 16 digits starting with the district that issued the card. The rest is a date
/// and serial whose rules Dukcapil has varied over the years, so checking it would refuse real
/// cards: we check only what is stable.
pub(super) fn check_no_kk(value: &str) -> Result<(), Vec<String>> {
    digits::exact(value, 16)?;
    if district_prefix_known(&value[..6]) {
        Ok(())
    } else {
        Err(vec![DISTRICT_UNKNOWN.to_owned()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(v: &str) -> Vec<String> {
        check(v).unwrap_err()
    }

    #[test]
    fn valid_men_and_women() {
        assert!(check("3204051701900001").is_ok());
        // Women add 40 to the day: 57 is the 17th.
        let f = nik_facts("3204055701900002").unwrap();
        assert_eq!(
            f,
            NikFacts {
                day: 17,
                month: 1,
                yy: 90,
                female: true
            }
        );
        assert!(!nik_facts("3204051701900001").unwrap().female);
        assert!(
            check("3204057112990003").is_ok(),
            "day 71 is the 31st for a woman"
        );
    }

    #[test]
    fn day_must_exist_in_month() {
        assert!(reasons("3204053104900001")[0].contains("day 31 is not a day of month 04"));
        assert_eq!(reasons("3204053002900001").len(), 1);
        assert_eq!(
            reasons("3204057104900001").len(),
            1,
            "31 April is wrong for women too"
        );
        assert_eq!(reasons("3204053201900001").len(), 1);
        assert_eq!(reasons("3204050001900001").len(), 1);
        assert_eq!(
            reasons("3204054001900001").len(),
            1,
            "40 is neither a man's nor a woman's day"
        );
        assert_eq!(reasons("3204057201900001").len(), 1);
        assert!(reasons("3204051513900001")[0].contains("month 13"));
    }

    #[test]
    fn leap_day_needs_yy_divisible_by_4() {
        assert!(check("3204052902990001").is_err());
        assert!(reasons("3204052902990001")[0].contains("29 February"));
        assert!(
            check("3204052902000001").is_ok(),
            "2000 was a leap year (and 1900 is unknowable)"
        );
        assert!(check("3204052902240001").is_ok());
        assert!(
            check("3204056902240001").is_ok(),
            "a woman born on 29 February"
        );
    }

    #[test]
    fn serial_and_region() {
        assert!(reasons("3204051701900000")[0].contains("serial"));
        assert!(reasons("3299991701900001")[0].contains("district"));
        assert!(reasons("0000001701900001")[0].contains("district"));
        // Every broken part is reported at once.
        assert_eq!(reasons("3299993202900000").len(), 3);
    }

    #[test]
    fn historical_papua_prefix() {
        // 910201 was Wamena (Kab. Jayawijaya, Papua) until 2022; it is 950101 in Papua Pegunungan now.
        assert!(check("9102011708850001").is_ok());
        assert!(check_no_kk("9102011708850001").is_ok());
        assert!(nik_facts("9102011708850001").is_some());
        // 920101 was Makbon (Kab. Sorong, Papua Barat); it is 960101 in Papua Barat Daya now.
        assert!(check("9201011708850001").is_ok());
        assert!(
            check("9501011708850001").is_ok(),
            "the current code is valid too"
        );
    }

    #[test]
    fn no_kk_checks_only_the_district() {
        assert!(check_no_kk("3204050000000000").is_ok());
        assert!(check_no_kk("3299990101010001").is_err());
        assert!(check_no_kk("320405010101000").is_err());
        assert!(check_no_kk("32040501010100 1").is_err());
    }

    #[test]
    fn facts_only_for_valid_niks() {
        assert!(nik_facts("3204053104900001").is_none());
        assert!(nik_facts("3204051701900000").is_none());
        assert!(nik_facts("320405170190000").is_none());
    }
}
