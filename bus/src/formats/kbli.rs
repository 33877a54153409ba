//! KBLI (business classification) codes, checked against the published code lists.
//!
//! A KBLI code is a five-digit group (kelompok) of one edition of the classification, and the
//! value alone does not say which: `47111` may mean different things, or nothing, in two
//! editions. So a payload names its edition in `kbli_versi` and the schema applies that
//! edition's format, `kbli-2020` for KBLI 2020 (Peraturan BPS No. 2 Tahun 2020). Only codes that
//! exist in the list pass: `99999` has the right shape but is no activity, and accepting it
//! would file a permit against nothing.
//!
//! Each edition's list is embedded from `data/kbli/` (sources, method and licence note in its
//! `NOTICE.md`) and parsed once, on first use, into a sorted vector; a lookup is a binary search
//! and allocates nothing.
//!
//! The plain `kbli` format accepts a code of any edition the bus knows (today KBLI 2020 only).
//! It is for messages that do not carry `kbli_versi` and for `simpul check --format kbli`.
//!
//! To add KBLI 2025: `data/kbli/kbli2025.txt` with its NOTICE entry, a variant and its list here,
//! `Format::Kbli2025` named `kbli-2025` in `formats/mod.rs`, and `"2025"` in the `kbli_versi`
//! enum and the `if`/`then` of every schema that has one.

use std::sync::LazyLock;

use super::digits::{self, num};

const KBLI_2020: &str = include_str!("../../data/kbli/kbli2020.txt");

static CODES_2020: LazyLock<Vec<u32>> = LazyLock::new(|| parse(KBLI_2020, "kbli2020.txt"));

/// An edition of KBLI that the bus has the code list of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KbliEdition {
    /// KBLI 2020, Peraturan BPS No. 2 Tahun 2020.
    Kbli2020,
}

impl KbliEdition {
    pub const ALL: [KbliEdition; 1] = [KbliEdition::Kbli2020];

    /// The value of `kbli_versi` that selects this edition: "2020".
    pub fn versi(self) -> &'static str {
        match self {
            KbliEdition::Kbli2020 => "2020",
        }
    }

    /// The edition a payload's `kbli_versi` names, if the bus has its list. Exact match only.
    pub fn from_versi(versi: &str) -> Option<KbliEdition> {
        KbliEdition::ALL.into_iter().find(|e| e.versi() == versi)
    }

    /// The regulation that published the edition.
    pub fn regulation(self) -> &'static str {
        match self {
            KbliEdition::Kbli2020 => "Peraturan BPS No. 2 Tahun 2020",
        }
    }

    /// Every five-digit group code of the edition, as numbers, ascending.
    pub fn codes(self) -> &'static [u32] {
        match self {
            KbliEdition::Kbli2020 => &CODES_2020,
        }
    }

    /// True when `code` is exactly five ASCII digits and a group of this edition.
    pub fn contains(self, code: &str) -> bool {
        digits::exact(code, 5).is_ok() && self.has(num(code))
    }

    fn has(self, code: u32) -> bool {
        self.codes().binary_search(&code).is_ok()
    }

    /// True when some group of this edition starts with the two-digit division `division`.
    fn has_division(self, division: u32) -> bool {
        let codes = self.codes();
        let first = codes.partition_point(|&c| c < division * 1000);
        codes.get(first).is_some_and(|&c| c / 1000 == division)
    }
}

/// The list in `text` as ascending numbers. Panics on a malformed list: it is embedded at build
/// time and covered by tests, so a failure here is a broken build, not bad input.
fn parse(text: &str, file: &str) -> Vec<u32> {
    let mut codes = Vec::with_capacity(2048);
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        assert!(
            digits::exact(line, 5).is_ok(),
            "{file}: not a five-digit code: {line:?}"
        );
        let code = num(line);
        if let Some(&last) = codes.last() {
            assert!(code > last, "{file}: {line} is out of order or repeated");
        }
        codes.push(code);
    }
    codes
}

/// `kbli`: a group of any edition the bus knows.
pub(super) fn check(value: &str) -> Result<(), Vec<String>> {
    check_in(&KbliEdition::ALL, value)
}

/// `kbli-2020` and the like: a group of that one edition.
pub(super) fn check_edition(edition: KbliEdition, value: &str) -> Result<(), Vec<String>> {
    check_in(&[edition], value)
}

fn check_in(editions: &[KbliEdition], value: &str) -> Result<(), Vec<String>> {
    digits::exact(value, 5)?;
    let code = num(value);
    if editions.iter().any(|e| e.has(code)) {
        return Ok(());
    }
    let names: Vec<&str> = editions.iter().map(|e| e.versi()).collect();
    let names = names.join(" or ");
    // No reason quotes the value. The division (two digits) is named because a wrong one is the
    // usual sign of a transposed or truncated code; past that, the list is the only authority.
    let division = code / 1000;
    let reason = if editions.iter().any(|e| e.has_division(division)) {
        format!("is not a group (kelompok) code of KBLI {names}: no such activity in the list")
    } else {
        format!("first two digits {division:02} are not a KBLI {names} division (golongan pokok)")
    };
    Err(vec![reason])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const V2020: KbliEdition = KbliEdition::Kbli2020;

    /// The count established in `data/kbli/NOTICE.md`; a change to the list must change this.
    #[test]
    fn kbli2020_count() {
        let codes = V2020.codes();
        assert_eq!(codes.len(), 1791);
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
        let level = |digits: u32| {
            codes
                .iter()
                .map(|c| c / 10u32.pow(5 - digits))
                .collect::<BTreeSet<_>>()
                .len()
        };
        // golongan pokok, golongan, subgolongan, as in the regulation's structure
        assert_eq!((level(2), level(3), level(4)), (88, 245, 567));
        assert_eq!(codes.first(), Some(&1111));
        assert_eq!(codes.last(), Some(&99000));
    }

    #[test]
    fn listed_codes_pass() {
        // 47111 is the README walk-through's and the demo's; 47112 the flows' correction;
        // 10433, 16291, 35117, 35202 and 91035 are the ones only the BPS-text source had.
        for ok in [
            "01111", "47111", "47112", "62019", "62015", "99000", "10110", "10433", "16291",
            "35117", "35202", "91035",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
            assert_eq!(check_edition(V2020, ok), Ok(()), "{ok}");
            assert!(V2020.contains(ok), "{ok}");
        }
    }

    #[test]
    fn unlisted_codes_fail() {
        // 99999 and 47119 have the shape but are no group; 11050 is KBLI 2017 (split into 11051
        // and 11052 in 2020); 61925 appears in some unofficial lists but not in the regulation.
        for bad in ["99999", "47119", "11050", "61925", "01110", "47110"] {
            let reasons = check_edition(V2020, bad).expect_err(bad);
            assert_eq!(reasons.len(), 1, "{bad}: {reasons:?}");
            assert!(reasons[0].contains("kelompok"), "{bad}: {reasons:?}");
            assert!(check(bad).is_err(), "{bad}");
            assert!(!V2020.contains(bad), "{bad}");
        }
        // Divisions KBLI 2020 does not have (ISIC Rev. 4 has the same gaps).
        for bad in ["00000", "04000", "34000", "40000", "76000", "89000"] {
            let reasons = check_edition(V2020, bad).expect_err(bad);
            assert_eq!(reasons.len(), 1, "{bad}: {reasons:?}");
            assert!(reasons[0].contains("golongan pokok"), "{bad}: {reasons:?}");
            assert!(reasons[0].contains(&bad[..2]), "{bad}: {reasons:?}");
        }
    }

    #[test]
    fn shape_before_list() {
        for bad in [
            "4711",
            "471111",
            "4711a",
            "",
            " 47111",
            "47111 ",
            "\u{0664}7111",
        ] {
            let reasons = check_edition(V2020, bad).expect_err(bad);
            assert!(
                reasons.iter().any(|r| r.contains("digit")),
                "{bad:?}: {reasons:?}"
            );
            assert!(!V2020.contains(bad), "{bad:?}");
        }
    }

    #[test]
    fn reasons_never_quote_the_value() {
        for bad in ["99999", "47119", "04000", "4711", "471111"] {
            for r in check(bad).expect_err(bad) {
                assert!(!r.contains(bad), "{r:?} quotes {bad}");
            }
        }
    }

    #[test]
    fn kbli_versi_selects_the_edition() {
        assert_eq!(KbliEdition::from_versi("2020"), Some(V2020));
        for other in ["2025", "2017", "2009", " 2020", "2020 ", "KBLI 2020", ""] {
            assert_eq!(KbliEdition::from_versi(other), None, "{other:?}");
        }
        for e in KbliEdition::ALL {
            assert_eq!(KbliEdition::from_versi(e.versi()), Some(e));
            assert!(!e.codes().is_empty());
            assert!(!e.regulation().is_empty());
        }
    }

    /// The permit application schema: `kbli_versi` picks the list its codes are checked against,
    /// an unknown `kbli_versi` is refused with a pointer to it, and the codes are still checked
    /// (against every known edition) so the sender learns everything in one round trip.
    #[test]
    fn permohonan_schema_checks_codes_by_kbli_versi() {
        use serde_json::{Value, json};

        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
        let read = |name: &str| -> Value {
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
        };
        let schema = crate::schema::Schema::compile(
            "sipanse.izin.permohonan.v1",
            read("sipanse.izin.permohonan.v1.json"),
        )
        .unwrap();
        let example = read("examples/sipanse.izin.permohonan.v1.json");
        let errors = |data: &Value| -> Vec<(String, String)> {
            schema
                .validate(data)
                .errors
                .into_iter()
                .map(|e| (e.pointer, e.detail))
                .collect()
        };
        let with = |kbli: Value, versi: Option<Value>| {
            let mut data = example.clone();
            data["kbli"] = kbli;
            match versi {
                Some(v) => data["kbli_versi"] = v,
                None => {
                    data.as_object_mut().unwrap().remove("kbli_versi");
                }
            }
            data
        };
        fn pointers(errors: &[(String, String)]) -> Vec<&str> {
            let mut p: Vec<&str> = errors.iter().map(|e| e.0.as_str()).collect();
            p.sort_unstable();
            p
        }

        assert_eq!(errors(&example), []);
        assert_eq!(
            errors(&with(json!(["47111", "01111"]), Some(json!("2020")))),
            []
        );

        let e = errors(&with(
            json!(["47111", "99999", "47119"]),
            Some(json!("2020")),
        ));
        assert_eq!(pointers(&e), ["/kbli/1", "/kbli/2"], "{e:?}");
        for (_, detail) in &e {
            assert!(detail.contains("kbli-2020"), "{detail}");
            assert!(
                !detail.contains("99999") && !detail.contains("47119"),
                "{detail}"
            );
        }

        // An edition the bus has no list for: refused at /kbli_versi, codes still checked.
        let e = errors(&with(json!(["47111", "99999"]), Some(json!("2025"))));
        assert_eq!(pointers(&e), ["/kbli/1", "/kbli_versi"], "{e:?}");

        // No edition at all: the same, and a malformed code is reported once, not per branch.
        let e = errors(&with(json!(["4711"]), None));
        assert_eq!(pointers(&e), ["/kbli/0", "/kbli_versi"], "{e:?}");
    }
}
