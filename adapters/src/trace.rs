//! A readable trace of who sent what to whom: the demo prints it, tests read it back.
//!
//! Details pass through [`bus::formats::mask_digit_runs`] before they are kept or printed, so a
//! NIK, No. KK or NIP that slips into a detail never reaches the screen in clear.

use std::sync::{Arc, Mutex};

use bus::formats::mask_digit_runs;

#[derive(Debug, Clone, Default)]
pub struct Trace {
    lines: Arc<Mutex<Vec<String>>>,
    echo: bool,
}

impl Trace {
    /// A trace that also prints each line to stdout as it happens.
    pub fn printing() -> Trace {
        Trace {
            lines: Arc::default(),
            echo: true,
        }
    }

    /// A trace that only keeps its lines (tests).
    pub fn quiet() -> Trace {
        Trace::default()
    }

    /// `from → to  type  result`. Member IDs are shown as they are (a business's NIB is not a
    /// personal ID); the result is masked.
    pub fn hop(&self, from: &str, to: &str, type_: &str, result: &str) {
        let result = mask_digit_runs(result);
        self.line(format!("{from:<20} → {to:<20} {type_:<28} {result}"));
    }

    /// A free-form note (a flow heading, a native-system action), masked.
    pub fn note(&self, text: &str) {
        self.line(mask_digit_runs(text));
    }

    fn line(&self, text: String) {
        if self.echo {
            println!("{text}");
        }
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(text);
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
