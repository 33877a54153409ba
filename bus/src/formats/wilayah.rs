//! The Kemendagri region table (kode wilayah), embedded in the binary.
//!
//! The bus must answer "does this region exist?" for every NIK, No. KK and `kode-wilayah` on the
//! hot path, without a database or a network. The table is a compact text derived from
//! idn-area-data (ODbL; see `data/wilayah/NOTICE.md`) by `scripts/gen-wilayah.py`. It is parsed
//! once, on first use, into sorted vectors: lookups are binary searches and nothing allocates
//! after that.
//!
//! Historical district codes (`data/wilayah/historical.txt`) are kept apart because they are
//! valid only as NIK / No. KK prefixes: a NIK keeps its first region for life, but nobody may
//! file a new record against a district that no longer exists.

use std::sync::LazyLock;

const TABLE: &str = include_str!("../../data/wilayah/wilayah.txt");
const HISTORICAL: &str = include_str!("../../data/wilayah/historical.txt");

/// How many codes the current table has at each level, for tests and for operators who want to
/// see which Kepmendagri edition a build carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionCounts {
    pub provinces: usize,
    pub regencies: usize,
    pub districts: usize,
    pub villages: usize,
}

/// Villages `district * 10_000 + first ..= district * 10_000 + last`: most districts number their
/// villages in a few unbroken runs: 13,233 runs stand for 83,762 villages.
#[derive(Debug, Clone, Copy)]
struct VillageRun {
    first: u64,
    last: u64,
}

#[derive(Debug)]
struct Table {
    provinces: Vec<u32>,
    regencies: Vec<u32>,
    districts: Vec<u32>,
    villages: Vec<VillageRun>,
    historical: Vec<u32>,
}

static REGIONS: LazyLock<Table> = LazyLock::new(|| Table::parse(TABLE, HISTORICAL));

/// The code as a number if it is all ASCII digits (and short enough to be a region code).
fn code_num(code: &str) -> Option<u64> {
    if code.is_empty() || code.len() > 10 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(code.bytes().fold(0, |n, b| n * 10 + u64::from(b - b'0')))
}

impl Table {
    /// Panics on a malformed table: it is embedded at build time and covered by tests, so a
    /// failure here is a broken build, not bad input.
    fn parse(table: &str, historical: &str) -> Table {
        let mut t = Table {
            provinces: Vec::with_capacity(64),
            regencies: Vec::with_capacity(1024),
            districts: Vec::with_capacity(8192),
            villages: Vec::with_capacity(16384),
            historical: Vec::new(),
        };
        for line in table
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let mut tokens = line.split(' ');
            let head = tokens.next().unwrap_or_default();
            let code = code_num(head).unwrap_or_else(|| panic!("wilayah.txt: bad line {line:?}"));
            let code32 = u32::try_from(code).expect("codes of 6 digits or fewer fit in u32");
            match head.len() {
                2 => t.provinces.push(code32),
                4 => t.regencies.push(code32),
                6 => t.districts.push(code32),
                _ => panic!("wilayah.txt: bad code length in {line:?}"),
            }
            for run in tokens {
                let (a, b) = run.split_once('-').unwrap_or((run, run));
                let (Some(a), Some(b)) = (code_num(a), code_num(b)) else {
                    panic!("wilayah.txt: bad village run {run:?}");
                };
                assert!(
                    head.len() == 6 && a <= b && b <= 9999,
                    "wilayah.txt: bad run {run:?}"
                );
                t.villages.push(VillageRun {
                    first: code * 10_000 + a,
                    last: code * 10_000 + b,
                });
            }
        }
        for line in historical
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let head = line.split(' ').next().unwrap_or_default();
            match code_num(head) {
                Some(code) if head.len() == 6 => t.historical.push(code as u32),
                _ => panic!("historical.txt: bad line {line:?}"),
            }
        }
        // The generator writes sorted codes; sorting again costs microseconds and makes the binary
        // searches below correct even if someone edits a file by hand.
        t.provinces.sort_unstable();
        t.regencies.sort_unstable();
        t.districts.sort_unstable();
        t.villages.sort_unstable_by_key(|r| r.first);
        t.historical.sort_unstable();
        t
    }

    fn has_village(&self, code: u64) -> bool {
        let i = self.villages.partition_point(|r| r.last < code);
        self.villages.get(i).is_some_and(|r| r.first <= code)
    }

    fn contains(&self, code: &str) -> bool {
        let Some(n) = code_num(code) else {
            return false;
        };
        match code.len() {
            2 => self.provinces.binary_search(&(n as u32)).is_ok(),
            4 => self.regencies.binary_search(&(n as u32)).is_ok(),
            6 => self.districts.binary_search(&(n as u32)).is_ok(),
            10 => self.has_village(n),
            _ => false,
        }
    }
}

/// Current Kemendagri table membership (province/regency/district/village by length 2/4/6/10).
pub fn region_exists(code: &str) -> bool {
    REGIONS.contains(code)
}

/// A district code that is no longer current but that NIKs issued before a split still carry.
pub fn historical_district(code6: &str) -> bool {
    code6.len() == 6
        && code_num(code6).is_some_and(|n| REGIONS.historical.binary_search(&(n as u32)).is_ok())
}

/// District prefix for NIK/KK: current 6-digit district or a historical one.
pub fn district_prefix_known(code6: &str) -> bool {
    code6.len() == 6 && (region_exists(code6) || historical_district(code6))
}

/// Sizes of the embedded current table.
pub fn region_counts() -> RegionCounts {
    let t = &*REGIONS;
    RegionCounts {
        provinces: t.provinces.len(),
        regencies: t.regencies.len(),
        districts: t.districts.len(),
        villages: t
            .villages
            .iter()
            .map(|r| (r.last - r.first + 1) as usize)
            .sum(),
    }
}

/// Reasons a well-shaped `kode-wilayah` is not in the current table, naming the first level that
/// is missing so the sender knows whether the province, regency, district or village is wrong.
pub(super) fn missing_reasons(code: &str) -> Vec<String> {
    let levels = [
        (2, "province", "first 2"),
        (4, "regency", "first 4"),
        (6, "district", "first 6"),
    ];
    let mut reason = levels
        .into_iter()
        .find(|&(len, _, _)| code.len() >= len && !region_exists(&code[..len]))
        .map(|(_, level, part)| {
            format!("{level} code ({part} digits) is not in the current Kemendagri table")
        });
    if reason.is_none() && code.len() == 10 && !region_exists(code) {
        reason = Some("village number (last 4 digits) is not in that district in the current Kemendagri table".into());
    }
    if let Some(r) = reason
        .as_mut()
        .filter(|_| code.len() >= 6 && historical_district(&code[..6]))
    {
        r.push_str("; the first 6 digits are a historical district code, valid only inside a NIK or No. KK");
    }
    reason.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The numbers idn-area-data 4.0.1 (Kepmendagri 2025) really has; a regenerated table that
    /// changes them must change this test on purpose.
    #[test]
    fn counts_match_kepmendagri_2025() {
        let c = region_counts();
        assert_eq!(
            c,
            RegionCounts {
                provinces: 38,
                regencies: 514,
                districts: 7285,
                villages: 83762
            }
        );
        let header = TABLE
            .lines()
            .find(|l| l.starts_with("# counts:"))
            .expect("counts header");
        assert_eq!(
            header,
            format!(
                "# counts: provinces={} regencies={} districts={} villages={}",
                c.provinces, c.regencies, c.districts, c.villages
            )
        );
    }

    #[test]
    fn lookups_at_every_level() {
        for code in [
            "32",
            "3204",
            "320405",
            "3204052001",
            "93",
            "9301",
            "930101",
            "96",
            "9671",
        ] {
            assert!(region_exists(code), "{code}");
        }
        for code in [
            "00",
            "39",
            "3299",
            "320400",
            "3204052999",
            "",
            "3",
            "32040",
            "32.04",
            "３２",
        ] {
            assert!(!region_exists(code), "{code}");
        }
    }

    #[test]
    fn historical_codes_are_consistent() {
        let mut n = 0;
        for line in HISTORICAL
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let mut t = line.split(' ');
            let (old, new) = (t.next().unwrap(), t.next().unwrap());
            assert!(!region_exists(old), "{old} is historical but current");
            assert!(region_exists(new), "{old}'s successor {new} is not current");
            assert!(district_prefix_known(old) && historical_district(old));
            n += 1;
        }
        assert_eq!(n, REGIONS.historical.len());
        // Every district now under Papua Selatan, Tengah and Pegunungan had a 91 code before 2022
        // unless it was created after 2021; every district now under Papua Barat Daya had a 92 code.
        let successors: Vec<&str> = HISTORICAL
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split(' ').nth(1))
            .collect();
        for d in &REGIONS.districts {
            let code = d.to_string();
            let created_after_2021 = ["930424", "930425", "940324"];
            if code.starts_with("93") || code.starts_with("94") || code.starts_with("95") {
                assert!(
                    successors.contains(&code.as_str())
                        || created_after_2021.contains(&code.as_str()),
                    "{code} has no pre-2022 91 code"
                );
            }
            if code.starts_with("96") {
                assert!(
                    successors.contains(&code.as_str()),
                    "{code} has no pre-2022 92 code"
                );
            }
        }
    }

    #[test]
    fn parse_is_fast() {
        let start = Instant::now();
        let t = Table::parse(TABLE, HISTORICAL);
        let took = start.elapsed();
        assert_eq!(t.districts.len(), 7285);
        // A few milliseconds in release builds; debug builds are several times slower.
        assert!(took.as_millis() < 200, "parse took {took:?}");
    }

    #[test]
    fn missing_level_is_named() {
        assert!(missing_reasons("3204052001").is_empty());
        assert!(missing_reasons("99")[0].starts_with("province"));
        assert!(missing_reasons("3299")[0].starts_with("regency"));
        assert!(missing_reasons("910201")[0].contains("historical"));
        assert!(missing_reasons("3204052999")[0].starts_with("village"));
    }
}
