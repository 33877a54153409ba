//! The operator console in a real browser: Debian's Chromium, driven by Playwright
//! (`tests/browser/console.mjs`), authenticating with a PKCS#12 from `simpul certs export`.
//! An operator sees a dead letter this test made, redrives it through the confirmation, and
//! sees it delivered in the trace; a member who is not an operator is refused.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const OPERATOR: &str = "GOV/diskominfo";
const PASSWORD: &str = "konsol-uji";
const REASON: &str = "NIK tidak dikenal <b>di SIMPEG</b>";

/// `member`'s certificate and key as the browser gets them.
fn p12(bus: &Bus, member: &str, dir: &Path) -> std::path::PathBuf {
    let out = dir.join(format!("{}.p12", member.replace('/', "_")));
    let done = bus.export_p12(member, &out, PASSWORD);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    out
}

/// Runs one step of the browser script, failing the test with what the script said.
fn browser(bus: &Bus, step: &str, p12: &Path, vars: &[(&str, String)]) {
    let dir = repo().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists()
            && Path::new("/usr/bin/chromium").exists(),
        "the browser tests need Debian's chromium and tests/browser's playwright-core: scripts/test installs both"
    );
    let out = Command::new("node")
        .arg("console.mjs")
        .arg(step)
        .current_dir(&dir)
        .env("SIMPUL_URL", &bus.base)
        .env("P12", p12)
        .env("P12_PASSWORD", PASSWORD)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "browser step {step} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_redrives_a_dead_letter_in_the_browser() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (dukcapil, hr) = (bus.client(DUKCAPIL), bus.client(HR));

    // A dead letter: HR refuses a death notice.
    let ev = death(NIK);
    assert_status(&dukcapil.send(&ev).await.unwrap(), 202);
    let id = id_of(&ev);
    assert_eq!(leased_ids(&pull_now(&hr).await), [id]);
    assert_status(&hr.nack(id, REASON).await.unwrap(), 200);

    let operator = p12(&bus, OPERATOR, dir.path());
    let vars = [
        ("DEAD_ID", id.to_string()),
        ("RECIPIENT", HR.to_string()),
        ("REASON", REASON.to_string()),
    ];
    browser(&bus, "redrive", &operator, &vars);

    // HR has it again, as a first delivery, and takes it this time.
    let pulled = pull_now(&hr).await;
    assert_eq!(leased_ids(&pulled), [id]);
    assert_eq!(pulled.body["messages"][0]["attempt"], 1);
    assert_status(&hr.ack(id).await.unwrap(), 200);
    let screenshot = std::env::var("SIMPUL_CONSOLE_SCREENSHOT").unwrap_or_default();
    let mut vars = vars.to_vec();
    vars.push(("SCREENSHOT", screenshot));
    browser(&bus, "trace", &operator, &vars);

    // The redrive is the operator's, in the audit log.
    let trace = bus.client(OPERATOR).trace(id).await.unwrap();
    let redrive = trace.body["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "redrive")
        .cloned()
        .unwrap();
    assert_eq!(redrive["actor"], OPERATOR);

    browser(&bus, "refused", &p12(&bus, DUKCAPIL, dir.path()), &[]);
}

/// What the console draws from: every member with its queue, dead letters, certificate expiry
/// and last seen; every type with its producers, consumers and grants. Operators only.
#[tokio::test(flavor = "multi_thread")]
async fn the_overview_shows_members_queues_and_types_to_operators_only() {
    let bus = Bus::start(&[]);
    let (dukcapil, hr) = (bus.client(DUKCAPIL), bus.client(HR));
    for _ in 0..2 {
        assert_status(&dukcapil.send(&death(NIK)).await.unwrap(), 202);
    }
    let leased = leased_ids(&pull_now(&hr).await);
    assert_status(&hr.nack(leased[0], REASON).await.unwrap(), 200);

    let (status, text) = bus.get_text(OPERATOR, "/v1/admin/overview").await;
    assert_eq!(status, 200, "{text}");
    let o: serde_json::Value = serde_json::from_str(&text).unwrap();
    let member = |id: &str| {
        o["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} missing: {o}"))
    };
    let hr_now = member(HR);
    assert_eq!(hr_now["dead_letters"], 1);
    assert_eq!(hr_now["queue_depth"], 1, "the other death is leased");
    assert!(hr_now["last_seen"].is_string() && hr_now["oldest"].is_string());
    // The development PKI issues member certificates for a year.
    let expires = hr_now["certificate_expires"].as_str().unwrap();
    let next_year = (time::OffsetDateTime::now_utc().year() + 1).to_string();
    assert!(expires.starts_with(&next_year), "{expires}");
    // DPMPTSP never connected: its death notices wait, and it has not been seen.
    let dpmptsp = member(DPMPTSP);
    assert_eq!(dpmptsp["queue_depth"], 2);
    assert!(dpmptsp.get("last_seen").is_none() && dpmptsp.get("certificate_expires").is_none());
    assert_eq!(member(OPERATOR)["operator"], true);

    let get = o["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "siak.penduduk.get")
        .unwrap();
    assert_eq!(get["kind"], "query");
    assert_eq!(get["provider"], DUKCAPIL);
    assert!(get["producers"].as_array().unwrap().contains(&HR.into()));
    // Data minimisation as the registry grants it: HR may see the family card number,
    // DPMPTSP may not.
    assert!(
        get["grants"][HR]
            .as_array()
            .unwrap()
            .contains(&"no_kk".into())
    );
    assert!(
        !get["grants"][DPMPTSP]
            .as_array()
            .unwrap()
            .contains(&"no_kk".into())
    );

    for member in [DUKCAPIL, HR] {
        for path in ["/v1/admin/overview", "/console", "/console/console.js"] {
            let (status, text) = bus.get_text(member, path).await;
            assert_eq!(status, 403, "{member} {path}: {text}");
            assert!(text.contains("not an operator"), "{text}");
        }
    }
    // The page comes with a policy that lets it run nothing but its own script.
    let c = bus.client(OPERATOR);
    let page = c.http().get(c.url("/console")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(page.text().await.unwrap().contains("/console/console.js"));
}
