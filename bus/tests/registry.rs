//! What the registry derives from its rules.

use std::path::Path;

use bus::registry::Registry;

/// An event's subscribers are every member its consumers' ACL admits (by class or by name),
/// sorted and each once; an event without inbox copies has none.
#[test]
fn an_events_subscribers_are_the_members_its_consumers_admit() {
    let text = r#"
instance = "simpul.test"
schemas_dir = "schemas"

[[member]]
id = "GOV/b"
name = "b"
[[member]]
id = "COM/9120000000002"
name = "z"
[[member]]
id = "GOV/a"
name = "a"
[[member]]
id = "COM/8120000000001"
name = "y"
[[member]]
id = "ORG/x"
name = "x"

[[type]]
name = "one"
kind = "event"
schema = "eabsen.kehadiran.tercatat.v1"
producers = ["GOV/a"]
consumers = ["COM/*", "GOV/b", "COM/8120000000001"]

[[type]]
name = "two"
kind = "event"
schema = "eabsen.kehadiran.tercatat.v1"
producers = ["GOV/a"]
consumers = ["GOV/*", "ORG/*"]

[[type]]
name = "three"
kind = "event"
schema = "eabsen.kehadiran.tercatat.v1"
producers = ["GOV/a"]
consumers = ["COM/*"]
inbox = false
"#;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let reg = Registry::parse(text, &root).unwrap();
    let subscribers = |t: &str| -> Vec<String> {
        let def = reg.type_def(t).unwrap();
        def.subscribers.iter().map(|m| m.to_string()).collect()
    };
    assert_eq!(
        subscribers("one"),
        ["COM/8120000000001", "COM/9120000000002", "GOV/b"]
    );
    assert_eq!(subscribers("two"), ["GOV/a", "GOV/b", "ORG/x"]);
    assert!(subscribers("three").is_empty());
}
