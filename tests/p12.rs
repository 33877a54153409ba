//! `simpul certs import --p12`: an agency's certificate and key as a CA delivers them become
//! the PEM files the bus and the adapters use; a file that would not work is refused before
//! anything is written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use reqwest::Method;

/// `openssl pkcs12 -export` of `cert` and `key` (with `extra` flags) into `out`.
fn export(cert: &Path, key: &Path, out: &Path, password: &str, extra: &[&str]) {
    let ok = Command::new("openssl")
        .args(["pkcs12", "-export", "-inkey"])
        .arg(key)
        .arg("-in")
        .arg(cert)
        .arg("-out")
        .arg(out)
        .arg("-passout")
        .arg(format!("pass:{password}"))
        .args(extra)
        .status()
        .unwrap();
    assert!(ok.success(), "openssl pkcs12 -export");
}

fn import(bus: &Bus, p12: &Path, password: &str, force: bool) -> Output {
    let mut c = bus.simpul();
    c.args(["certs", "import", "--p12"])
        .arg(p12)
        .arg("--dir")
        .arg(bus.certs())
        .env("SIMPUL_P12_PASSWORD", password);
    if force {
        c.arg("--force");
    }
    c.output().unwrap()
}

/// A key made outside the bus and a certificate for `member` signed from its CSR, as a CA
/// would deliver them; returned as (cert, key) files in `dir`.
fn delivered(bus: &Bus, dir: &Path, member: &str) -> (PathBuf, PathBuf) {
    let key = dir.join("agency.key");
    let csr = dir.join("agency.csr");
    let ok = Command::new("openssl")
        .args([
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=x",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .status()
        .unwrap();
    assert!(ok.success());
    // `issue --csr` writes the certificate into the bus's certs; take it out as the delivery.
    bus.certs_command(&["issue", member, "--csr", csr.to_str().unwrap()]);
    let stem = bus::identity::MemberId::parse(member).unwrap().file_stem();
    let cert = dir.join("agency.pem");
    std::fs::copy(bus.certs().join(format!("members/{stem}.pem")), &cert).unwrap();
    (cert, key)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_imported_pkcs12_is_what_the_member_connects_with() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = delivered(&bus, dir.path(), PORTAL);
    // Old-style encryption (RC2/3DES), as CAs and Windows still export.
    let p12 = dir.path().join("portal.p12");
    export(&cert, &key, &p12, "rahasia", &["-legacy"]);

    let wrong = import(&bus, &p12, "salah", true);
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("password"), "{}", stderr(&wrong));

    let there = import(&bus, &p12, "rahasia", false);
    assert!(
        !there.status.success(),
        "replaced a certificate without --force"
    );
    assert!(stderr(&there).contains("--force"), "{}", stderr(&there));

    let ok = import(&bus, &p12, "rahasia", true);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let paths = bus::pki::member_paths(
        &bus.certs(),
        &bus::identity::MemberId::parse(PORTAL).unwrap(),
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&paths.key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the private key is readable by others");
    // The imported key is the agency's own, and the member connects with the files.
    let written = std::fs::read_to_string(&paths.key).unwrap();
    let original = Command::new("openssl")
        .args(["pkey", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(written, String::from_utf8(original.stdout).unwrap());
    let a = bus
        .client(PORTAL)
        .request(Method::GET, "/healthz", None, None)
        .await
        .unwrap();
    assert_status(&a, 200);
}

#[test]
fn a_pkcs12_for_another_instance_or_ca_is_refused_and_nothing_is_written() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let member = bus::identity::MemberId::parse(PORTAL).unwrap();
    let before = std::fs::read(bus::pki::member_paths(&bus.certs(), &member).cert).unwrap();

    // Signed by this bus's CA, but naming another instance.
    let other = dir.path().join("other-instance");
    bus::pki::copy_authority(&bus.certs(), &other).unwrap();
    let ca = bus::pki::DevCa::load(&other).unwrap();
    let p = ca
        .issue("other.example", &member, bus::pki::Validity::days(30))
        .unwrap();
    let p12 = dir.path().join("other-instance.p12");
    export(&p.cert, &p.key, &p12, "x", &[]);
    let out = import(&bus, &p12, "x", true);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("simpul.dev"), "{}", stderr(&out));

    // Naming this instance, but from a CA the bus does not trust.
    let foreign = dir.path().join("foreign");
    bus::pki::DevCa::init(&foreign, "simpul.dev", std::slice::from_ref(&member), false).unwrap();
    let p = bus::pki::member_paths(&foreign, &member);
    let p12 = dir.path().join("foreign.p12");
    export(&p.cert, &p.key, &p12, "x", &[]);
    let out = import(&bus, &p12, "x", true);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not accepted by the CA"),
        "{}",
        stderr(&out)
    );

    let after = std::fs::read(bus::pki::member_paths(&bus.certs(), &member).cert).unwrap();
    assert_eq!(
        before, after,
        "a refused import changed the member's certificate"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exported_pkcs12_opens_in_openssl_and_imports_back() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("portal.p12");
    let export = |password: &str| bus.export_p12(PORTAL, &out, password);
    let empty = export("");
    assert!(!empty.status.success(), "exported a key without a password");
    assert!(stderr(&empty).contains("password"), "{}", stderr(&empty));
    let ok = export("rahasia");
    assert!(ok.status.success(), "{}", stderr(&ok));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // What a browser or another TLS stack would read: the certificate and key.
    let shown = Command::new("openssl")
        .args(["pkcs12", "-nodes", "-passin", "pass:rahasia", "-in"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(shown.status.success(), "{}", stderr(&shown));
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("BEGIN CERTIFICATE") && text.contains("BEGIN PRIVATE KEY"));
    // And back: the import checks it and the member still connects.
    let back = import(&bus, &out, "rahasia", true);
    assert!(back.status.success(), "{}", stderr(&back));
    let a = bus
        .client(PORTAL)
        .request(Method::GET, "/healthz", None, None)
        .await
        .unwrap();
    assert_status(&a, 200);
}
