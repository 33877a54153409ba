//! The certificate lifecycle: a member's own CSR signed by the CA (its key never leaves it).

mod common;

use std::process::Command;

use common::*;

/// A key and CSR made the way an agency would, with openssl, on its own machine.
fn openssl_csr(dir: &std::path::Path, cn: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (key, csr) = (dir.join("own.key"), dir.join("own.csr"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", &format!("/CN={cn}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (key, csr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_members_own_csr_is_signed_and_its_key_never_leaves_it() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (key, csr) = openssl_csr(dir.path(), "anything the member likes");
    let out = bus.certs_command(&["issue", PORTAL, "--csr", csr.to_str().unwrap()]);
    let paths = bus::pki::member_paths(
        &bus.certs(),
        &bus::identity::MemberId::parse(PORTAL).unwrap(),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        paths.cert.display().to_string()
    );
    assert!(!paths.key.exists(), "the CA holds no key for it");

    // The member connects with the issued certificate and its own key; the certificate names
    // the member (from the CA, not from the CSR's subject).
    let c = bus::client::Client::new(&bus.base, &bus.certs().join("ca.pem"), &paths.cert, &key)
        .unwrap();
    let a = c
        .request(reqwest::Method::GET, "/v1/receipts/keys", None, None)
        .await
        .unwrap();
    assert_status(&a, 200);
    let der = bus::tls::load_certs(&paths.cert).unwrap().remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    assert!(
        cert.subject().to_string().contains(PORTAL),
        "{}",
        cert.subject()
    );

    // A CSR whose signature does not verify is refused, naming the file.
    let mut bad = std::fs::read_to_string(&csr).unwrap().into_bytes();
    let i = bad.len() / 2;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    let bad_csr = dir.path().join("bad.csr");
    std::fs::write(&bad_csr, bad).unwrap();
    let out = bus
        .simpul()
        .args(["certs", "issue", PORTAL, "--csr"])
        .arg(&bad_csr)
        .arg("--dir")
        .arg(bus.certs())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csr") && err.contains("signing request"),
        "{err}"
    );
}

/// The key the bus signs receipts with now, from the kid of a fresh receipt.
async fn receipt_kid(bus: &Bus) -> String {
    let a = bus.client(DUKCAPIL).send(&death(NIK)).await.unwrap();
    assert_status(&a, 202);
    let receipt = a.body["receipt"].as_str().unwrap();
    bus::trust::jws::parse(receipt).unwrap().header.kid
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_certificate_rotates_on_sighup_without_a_restart() {
    let bus = Bus::start(&[]);
    let old_kid = receipt_kid(&bus).await;
    let ev = death(NIK2);
    let first = bus.client(DUKCAPIL).send(&ev).await.unwrap();
    let old_receipt = first.body["receipt"].as_str().unwrap().to_owned();

    bus.certs_command(&["server-renew"]);
    bus.signal("HUP");
    let new_kid =
        bus::trust::kid_of(&bus::tls::load_certs(&bus.certs().join("server.pem")).unwrap()[0]);
    assert_ne!(new_kid, old_kid);
    assert!(
        wait_until(std::time::Duration::from_secs(10), || async {
            receipt_kid(&bus).await == new_kid
        })
        .await,
        "receipts are signed with the new key"
    );
    // New handshakes present the new certificate.
    let presented = common::raw::RawConn::open(&bus, HR).await.server_cert();
    assert_eq!(bus::trust::kid_of(&presented), new_kid);
    let a = bus
        .client(HR)
        .request(reqwest::Method::GET, "/v1/receipts/keys", None, None)
        .await
        .unwrap();
    let kids: Vec<&str> = a.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(
        kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{kids:?}"
    );
    // A receipt from before the rotation still verifies, by its kid.
    let keys = bus.dir.path().join("keys.json");
    std::fs::write(&keys, a.body.to_string()).unwrap();
    let event = bus.dir.path().join("event.json");
    let mut stored = ev.clone();
    stored["source"] = first.body["source"].clone();
    stored["time"] = first.body["time"].clone();
    std::fs::write(&event, stored.to_string()).unwrap();
    let out = bus
        .simpul()
        .args(["receipt", "verify", "--receipt", &old_receipt, "--event"])
        .arg(&event)
        .arg("--keys")
        .arg(&keys)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The process is the one that started: no restart.
    assert!(
        bus.wait_for_log("server certificate and receipt key rotated")
            .await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_near_expiry_are_named_in_readyz_and_certs_list() {
    let bus = Bus::start(&[]);
    bus.certs_command(&["issue", PORTAL, "--days", "10"]);
    let (code, body) = bus.get_text(PORTAL, "/readyz").await;
    assert_eq!(code, 200, "still ready: {body}");
    assert!(body.contains("degraded"), "{body}");
    assert!(
        body.contains(&format!("{PORTAL} certificate expires in")),
        "{body}"
    );
    assert!(!body.contains(DUKCAPIL), "a year away is not named: {body}");

    let out = bus.certs_command(&["list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |m: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{m}\t")))
            .unwrap_or_else(|| panic!("{m} not listed: {text}"))
            .to_owned()
    };
    assert!(line(PORTAL).ends_with("EXPIRES WITHIN 30 DAYS"), "{text}");
    assert!(!line(DUKCAPIL).contains("EXPIRES"), "{text}");
}
