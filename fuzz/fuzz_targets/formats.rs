//! Arbitrary text through every custom format and the log masking. None may panic, whatever
//! the length, script or byte boundaries of the value: the formats slice strings by byte
//! offset once they believe the value is ASCII.

#![no_main]

use bus::formats::{Format, mask_digit_runs, mask_id, nik_facts, nip_kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    for f in Format::ALL {
        let verdict = f.check(&s);
        assert_eq!(verdict.is_ok(), f.is_valid(&s));
        if let Err(reasons) = verdict {
            assert!(!reasons.is_empty(), "{} refused with no reason", f.name());
        }
    }
    let _ = nik_facts(&s);
    let _ = nip_kind(&s);
    let _ = mask_id(&s);
    let masked = mask_digit_runs(&s);
    let mut run = 0;
    for b in masked.bytes() {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        assert!(run < 12, "a run of 12 ASCII digits survived masking");
    }
});
