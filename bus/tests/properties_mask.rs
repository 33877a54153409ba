//! Property: masking never lets a run of 12 or more ASCII digits through (personal IDs in
//! logs and error answers).

use bus::formats::mask_digit_runs;
use proptest::prelude::*;
use proptest::sample::select;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// The longest run of consecutive ASCII digits in `s`.
fn longest_ascii_digit_run(s: &str) -> usize {
    let (mut best, mut cur) = (0, 0);
    for b in s.bytes() {
        if b.is_ascii_digit() {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

/// Pieces that sit between and around digit runs: punctuation people type into IDs, spaces of
/// every kind, digits of other scripts (which are not ASCII digits and must not split or join
/// a run wrongly), invisible characters from spreadsheet exports, and multi-byte letters.
const SEPARATORS: &[&str] = &[
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\u{a0}",
    "\u{3000}",
    ".",
    "-",
    "/",
    ":",
    "+",
    ",",
    "*",
    "#",
    "\u{200b}",
    "\u{feff}",
    "\u{0663}",
    "\u{0660}\u{0669}",
    "\u{ff13}\u{ff12}",
    "\u{0967}",
    "\u{1d7ce}",
    "\u{00b2}",
    "\u{2460}",
    "é",
    "e\u{301}",
    "ü",
    "日本",
    "🙂",
    "NIK ",
    "x",
    "",
];

/// Text made of digit runs (0 to 40 long, so many cross 12) glued by [`SEPARATORS`].
fn digit_heavy_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        ("[0-9]{0,40}", select(SEPARATORS)).prop_map(|(d, s)| format!("{d}{s}")),
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

fn mask_input() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        digit_heavy_text(),
        "[0-9\\-. /:\u{0660}-\u{0669}\u{ff10}-\u{ff19}\\s\u{200b}a-zé]{0,80}",
        "[0-9]{10,40}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn masking_lets_no_run_of_12_ascii_digits_through(s in mask_input()) {
        let masked = mask_digit_runs(&s);
        prop_assert!(
            longest_ascii_digit_run(&masked) < 12,
            "{s:?} masked to {masked:?}"
        );
        // Masking only ever turns ASCII digits into '*': length and everything else stay.
        let (a, b): (Vec<char>, Vec<char>) = (s.chars().collect(), masked.chars().collect());
        prop_assert_eq!(a.len(), b.len(), "{:?} -> {:?}", s, masked);
        for (x, y) in a.iter().zip(&b) {
            prop_assert!(x == y || (x.is_ascii_digit() && *y == '*'), "{s:?} -> {masked:?}");
        }
        // Short runs (dates, counts, region codes) survive untouched.
        if longest_ascii_digit_run(&s) < 12 {
            prop_assert_eq!(&masked, &s);
        }
    }
}
