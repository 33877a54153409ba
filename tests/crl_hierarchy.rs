//! A national-CA-shaped PKI: an RSA root, an intermediate, and member leaves that present their
//! chain. CRLs are configured one per issuing CA; what is missing is said plainly.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn crl(issuer: &Issuer<'_, KeyPair>, number: u64) -> String {
    let now = time::OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(5),
        next_update: now + time::Duration::days(7),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
    .pem()
    .unwrap()
}

/// Root → intermediate → leaf for GOV/portal, all RSA; each CA's CRL; the leaf's chain file.
fn national_pki() -> Pki {
    let pki = Pki {
        dir: tempfile::tempdir().unwrap(),
    };
    let rsa = || KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let (root_key, inter_key, leaf_key) = (rsa(), rsa(), rsa());
    let root_params = ca_params("Root CA Nasional (test)");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let inter_params = ca_params("CA Instansi Daerah (test)");
    let inter = inter_params.signed_by(&inter_key, &root_issuer).unwrap();
    let inter_issuer = Issuer::new(inter_params, inter_key);
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name.push(DnType::CommonName, PORTAL);
    leaf.subject_alt_names = vec![SanType::URI(
        format!("spiffe://simpul.dev/{PORTAL}").try_into().unwrap(),
    )];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf = leaf.signed_by(&leaf_key, &inter_issuer).unwrap();
    let write = |f: &str, s: String| std::fs::write(pki.path(f), s).unwrap();
    write("root.pem", root.pem());
    write("inter.pem", inter.pem());
    write("inter.key", inter_issuer.key().serialize_pem());
    write("leaf-chain.pem", format!("{}{}", leaf.pem(), inter.pem()));
    write("leaf.key", leaf_key.serialize_pem());
    write("root.crl", crl(&root_issuer, 1));
    write("inter.crl", crl(&inter_issuer, 1));
    pki
}

/// A registry that trusts the national CAs with these CRLs, and a certs dir holding only the
/// bus's own server certificate (from a development CA the client trusts).
fn setup(pki: &Pki, crls: &[&str]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("registry.toml")).unwrap();
    let crls: Vec<PathBuf> = crls.iter().map(|c| pki.path(c)).collect();
    let trust = format!(
        "[trust]\nca = [{:?}, {:?}]\ncrl = {:?}\n",
        pki.path("root.pem"),
        pki.path("inter.pem"),
        crls
    );
    let text = text.replace(
        "schemas_dir = \"schemas\"\n",
        &format!("schemas_dir = {:?}\n{trust}", repo().join("schemas")),
    );
    let reg = dir.path().join("registry.toml");
    std::fs::write(&reg, text).unwrap();
    let certs = dir.path().join("certs");
    bus::pki::DevCa::init(&certs, "simpul.dev", &[], false).unwrap();
    std::fs::remove_file(certs.join("ca.key")).unwrap(); // a real CA: the bus issues nothing
    (dir, reg, certs)
}

fn serve(dir: &Path, reg: &Path, certs: &Path) -> (Child, Option<String>, PathBuf) {
    let log = dir.join("bus.log");
    let mut child = Command::new(bin())
        .env_remove("SIMPUL_STORE")
        .args(["serve", "--listen", "127.0.0.1:0", "--registry"])
        .arg(reg)
        .arg("--certs")
        .arg(certs)
        .arg("--data")
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("simpul listening on ")
        .map(str::to_owned);
    (child, base, log)
}

async fn member_gets_in(pki: &Pki, certs: &Path, base: &str) -> bool {
    let c = bus::client::Client::new(
        base,
        &certs.join("ca.pem"),
        &pki.path("leaf-chain.pem"),
        &pki.path("leaf.key"),
    )
    .unwrap();
    let a = c
        .request(reqwest::Method::GET, "/healthz", None, None)
        .await;
    a.is_ok_and(|a| a.status == 200)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_under_an_intermediate_needs_the_intermediates_crl_and_is_told_so() {
    let pki = national_pki();

    // Only the root's CRL: the member is refused, and the operator is told why and what to do.
    let (dir, reg, certs) = setup(&pki, &["root.crl"]);
    let out = Command::new(bin())
        .args(["registry", "check"])
        .arg(&reg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("warning: no configured CRL is issued by the CA CN=CA Instansi Daerah"),
        "{text}"
    );
    let (mut child, base, log) = serve(dir.path(), &reg, &certs);
    let base = base.expect("the bus starts");
    assert!(!member_gets_in(&pki, &certs, &base).await);
    let logged = wait_until(std::time::Duration::from_secs(10), || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("revocation status unknown")
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logged, "{logs}");
    assert!(logs.contains("WARN"), "{logs}");
    assert!(
        logs.contains("no configured CRL is issued by CN=CA Instansi Daerah (test)"),
        "{logs}"
    );
    assert!(
        logs.contains("CA CN=CA Instansi Daerah (test)"),
        "named at start: {logs}"
    );

    // One CRL per issuing CA: the member gets in.
    let (dir, reg, certs) = setup(&pki, &["root.crl", "inter.crl"]);
    let (mut child, base, _) = serve(dir.path(), &reg, &certs);
    let ok = member_gets_in(&pki, &certs, &base.expect("the bus starts")).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        ok,
        "a member under the intermediate is let in with its CA's CRL"
    );
}

/// A CRL without a CRL Number (as `openssl ca -gencrl` writes one without a `crlnumber` file):
/// the bus refuses to start and says why, once.
#[test]
fn a_crl_without_a_crl_number_is_refused_with_the_rule_named() {
    let pki = national_pki();
    std::fs::write(pki.path("index.txt"), "").unwrap();
    std::fs::write(
        pki.path("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ndefault_md = sha256\ndefault_crl_days = 7\n",
    )
    .unwrap();
    let out = Command::new("openssl")
        .current_dir(pki.dir.path())
        .args([
            "ca",
            "-gencrl",
            "-config",
            "ca.cnf",
            "-keyfile",
            "inter.key",
            "-cert",
        ])
        .args(["inter.pem", "-out", "nonumber.crl"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (dir, reg, certs) = setup(&pki, &["root.crl", "nonumber.crl"]);
    let (mut child, base, log) = serve(dir.path(), &reg, &certs);
    assert!(
        base.is_none(),
        "the bus started on a CRL without a CRL Number"
    );
    assert!(!child.wait().unwrap().success());
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(err.contains("nonumber.crl"), "{err}");
    assert_eq!(err.matches("RFC 5280").count(), 1, "{err}");
    assert!(err.contains("no CRL Number"), "{err}");
}
