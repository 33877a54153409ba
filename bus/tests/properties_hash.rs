//! Properties of the canonical content hash: it ignores key order, whitespace, string
//! escapes, the spelling of a non-integer number and the attributes the bus fills in, but sees
//! every change to `data`.

use std::fmt::Write as _;

use bus::envelope::content_hash;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Number, Value};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

fn json_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        // Integral floats: `1.0` is a float to serde_json, `1` an integer.
        (-1_000_000i64..1_000_000).prop_map(|n| Value::from(n as f64)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        (-1.0e6f64..1.0e6).prop_map(Value::from),
    ]
}

fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z_]{0,8}",
        // Characters JSON must or may escape, and ones JCS orders by UTF-16 code unit.
        "[\"\\\\/\u{0}-\u{1f}\u{7f}\u{e9}\u{2028}\u{ffff}\u{10000}\u{1f642}a]{0,6}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            json_object(inner),
        ]
    })
}

fn json_object(inner: impl Strategy<Value = Value> + Clone) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(json_string(), inner, 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// An event-shaped object: `data` is an object, with a few other attributes around it.
fn event_attrs() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::collection::btree_map(json_string(), json_value(), 0..6),
        prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..5),
    )
        .prop_map(|(data, attrs)| {
            let mut m: Map<String, Value> = attrs
                .into_iter()
                .filter(|(k, _)| k != "source" && k != "time")
                .collect();
            m.insert("specversion".into(), "1.0".into());
            m.insert("id".into(), "0190c1de-0000-7000-8000-00000000000a".into());
            m.insert("type".into(), "t.x".into());
            m.insert("data".into(), Value::Object(data.into_iter().collect()));
            m
        })
}

/// A small deterministic generator (SplitMix64) so one proptest seed picks every spelling
/// choice of the writer below, and a failing case replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Writes JSON the way a careless or exotic client might: keys in random order, random
/// whitespace (the four JSON allows) between tokens, random `\u` escapes, and non-integers
/// spelled in random equivalent ways (`1.0`, `1e0`, `1.0000000000000000e0`, `1E0`).
///
/// Integers are written as they are: the bus's canonical form is serde_json's compact JSON,
/// not full RFC 8785, so `1` and `1.0` are different content by design (`envelope.rs`,
/// `content_hash`: a client's retry repeats its own spelling).
struct Writer {
    rng: Rng,
    out: String,
}

impl Writer {
    fn ws(&mut self) {
        for _ in 0..self.rng.below(4) {
            if self.rng.chance(2) {
                continue;
            }
            self.out.push([' ', '\t', '\n', '\r'][self.rng.below(4)]);
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            let must = c == '"' || c == '\\' || (c as u32) < 0x20;
            if must || self.rng.chance(5) {
                let short = match c {
                    '"' => Some("\\\""),
                    '\\' => Some("\\\\"),
                    '\n' => Some("\\n"),
                    '\t' => Some("\\t"),
                    '\r' => Some("\\r"),
                    '\u{8}' => Some("\\b"),
                    '\u{c}' => Some("\\f"),
                    '/' => Some("\\/"),
                    _ => None,
                };
                match short {
                    Some(e) if self.rng.chance(2) || !must => self.out.push_str(e),
                    _ => {
                        let mut units = [0u16; 2];
                        for u in c.encode_utf16(&mut units) {
                            if self.rng.chance(2) {
                                write!(self.out, "\\u{:04x}", u).unwrap();
                            } else {
                                write!(self.out, "\\u{:04X}", u).unwrap();
                            }
                        }
                    }
                }
            } else {
                self.out.push(c);
            }
        }
        self.out.push('"');
    }

    fn number(&mut self, n: &Number) {
        if n.is_f64() {
            let f = n.as_f64().expect("finite");
            // Shortest round-trip forms, the 17 significant digits of C's `%.17g` (what many
            // JSON writers emit) and 31 digits (more than a u64 mantissa holds, so the parser's
            // slow path): all read back as `f` with a correctly rounding parser. Each has a
            // `.` or an exponent, so it reads back as a float, not an integer.
            let spelled = match self.rng.below(5) {
                0 => format!("{f:e}"),
                1 => format!("{f:E}"),
                2 => format!("{f:.16e}"),
                3 => format!("{f:.30e}"),
                _ => format!("{f:?}"),
            };
            self.out.push_str(&spelled);
        } else {
            self.out.push_str(&n.to_string());
        }
    }

    fn value(&mut self, v: &Value) {
        self.ws();
        match v {
            Value::Null => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => self.number(n),
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.ws();
                        self.out.push(',');
                    }
                    self.value(item);
                }
                self.ws();
                self.out.push(']');
            }
            Value::Object(m) => self.object(m),
        }
        self.ws();
    }

    fn object(&mut self, m: &Map<String, Value>) {
        let mut entries: Vec<(&String, &Value)> = m.iter().collect();
        // Fisher-Yates with our generator.
        for i in (1..entries.len()).rev() {
            let j = self.rng.below(i + 1);
            entries.swap(i, j);
        }
        self.out.push('{');
        for (i, (k, v)) in entries.into_iter().enumerate() {
            if i > 0 {
                self.ws();
                self.out.push(',');
            }
            self.ws();
            self.string(k);
            self.ws();
            self.out.push(':');
            self.value(v);
        }
        self.ws();
        self.out.push('}');
    }
}

fn scrambled(m: &Map<String, Value>, seed: u64) -> String {
    let mut w = Writer {
        rng: Rng(seed),
        out: String::new(),
    };
    w.ws();
    w.object(m);
    w.ws();
    w.out
}

fn reparse(text: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => m,
        other => panic!("the test's writer produced {other:?} from {text:?}"),
    }
}

/// Paths (`Vec` of object key / array index steps) to every scalar in `v`.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    At(usize),
}

fn leaves(v: &Value, path: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                path.push(Step::Key(k.clone()));
                leaves(x, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(Step::At(i));
                leaves(x, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn at_mut<'a>(mut v: &'a mut Value, path: &[Step]) -> &'a mut Value {
    for s in path {
        v = match s {
            Step::Key(k) => &mut v[k.as_str()],
            Step::At(i) => &mut v[*i],
        };
    }
    v
}

/// A value that is a different JSON value from `v`.
fn changed(v: &Value, pick: u64) -> Value {
    match v {
        Value::Null => Value::from(pick % 3),
        Value::Bool(b) => Value::Bool(!b),
        Value::String(s) if pick.is_multiple_of(2) => Value::String(format!("{s}x")),
        Value::String(s) => Value::String(format!("\u{e9}{s}")),
        Value::Number(n) if n.is_i64() => {
            let i = n.as_i64().expect("i64");
            Value::from(i.checked_add(1).unwrap_or(i - 1))
        }
        Value::Number(n) if n.is_u64() => {
            let u = n.as_u64().expect("u64");
            Value::from(u.checked_add(1).unwrap_or(u - 1))
        }
        Value::Number(n) => {
            let f = n.as_f64().expect("finite");
            if f == 0.0 {
                Value::from(1.5)
            } else if pick.is_multiple_of(2) {
                Value::from(-f)
            } else {
                // The next double towards zero: always finite, always different.
                Value::from(f64::from_bits(f.to_bits() - 1))
            }
        }
        Value::Array(_) | Value::Object(_) => Value::Null,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn content_hash_ignores_key_order_whitespace_and_spelling(
        attrs in event_attrs(),
        seeds in (any::<u64>(), any::<u64>()),
    ) {
        let want = content_hash(&attrs);
        for seed in [seeds.0, seeds.1] {
            let text = scrambled(&attrs, seed);
            let back = reparse(&text);
            prop_assert_eq!(content_hash(&back), want, "written as {}", text);
        }
    }

    #[test]
    fn content_hash_ignores_source_time_and_null_attributes(
        attrs in event_attrs(),
        source in json_string(),
        time in json_string(),
        null_name in "[a-z]{1,8}",
    ) {
        let want = content_hash(&attrs);
        let mut filled = attrs.clone();
        filled.insert("source".into(), Value::String(source));
        filled.insert("time".into(), Value::String(time));
        prop_assert_eq!(content_hash(&filled), want);
        if !attrs.contains_key(&null_name) {
            filled.insert(null_name, Value::Null);
            prop_assert_eq!(content_hash(&filled), want);
        }
    }

    #[test]
    fn content_hash_sees_every_change_to_data(
        attrs in event_attrs(),
        which in any::<Index>(),
        pick in any::<u64>(),
        key in json_string(),
    ) {
        let before = content_hash(&attrs);
        let mut paths = Vec::new();
        leaves(&attrs["data"], &mut Vec::new(), &mut paths);
        let mut after = attrs.clone();
        let data = after.get_mut("data").expect("data");
        if paths.is_empty() {
            // No scalar to change: adding a member is a change too.
            data.as_object_mut().expect("object").insert(key, Value::from(pick % 7));
        } else {
            let path = which.get(&paths);
            let leaf = at_mut(data, path);
            *leaf = changed(leaf, pick);
        }
        prop_assert_ne!(content_hash(&after), before, "data {} -> {}", attrs["data"], after["data"]);
    }
}

/// Integers beyond 2^53 are distinct content. Under full RFC 8785 (serde_jcs, the bus's hash
/// until the switch to serde_json's compact form) numbers compare as IEEE doubles, so a retry
/// of an id with `"status_kode": 9007199254740993` instead of `9007199254740992` (an unbounded
/// `integer` in `eabsen.kehadiran.tercatat.v1`) was answered as a duplicate instead of 409.
#[test]
fn content_hash_distinguishes_integers_beyond_2_pow_53() {
    let a: Map<String, Value> =
        serde_json::from_str(r#"{"data":{"status_kode":9007199254740992}}"#).unwrap();
    let b: Map<String, Value> =
        serde_json::from_str(r#"{"data":{"status_kode":9007199254740993}}"#).unwrap();
    assert_ne!(content_hash(&a), content_hash(&b));
}

#[test]
fn float_spellings_are_one_content() {
    // Spellings of one non-integer number, pinned by name so a change in serde_json's number
    // parsing or printing shows up here rather than as a shrunk proptest case. (`1`, an
    // integer, is other content by design: see `content_hash`.)
    let spellings = [
        "1.0",
        "1e0",
        "10E-1",
        "1.000e+0",
        "0.1e1",
        "1.0000000000000000e0",
    ];
    let hashes: Vec<[u8; 32]> = spellings
        .iter()
        .map(|n| content_hash(&reparse(&format!(r#"{{"data":{{"n":{n}}}}}"#))))
        .collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{spellings:?}");
    let tenth = [
        "0.1",
        "1e-1",
        "0.10000000000000001",
        "1.0000000000000000555e-1",
    ];
    let hashes: Vec<[u8; 32]> = tenth
        .iter()
        .map(|n| content_hash(&reparse(&format!(r#"{{"data":{{"n":{n}}}}}"#))))
        .collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{tenth:?}");
}
