//! simpul's custom JSON Schema formats: identifiers checked for meaning, not only shape.
//!
//! Agencies built their systems alone, so the same NIK, NPWP or region code arrives in many
//! spellings. Adapters normalise to canonical values (ASCII digits only) and these formats refuse
//! anything else, so what is stored is comparable across agencies. Each check returns every
//! reason at once, and no reason quotes the value: these are personal identifiers, and reasons
//! travel into problem documents and logs.

mod digits;
mod kbli;
mod mask;
mod nik;
mod nip;
mod npwp;
mod wilayah;

pub use kbli::KbliEdition;
pub use mask::{mask_digit_runs, mask_id};
pub use nik::{NikFacts, nik_facts};
pub use nip::{NipKind, nip_kind};
pub use wilayah::{
    RegionCounts, district_prefix_known, historical_district, region_counts, region_exists,
};

/// The custom JSON Schema formats of simpul.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Nik,
    NoKk,
    Nip,
    Nib,
    Npwp,
    /// A KBLI group code of any edition the bus knows (see [`KbliEdition`]).
    Kbli,
    /// A KBLI 2020 group code; schemas apply it when `kbli_versi` is "2020".
    Kbli2020,
    KodeWilayah,
}

impl Format {
    pub const ALL: [Format; 8] = [
        Format::Nik,
        Format::NoKk,
        Format::Nip,
        Format::Nib,
        Format::Npwp,
        Format::Kbli,
        Format::Kbli2020,
        Format::KodeWilayah,
    ];

    /// The name used in schemas: "nik", "no-kk", "nip", "nib", "npwp", "kbli", "kbli-2020",
    /// "kode-wilayah".
    pub fn name(self) -> &'static str {
        match self {
            Format::Nik => "nik",
            Format::NoKk => "no-kk",
            Format::Nip => "nip",
            Format::Nib => "nib",
            Format::Npwp => "npwp",
            Format::Kbli => "kbli",
            Format::Kbli2020 => "kbli-2020",
            Format::KodeWilayah => "kode-wilayah",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Ok, or every reason the value is invalid. Reasons never contain the value itself, nor more
    /// of its digits than a reason needs (a day or a month): personal IDs must not leak into logs.
    pub fn check(self, value: &str) -> Result<(), Vec<String>> {
        match self {
            Format::Nik => nik::check(value),
            Format::NoKk => nik::check_no_kk(value),
            Format::Nip => nip::check(value),
            // OSS issues NIBs as 13 digits with no published check digit, so shape is all we know.
            Format::Nib => digits::exact(value, 13),
            Format::Npwp => npwp::check(value),
            Format::Kbli => kbli::check(value),
            Format::Kbli2020 => kbli::check_edition(KbliEdition::Kbli2020, value),
            Format::KodeWilayah => check_kode_wilayah(value),
        }
    }

    pub fn is_valid(self, value: &str) -> bool {
        self.check(value).is_ok()
    }
}

/// Only the current table: a new record must not be filed against a district that no longer
/// exists, even though old NIKs may still start with one.
fn check_kode_wilayah(value: &str) -> Result<(), Vec<String>> {
    let mut reasons = Vec::new();
    if !digits::all_ascii_digits(value) {
        reasons.push(digits::NOT_DIGITS.to_owned());
    }
    let n = value.chars().count();
    if ![2, 4, 6, 10].contains(&n) {
        reasons.push(format!(
            "must be 2, 4, 6 or 10 digits (province, regency, district or village), not {n} characters"
        ));
    }
    if reasons.is_empty() {
        reasons = wilayah::missing_reasons(value);
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::from_name(f.name()), Some(f));
        }
        assert_eq!(Format::from_name("NIK"), None);
        assert_eq!(Format::from_name("date"), None);
    }

    #[test]
    fn valid_examples() {
        let ok = [
            (Format::Nik, "3204055701900002"),
            (Format::NoKk, "3204050101100005"),
            (Format::Nip, "199009132025242014"),
            (Format::Nip, "198503302010121001"),
            (Format::Nib, "8120000123456"),
            (Format::Npwp, "013121660091000"),
            (Format::Npwp, "0013121660091000"),
            (Format::Npwp, "3204055701900002"),
            (Format::Kbli, "62019"),
            (Format::Kbli2020, "47111"),
            (Format::KodeWilayah, "32"),
            (Format::KodeWilayah, "3204"),
            (Format::KodeWilayah, "320405"),
            (Format::KodeWilayah, "3204052001"),
        ];
        for (f, v) in ok {
            assert_eq!(f.check(v), Ok(()), "{} {v}", f.name());
            assert!(f.is_valid(v));
        }
    }

    #[test]
    fn historical_prefix_is_for_nik_and_kk_only() {
        // Jayawijaya was 9102 under Papua until 2022 and is 9501 under Papua Pegunungan now.
        assert!(Format::Nik.is_valid("9102011708850001"));
        assert!(Format::NoKk.is_valid("9102011708850001"));
        assert!(!Format::KodeWilayah.is_valid("910201"));
        assert!(!Format::KodeWilayah.is_valid("9102"));
        assert!(Format::KodeWilayah.is_valid("950101"));
        // Kab. Merauke: 910101 then, 930101 in Papua Selatan now.
        assert!(Format::Nik.is_valid("9101012512790004"));
        assert!(!Format::KodeWilayah.is_valid("910101"));
    }

    #[test]
    fn unknown_region() {
        assert!(!Format::Nik.is_valid("3299991701900001"));
        assert!(!Format::KodeWilayah.is_valid("3204052999"));
        assert!(!Format::KodeWilayah.is_valid("39"));
        assert!(!Format::KodeWilayah.is_valid("32040"));
    }

    #[test]
    fn only_ascii_digits_anywhere() {
        let nik = "3204055701900002";
        let variants = [
            format!(" {nik}"),
            format!("+{nik}"),
            "3204.05.570190.0002".to_owned(),
            "3204-0557-0190-0002".to_owned(),
            // Arabic-Indic and full-width digits for the first two.
            format!("\u{0663}\u{0662}{}", &nik[2..]),
            format!("\u{ff13}\u{ff12}{}", &nik[2..]),
            format!("{nik}\u{200b}"),
        ];
        for f in Format::ALL {
            for v in &variants {
                assert!(!f.is_valid(v), "{} accepted {v:?}", f.name());
            }
        }
        assert!(!Format::KodeWilayah.is_valid("\u{0663}\u{0662}"));
        assert!(!Format::Kbli.is_valid("\u{0666}\u{0662}019"));
        assert!(!Format::Kbli2020.is_valid("\u{0664}\u{0667}111"));
    }

    /// Reasons end up in logs, so none may repeat the value, nor any six consecutive digits of it
    /// (a day or month, two digits, is fine).
    #[test]
    fn reasons_never_echo_the_value() {
        let invalid = [
            "3204053104900001",
            "3299993202900000",
            "3204052902990001",
            "9999999999999999",
            "0000000000000000",
            "320405570190000",
            "32040557019000021",
            "3204 0557 0190 0002",
            "198502302010121001",
            "185001012201123000",
            "013121665091000",
            "0013121665091000",
            "3204053104900002",
            "123456789012",
            "12345678901234",
            "7654321098765",
            "04000",
            "3204052999",
            "9999999999",
            "910201",
            "٣٢٠٤٠٥٥٧٠١٩٠٠٠٠٢",
            "abc3204055701900002",
        ];
        let mut checked = 0;
        for f in Format::ALL {
            for v in invalid {
                let Err(reasons) = f.check(v) else { continue };
                assert!(!reasons.is_empty());
                for r in &reasons {
                    assert!(!r.contains(v), "{}: {r:?} echoes {v:?}", f.name());
                    let chars: Vec<char> = v.chars().collect();
                    for w in chars
                        .windows(6)
                        .filter(|w| w.iter().all(char::is_ascii_digit))
                    {
                        let w: String = w.iter().collect();
                        assert!(!r.contains(&w), "{}: {r:?} has {w} of {v:?}", f.name());
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "only {checked} reasons checked");
    }

    #[test]
    fn masking() {
        assert_eq!(mask_id("3204055701900002"), "3204********0002");
        assert_eq!(
            mask_digit_runs("duplicate NIK 3204055701900002 for NIP 199009132025242014"),
            "duplicate NIK 3204********0002 for NIP 1990**********2014"
        );
    }

    #[test]
    fn region_api() {
        assert!(region_exists("3204052001"));
        assert!(district_prefix_known("910201"));
        assert!(!region_exists("910201"));
        assert!(!district_prefix_known("9102"));
        assert!(!district_prefix_known("3204052001"));
        let c = region_counts();
        assert_eq!(
            (c.provinces, c.regencies, c.districts, c.villages),
            (38, 514, 7285, 83762)
        );
    }
}
