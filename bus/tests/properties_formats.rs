//! Property: every custom format accepts every value built from valid parts (a real district,
//! a real date, a serial in range, the Luhn digit, a listed KBLI code, ...).

use std::sync::LazyLock;

use bus::formats::{Format, KbliEdition, NipKind, nik_facts, nip_kind};
use proptest::prelude::*;
use proptest::sample::Index;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// The shipped region table (`bus/data/wilayah/`), read independently of the bus's parser.
struct Regions {
    provinces: Vec<String>,
    regencies: Vec<String>,
    districts: Vec<String>,
    /// (district, first, last) village number runs.
    village_runs: Vec<(String, u32, u32)>,
    historical: Vec<String>,
}

static REGIONS: LazyLock<Regions> = LazyLock::new(|| {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/wilayah");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect(f);
    let mut r = Regions {
        provinces: Vec::new(),
        regencies: Vec::new(),
        districts: Vec::new(),
        village_runs: Vec::new(),
        historical: Vec::new(),
    };
    for line in read("wilayah.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut t = line.split(' ');
        let code = t.next().unwrap().to_owned();
        match code.len() {
            2 => r.provinces.push(code),
            4 => r.regencies.push(code),
            6 => {
                for run in t {
                    let (a, b) = run.split_once('-').unwrap_or((run, run));
                    r.village_runs
                        .push((code.clone(), a.parse().unwrap(), b.parse().unwrap()));
                }
                r.districts.push(code);
            }
            _ => panic!("wilayah.txt: {line:?}"),
        }
    }
    for line in read("historical.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        r.historical
            .push(line.split(' ').next().unwrap().to_owned());
    }
    assert_eq!(
        (r.provinces.len(), r.regencies.len(), r.districts.len()),
        (38, 514, 7285)
    );
    assert!(!r.historical.is_empty());
    r
});

fn pick<'a>(list: &'a [String]) -> impl Strategy<Value = String> + use<'a> {
    any::<Index>().prop_map(move |i| i.get(list).clone())
}

/// A district a NIK or No. KK may start with: current, or historical (a NIK keeps its first
/// region for life).
fn nik_district() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => pick(&REGIONS.districts),
        1 => pick(&REGIONS.historical),
    ]
}

fn leap_gregorian(y: u32) -> bool {
    y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400))
}

fn days_in(month: u32, leap: bool) -> u32 {
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (day, month) that exist in a year with the given leap-ness.
fn day_month(leap: bool) -> impl Strategy<Value = (u32, u32)> {
    (1u32..=12).prop_flat_map(move |m| (1..=days_in(m, leap), Just(m)))
}

#[derive(Debug, Clone)]
struct NikParts {
    district: String,
    day: u32,
    month: u32,
    yy: u32,
    female: bool,
    serial: u32,
}

impl NikParts {
    fn render(&self) -> String {
        let dd = self.day + if self.female { 40 } else { 0 };
        format!(
            "{}{dd:02}{:02}{:02}{:04}",
            self.district, self.month, self.yy, self.serial
        )
    }
}

fn nik_parts() -> impl Strategy<Value = NikParts> {
    (nik_district(), 0u32..100, any::<bool>(), 1u32..=9999).prop_flat_map(
        |(district, yy, female, serial)| {
            // The century is unknown, so 29 February needs only YY divisible by 4.
            day_month(yy % 4 == 0).prop_map(move |(day, month)| NikParts {
                district: district.clone(),
                day,
                month,
                yy,
                female,
                serial,
            })
        },
    )
}

fn nik() -> impl Strategy<Value = String> {
    nik_parts().prop_map(|p| p.render())
}

/// A NIP: birth date, then the appointment year, then a month (PNS) or a contract field that
/// is not a month (PPPK), gender 1 or 2, serial 001-999.
fn nip(pppk: bool) -> impl Strategy<Value = String> {
    (1900u32..=2100)
        .prop_flat_map(move |birth| {
            (
                Just(birth),
                day_month(leap_gregorian(birth)),
                birth..=2100,
                if pppk {
                    prop_oneof![Just(0u32), 13u32..=99].boxed()
                } else {
                    (1u32..=12).boxed()
                },
                1u32..=2,
                1u32..=999,
            )
        })
        .prop_map(|(birth, (day, month), appointed, field, gender, serial)| {
            format!("{birth:04}{month:02}{day:02}{appointed:04}{field:02}{gender}{serial:03}")
        })
}

fn digits(n: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[0-9]{{{n}}}")).expect("regex")
}

/// The Luhn check digit of `payload` (written independently of the bus's).
fn luhn(payload: &str) -> u32 {
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let d = d * 2;
                d / 10 + d % 10
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

fn npwp15() -> impl Strategy<Value = String> {
    (digits(8), digits(6)).prop_map(|(head, tail)| format!("{head}{}{tail}", luhn(&head)))
}

fn kbli2020() -> impl Strategy<Value = String> {
    let codes = KbliEdition::Kbli2020.codes();
    any::<Index>().prop_map(move |i| format!("{:05}", i.get(codes)))
}

fn kode_wilayah() -> impl Strategy<Value = String> {
    let r = &*REGIONS;
    prop_oneof![
        pick(&r.provinces),
        pick(&r.regencies),
        pick(&r.districts),
        (any::<Index>(), any::<Index>()).prop_map(|(run, n)| {
            let (d, first, last) = run.get(&REGIONS.village_runs);
            let span = (last - first + 1) as usize;
            format!("{d}{:04}", first + n.index(span) as u32)
        }),
    ]
}

fn accepts(f: Format, v: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(f.check(v), Ok(()), "{} refused {:?}", f.name(), v);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn nik_accepts_what_it_renders(p in nik_parts()) {
        let v = p.render();
        accepts(Format::Nik, &v)?;
        // The facts read back are the ones written.
        let f = nik_facts(&v).expect("valid NIK has facts");
        prop_assert_eq!(
            (u32::from(f.day), u32::from(f.month), u32::from(f.yy), f.female),
            (p.day, p.month, p.yy, p.female),
            "{}", v
        );
        // A resident's NPWP is their NIK, and a NIK's district is a No. KK's too.
        accepts(Format::Npwp, &v)?;
        accepts(Format::NoKk, &v)?;
    }

    #[test]
    fn no_kk_accepts_what_it_renders(d in nik_district(), rest in digits(10)) {
        accepts(Format::NoKk, &format!("{d}{rest}"))?;
    }

    #[test]
    fn nip_pns_accepts_what_it_renders(v in nip(false)) {
        accepts(Format::Nip, &v)?;
        prop_assert_eq!(nip_kind(&v), Some(NipKind::Pns), "{}", v);
    }

    #[test]
    fn nip_pppk_accepts_what_it_renders(v in nip(true)) {
        accepts(Format::Nip, &v)?;
        prop_assert_eq!(nip_kind(&v), Some(NipKind::Pppk), "{}", v);
    }

    #[test]
    fn nib_accepts_13_digits(v in digits(13)) {
        accepts(Format::Nib, &v)?;
    }

    #[test]
    fn npwp_15_accepts_what_it_renders(v in npwp15()) {
        accepts(Format::Npwp, &v)?;
        // ... and the 16-digit form of the same number.
        accepts(Format::Npwp, &format!("0{v}"))?;
    }

    #[test]
    fn npwp_16_as_nik_accepts_what_it_renders(v in nik()) {
        accepts(Format::Npwp, &v)?;
    }

    #[test]
    fn kbli_accepts_every_listed_code(v in kbli2020()) {
        accepts(Format::Kbli, &v)?;
        accepts(Format::Kbli2020, &v)?;
    }

    #[test]
    fn kode_wilayah_accepts_every_code_in_the_table(v in kode_wilayah()) {
        accepts(Format::KodeWilayah, &v)?;
    }
}

/// Not sampled but exhaustive where the list is small: every KBLI 2020 code, every province,
/// regency and district, and every historical prefix inside a NIK and a No. KK.
#[test]
fn every_listed_code_is_accepted() {
    for c in KbliEdition::Kbli2020.codes() {
        let v = format!("{c:05}");
        assert_eq!(Format::Kbli2020.check(&v), Ok(()), "{v}");
        assert_eq!(Format::Kbli.check(&v), Ok(()), "{v}");
    }
    let r = &*REGIONS;
    for code in r.provinces.iter().chain(&r.regencies).chain(&r.districts) {
        assert_eq!(Format::KodeWilayah.check(code), Ok(()), "{code}");
    }
    for d in r.districts.iter().chain(&r.historical) {
        let v = format!("{d}0101900001");
        assert_eq!(Format::Nik.check(&v), Ok(()), "{v}");
        assert_eq!(Format::NoKk.check(&v), Ok(()), "{v}");
    }
    let mut villages = 0;
    for (d, first, last) in &r.village_runs {
        for n in *first..=*last {
            let v = format!("{d}{n:04}");
            assert_eq!(Format::KodeWilayah.check(&v), Ok(()), "{v}");
            villages += 1;
        }
    }
    assert_eq!(villages, 83762);
}
