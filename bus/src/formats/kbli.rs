//! KBLI (business classification) codes.
//!
//! A KBLI code is 5 digits; which edition it belongs to is tagged in the schema, not the value.
//! The first two digits are the division (golongan pokok). KBLI 2020 (Peraturan BPS 2/2020)
//! follows ISIC Rev. 4 at that level: 88 divisions, with the same gaps ISIC has (no 04, 34, 40,
//! 44, 48, 54, 57, 67, 76, 83, 89). Rejecting those catches transposed or truncated codes, the
//! commonest KBLI mistake in permit applications. KBLI 2025 must be checked against this list
//! when it is adopted, since it follows ISIC Rev. 5, whose divisions differ.

use super::digits::{self, num};

/// KBLI 2020 divisions (golongan pokok), as a bit set over 0–99.
const DIVISIONS: u128 = {
    let ranges: [(u32, u32); 21] = [
        (1, 3),   // A agriculture, forestry, fishing
        (5, 9),   // B mining
        (10, 33), // C manufacturing
        (35, 35), // D electricity, gas
        (36, 39), // E water, waste
        (41, 43), // F construction
        (45, 47), // G trade
        (49, 53), // H transport, storage
        (55, 56), // I accommodation, food
        (58, 63), // J information, communication
        (64, 66), // K finance, insurance
        (68, 68), // L real estate
        (69, 75), // M professional, scientific, technical
        (77, 82), // N administrative, support
        (84, 84), // O public administration
        (85, 85), // P education
        (86, 88), // Q health, social work
        (90, 93), // R arts, recreation
        (94, 96), // S other services
        (97, 98), // T households
        (99, 99), // U extraterritorial bodies
    ];
    let mut set = 0u128;
    let mut i = 0;
    while i < ranges.len() {
        let mut d = ranges[i].0;
        while d <= ranges[i].1 {
            set |= 1 << d;
            d += 1;
        }
        i += 1;
    }
    set
};

pub(super) fn check(value: &str) -> Result<(), Vec<String>> {
    digits::exact(value, 5)?;
    let division = num(&value[..2]);
    if DIVISIONS & (1 << division) != 0 {
        Ok(())
    } else {
        Err(vec![format!(
            "first two digits {division:02} are not a KBLI 2020 division (golongan pokok)"
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divisions() {
        assert_eq!(DIVISIONS.count_ones(), 88);
        for ok in ["01111", "47111", "62019", "99000", "10110"] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "00000", "04000", "34000", "76000", "89000", "4711", "471111", "4711a",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
