//! The development CA behind `simpul certs`: init, issue, revoke.
//!
//! It exists so a fresh clone can run the bus over real mTLS with no external PKI. Everything
//! it writes is plain PEM that `curl`, `openssl` and any TLS stack read as-is, so agencies can
//! test their own clients against it; production uses the agency's real CA instead.
//!
//! Layout of the certs directory:
//! - `ca.pem`, `ca.key`: the CA (the key is mode 0600);
//! - `server.pem`, `server.key`: the bus's certificate for `localhost`, `127.0.0.1`, `::1`;
//! - `members/<stem>.pem`, `members/<stem>.key`: one per member ([`MemberId::file_stem`]);
//! - `crl.pem`: the CA's CRL, always present (empty at first) so the bus always checks it;
//! - `revoked.txt`: the revoked serials, one per line, from which `crl.pem` is rebuilt.
//!
//! A member certificate from a real CA comes in through [`P12Import`] into the same layout.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::identity::{MemberId, bus_identity_uri};

mod p12;
pub use p12::{ImportError, Imported, P12Import, export_p12};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";
pub const CRL: &str = "crl.pem";
pub const REVOKED: &str = "revoked.txt";
pub const MEMBERS: &str = "members";

/// Certificates start a little in the past so a peer whose clock lags ours still accepts them.
const BACKDATE: Duration = Duration::minutes(5);
/// A week, so a CRL stays fresh for a dev bus that runs for days without a revocation.
const CRL_LIFETIME: Duration = Duration::days(7);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} already exists; pass force to replace the CA (every issued certificate stops working)", .0.display())]
    Exists(PathBuf),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{}: not a usable certificate: {reason}", path.display())]
    BadCert { path: PathBuf, reason: String },
    #[error("no certificate for {member} at {}; issue one first", path.display())]
    NoCert { member: MemberId, path: PathBuf },
    #[error("{} belongs to {existing}, not {member} (their file names collide)", path.display())]
    StemCollision {
        member: MemberId,
        existing: String,
        path: PathBuf,
    },
    #[error("validity ends ({not_after}) before it starts ({not_before})")]
    BadValidity {
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    #[error("{}:{line}: malformed revocation entry", path.display())]
    BadRevocationEntry { path: PathBuf, line: usize },
    #[error("no secure random numbers available")]
    Random,
    #[error("{}: not a certificate signing request whose signature verifies ({source})", path.display())]
    BadCsr { path: PathBuf, source: rcgen::Error },
}

/// Where a new member certificate's key comes from.
pub enum KeySource<'a> {
    /// A fresh key, written beside the certificate (the development PKI).
    Generate,
    /// The public key of the member's own CSR (PEM, from `path`): its private key never leaves
    /// the member. The CSR's signature must verify; the names it asks for are ignored, since
    /// the CA decides what a member certificate says.
    Csr { pem: &'a str, path: &'a Path },
}

/// A certificate's validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// Valid from now (less [`BACKDATE`] for clock skew) for `n` days.
    pub fn days(n: i64) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - BACKDATE,
            not_after: now + Duration::days(n),
        }
    }
}

/// Where a member's certificate and key are (or would be) written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The member's file paths in a certs directory, whether or not they exist yet.
pub fn member_paths(dir: &Path, member: &MemberId) -> IssuedPaths {
    let stem = member.file_stem();
    let members = dir.join(MEMBERS);
    IssuedPaths {
        cert: members.join(format!("{stem}.pem")),
        key: members.join(format!("{stem}.key")),
    }
}

/// Copies a development CA (its key, the server certificate and the CRL with its revocations)
/// into `to`, without the member certificates: a bus started on the copy issues its own
/// members, signed by the same CA. For several buses that one broker must trust (tests,
/// benchmarks); a real deployment shares one PKI instead.
pub fn copy_authority(from: &Path, to: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(to).map_err(|source| PkiError::Io {
        path: to.to_owned(),
        source,
    })?;
    for f in [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, CRL, REVOKED] {
        fs::copy(from.join(f), to.join(f)).map_err(|source| PkiError::Io {
            path: from.join(f),
            source,
        })?;
    }
    Ok(())
}

/// A loaded development CA, able to sign member certificates and CRLs.
pub struct DevCa {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The CA's subject key identifier, repeated in every CRL so verifiers match them up.
    key_id: KeyIdMethod,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl DevCa {
    /// Creates the CA, the server certificate, one certificate per member and an empty CRL.
    ///
    /// An existing CA is kept unless `force`, because replacing it silently would invalidate
    /// every certificate already handed to agencies.
    pub fn init(
        dir: &Path,
        instance: &str,
        members: &[MemberId],
        force: bool,
    ) -> Result<DevCa, PkiError> {
        for name in [CA_CERT, CA_KEY] {
            let p = dir.join(name);
            if p.exists() && !force {
                return Err(PkiError::Exists(p));
            }
        }
        let members_dir = dir.join(MEMBERS);
        fs::create_dir_all(&members_dir).map_err(|source| PkiError::Io {
            path: members_dir,
            source,
        })?;

        let now = OffsetDateTime::now_utc();
        let serial = random_serial()?;
        // A tag from the serial makes each CA's name unique, so two dev CAs (say, of two
        // machines) are told apart by name in error messages and chain building.
        let tag = hex::encode(&serial.to_bytes()[..4]);
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&[
            (
                DnType::CommonName,
                format!("simpul development CA {instance} {tag}"),
            ),
            (
                DnType::OrganizationName,
                "simpul development PKI".to_owned(),
            ),
        ]);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(serial);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        write_file(&dir.join(CA_KEY), key.serialize_pem().as_bytes(), true)?;
        write_file(&dir.join(CA_CERT), cert.pem().as_bytes(), false)?;
        // Serials revoked under a replaced CA mean nothing under the new one.
        write_file(&dir.join(REVOKED), b"", false)?;

        let ca = DevCa {
            dir: dir.to_owned(),
            key_id: params.key_identifier_method.clone(),
            issuer: Issuer::new(params, key),
        };
        ca.issue_server(instance)?;
        for m in members {
            ca.issue(instance, m, Validity::days(365))?;
        }
        ca.write_crl(&[])?;
        Ok(ca)
    }

    /// Loads the CA written by [`DevCa::init`].
    pub fn load(dir: &Path) -> Result<DevCa, PkiError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let cert_pem = read_string(&cert_path)?;
        let key = KeyPair::from_pem(&read_string(&key_path)?).map_err(|e| PkiError::BadCert {
            path: key_path,
            reason: e.to_string(),
        })?;
        let der = pem_der(&cert_path, cert_pem.as_bytes())?;
        let (_, x509) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| bad(&cert_path, e))?;
        let key_id = match x509
            .tbs_certificate
            .extensions_map()
            .map_err(|e| bad(&cert_path, e))?
            .get(&x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
        {
            Some(ext) => match ext.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ki) => {
                    KeyIdMethod::PreSpecified(ki.0.to_vec())
                }
                _ => KeyIdMethod::Sha256,
            },
            None => KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_ca_cert_der(&der.into(), key).map_err(|e| bad(&cert_path, e))?;
        Ok(DevCa {
            dir: dir.to_owned(),
            issuer,
            key_id,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Issues (or re-issues) a member certificate with a fresh key.
    ///
    /// Re-issuing does not revoke the previous certificate; revoke first if it may have leaked.
    /// A `validity` already in the past is allowed, so tests can make expired certificates.
    pub fn issue(
        &self,
        instance: &str,
        member: &MemberId,
        validity: Validity,
    ) -> Result<IssuedPaths, PkiError> {
        self.issue_with(instance, member, validity, KeySource::Generate)
    }

    /// Issues a member certificate for a key from `source`. For a CSR only the certificate is
    /// written, and a key file left from an earlier development certificate is removed, since
    /// it no longer matches.
    pub fn issue_with(
        &self,
        instance: &str,
        member: &MemberId,
        validity: Validity,
        source: KeySource<'_>,
    ) -> Result<IssuedPaths, PkiError> {
        if validity.not_after <= validity.not_before {
            return Err(PkiError::BadValidity {
                not_before: validity.not_before,
                not_after: validity.not_after,
            });
        }
        let paths = member_paths(&self.dir, member);
        if paths.cert.exists() {
            let existing = cert_common_name(&paths.cert)?;
            if existing != member.as_str() {
                return Err(PkiError::StemCollision {
                    member: member.clone(),
                    existing,
                    path: paths.cert,
                });
            }
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&[(DnType::CommonName, member.to_string())]);
        params.subject_alt_names = vec![SanType::URI(member.to_spiffe_uri(instance).try_into()?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        if let Some(parent) = paths.cert.parent() {
            fs::create_dir_all(parent).map_err(|source| PkiError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        match source {
            KeySource::Generate => {
                let key = KeyPair::generate()?;
                let cert = params.signed_by(&key, &self.issuer)?;
                write_file(&paths.key, key.serialize_pem().as_bytes(), true)?;
                write_file(&paths.cert, cert.pem().as_bytes(), false)?;
            }
            KeySource::Csr { pem, path } => {
                let csr =
                    rcgen::CertificateSigningRequestParams::from_pem(pem).map_err(|source| {
                        PkiError::BadCsr {
                            path: path.to_owned(),
                            source,
                        }
                    })?;
                let cert = params.signed_by(&csr.public_key, &self.issuer)?;
                write_file(&paths.cert, cert.pem().as_bytes(), false)?;
                match fs::remove_file(&paths.key) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(PkiError::Io {
                            path: paths.key,
                            source: e,
                        });
                    }
                    _ => {}
                }
            }
        }
        Ok(paths)
    }

    /// Revokes the member's current certificate and rewrites `crl.pem`.
    ///
    /// Revoking twice is harmless. The bus re-reads the CRL when it changes, so this takes
    /// effect on new connections without a restart.
    pub fn revoke(&self, member: &MemberId) -> Result<(), PkiError> {
        let paths = member_paths(&self.dir, member);
        if !paths.cert.exists() {
            return Err(PkiError::NoCert {
                member: member.clone(),
                path: paths.cert,
            });
        }
        let pem = fs::read(&paths.cert).map_err(|source| PkiError::Io {
            path: paths.cert.clone(),
            source,
        })?;
        let der = pem_der(&paths.cert, &pem)?;
        let (_, x509) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| bad(&paths.cert, e))?;
        let serial = x509.tbs_certificate.serial.to_bytes_be();
        let mut entries = self.revoked()?;
        if !entries.iter().any(|e| e.serial == serial) {
            let entry = Revoked {
                serial,
                time: OffsetDateTime::now_utc(),
                member: member.to_string(),
            };
            let path = self.dir.join(REVOKED);
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| {
                    f.write_all(entry.line().as_bytes())?;
                    Ok(f)
                })
                .map_err(|source| PkiError::Io {
                    path: path.clone(),
                    source,
                })?;
            f.flush().map_err(|source| PkiError::Io { path, source })?;
            entries.push(entry);
        }
        self.write_crl(&entries)
    }

    /// Rebuilds `crl.pem` from `revoked.txt`, e.g. to refresh its next-update date.
    pub fn refresh_crl(&self) -> Result<(), PkiError> {
        self.write_crl(&self.revoked()?)
    }

    /// As [`DevCa::refresh_crl`], with the CRL's `nextUpdate` `lifetime` from now.
    pub fn refresh_crl_for(&self, lifetime: std::time::Duration) -> Result<(), PkiError> {
        let lifetime = Duration::try_from(lifetime).unwrap_or(CRL_LIFETIME);
        self.write_crl_for(&self.revoked()?, lifetime)
    }

    /// A new server certificate and key for the bus, replacing the current ones; a running
    /// bus picks them up on SIGHUP or within a second, without a restart.
    pub fn renew_server(&self, instance: &str) -> Result<(), PkiError> {
        self.issue_server(instance)
    }

    /// The bus's own certificate: its TLS server identity, and its client identity towards
    /// RabbitMQ, which names the user from the one SAN URI (EXTERNAL login). Hence both key
    /// purposes, and a URI of the instance that no member id can equal (ids have two parts).
    fn issue_server(&self, instance: &str) -> Result<(), PkiError> {
        let mut params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])?;
        params
            .subject_alt_names
            .push(SanType::URI(bus_identity_uri(instance).try_into()?));
        params.distinguished_name = name(&[(DnType::CommonName, "localhost".to_owned())]);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        let v = Validity::days(825);
        params.not_before = v.not_before;
        params.not_after = v.not_after;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        write_file(
            &self.dir.join(SERVER_KEY),
            key.serialize_pem().as_bytes(),
            true,
        )?;
        write_file(&self.dir.join(SERVER_CERT), cert.pem().as_bytes(), false)
    }

    fn revoked(&self) -> Result<Vec<Revoked>, PkiError> {
        let path = self.dir.join(REVOKED);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(PkiError::Io { path, source }),
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|(i, l)| {
                Revoked::parse(l).ok_or_else(|| PkiError::BadRevocationEntry {
                    path: path.clone(),
                    line: i + 1,
                })
            })
            .collect()
    }

    fn write_crl(&self, entries: &[Revoked]) -> Result<(), PkiError> {
        self.write_crl_for(entries, CRL_LIFETIME)
    }

    fn write_crl_for(&self, entries: &[Revoked], lifetime: Duration) -> Result<(), PkiError> {
        let now = OffsetDateTime::now_utc();
        // CRL numbers must increase; the clock in nanoseconds does without another state file.
        let number = (now.unix_timestamp_nanos() as u128).to_be_bytes();
        let params = CertificateRevocationListParams {
            this_update: now - BACKDATE,
            next_update: now + lifetime,
            crl_number: SerialNumber::from_slice(&number),
            issuing_distribution_point: None,
            revoked_certs: entries
                .iter()
                .map(|e| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&e.serial),
                    revocation_time: e.time,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: self.key_id.clone(),
        };
        let crl = params.signed_by(&self.issuer)?;
        write_file(&self.dir.join(CRL), crl.pem()?.as_bytes(), false)
    }
}

/// One line of `revoked.txt`: `<serial hex> <RFC 3339 time> <member ID>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Revoked {
    serial: Vec<u8>,
    time: OffsetDateTime,
    member: String,
}

impl Revoked {
    fn line(&self) -> String {
        let serial = hex::encode(&self.serial);
        let time = self
            .time
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        format!("{serial} {time} {}\n", self.member)
    }

    fn parse(line: &str) -> Option<Revoked> {
        let mut it = line.split_whitespace();
        let serial = hex::decode(it.next()?).ok().filter(|s| !s.is_empty())?;
        let time = it.next()?;
        let member = it.next().unwrap_or_default().to_owned();
        let time =
            OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).ok()?;
        Some(Revoked {
            serial,
            time,
            member,
        })
    }
}

fn name(parts: &[(DnType, String)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (ty, v) in parts {
        dn.push(ty.clone(), v.as_str());
    }
    dn
}

/// 128 random bits, positive and without a leading zero byte, so every tool encodes and
/// compares it the same way (RFC 5280 allows up to 20 octets).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut b = [0u8; 16];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut b)
        .map_err(|_| PkiError::Random)?;
    b[0] = (b[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&b))
}

fn bad(path: &Path, e: impl std::fmt::Display) -> PkiError {
    PkiError::BadCert {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn read_string(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The DER of the first PEM certificate in `pem`.
fn pem_der(path: &Path, pem: &[u8]) -> Result<Vec<u8>, PkiError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(pem)
        .map(|c| c.to_vec())
        .map_err(|e| bad(path, e))
}

fn cert_common_name(path: &Path) -> Result<String, PkiError> {
    let pem = fs::read(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })?;
    let der = pem_der(path, &pem)?;
    let (_, x509) = x509_parser::parse_x509_certificate(&der).map_err(|e| bad(path, e))?;
    let cn = x509
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default();
    Ok(cn.to_owned())
}

/// Writes via a temporary file and a rename, so the bus (which re-reads `crl.pem` on change)
/// never sees half a file. Keys are created 0600 from the start, never world-readable.
fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const INSTANCE: &str = "simpul.test";

    fn id(s: &str) -> MemberId {
        MemberId::parse(s).unwrap()
    }

    fn have(tool: &str) -> bool {
        let ok = Command::new(tool)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
            || Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("{tool} not installed; skipping the CLI check");
        }
        ok
    }

    /// `openssl verify` with the CRL, the way an agency would check a certificate by hand.
    fn openssl_verify(dir: &Path, cert: &Path) -> (bool, String) {
        let out = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(dir.join(CA_CERT))
            .arg("-crl_check")
            .arg("-CRLfile")
            .arg(dir.join(CRL))
            .arg(cert)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    #[test]
    fn init_writes_the_layout_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let members = [
            id("GOV/dukcapil"),
            id("GOV/dpmptsp/sipanse"),
            id("COM/8120000123456"),
        ];
        DevCa::init(&dir, INSTANCE, &members, false).unwrap();
        for f in [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, CRL, REVOKED] {
            assert!(dir.join(f).is_file(), "{f} missing");
        }
        for m in &members {
            let p = member_paths(&dir, m);
            assert!(p.cert.is_file() && p.key.is_file(), "{m}");
            assert_eq!(cert_common_name(&p.cert).unwrap(), m.as_str());
            let der = pem_der(&p.cert, &fs::read(&p.cert).unwrap()).unwrap();
            assert_eq!(
                crate::identity::member_from_cert(INSTANCE, &der).unwrap(),
                *m
            );
        }
        assert!(dir.join("members/GOV_dpmptsp_sipanse.pem").is_file());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [
                dir.join(CA_KEY),
                dir.join(SERVER_KEY),
                member_paths(&dir, &members[0]).key,
            ] {
                let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", key.display());
            }
        }
        let ca_before = fs::read(dir.join(CA_CERT)).unwrap();
        assert!(matches!(
            DevCa::init(&dir, INSTANCE, &members, false),
            Err(PkiError::Exists(_))
        ));
        assert_eq!(
            fs::read(dir.join(CA_CERT)).unwrap(),
            ca_before,
            "a refused init must not touch the CA"
        );
        DevCa::init(&dir, INSTANCE, &members, true).unwrap();
        assert_ne!(fs::read(dir.join(CA_CERT)).unwrap(), ca_before);
    }

    #[test]
    fn issue_validates_and_guards_file_collisions() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = DevCa::init(tmp.path(), INSTANCE, &[id("GOV/a_b")], false).unwrap();
        let ca = DevCa::load(ca.dir()).unwrap();
        // Re-issuing the same member replaces its files with a new serial.
        let p = member_paths(tmp.path(), &id("GOV/a_b"));
        let before = fs::read(&p.cert).unwrap();
        assert_eq!(
            ca.issue(INSTANCE, &id("GOV/a_b"), Validity::days(1))
                .unwrap(),
            p
        );
        assert_ne!(fs::read(&p.cert).unwrap(), before);
        // GOV/a/b has the same file stem: it must not overwrite GOV/a_b's key.
        assert!(matches!(
            ca.issue(INSTANCE, &id("GOV/a/b"), Validity::days(1)),
            Err(PkiError::StemCollision { .. })
        ));
        let now = OffsetDateTime::now_utc();
        let backwards = Validity {
            not_before: now,
            not_after: now - Duration::days(1),
        };
        assert!(matches!(
            ca.issue(INSTANCE, &id("GOV/x"), backwards),
            Err(PkiError::BadValidity { .. })
        ));
        assert!(matches!(
            ca.revoke(&id("GOV/nobody")),
            Err(PkiError::NoCert { .. })
        ));
        assert!(matches!(
            DevCa::load(&tmp.path().join("nowhere")),
            Err(PkiError::Io { .. })
        ));
    }

    #[test]
    fn revocation_index_round_trips() {
        let e = Revoked {
            serial: vec![0x40, 0x01, 0xff],
            time: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            member: "GOV/dukcapil".into(),
        };
        assert_eq!(Revoked::parse(e.line().trim_end()), Some(e));
        assert_eq!(Revoked::parse("zz 2024-01-01T00:00:00Z GOV/x"), None);
        assert_eq!(Revoked::parse("abc 2024-01-01T00:00:00Z GOV/x"), None);
    }

    #[test]
    fn openssl_accepts_the_files_and_honours_the_crl() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (good, gone) = (id("GOV/dukcapil"), id("GOV/dpmptsp/sipanse"));
        let ca = DevCa::init(dir, INSTANCE, &[good.clone(), gone.clone()], false).unwrap();
        let other_dir = dir.join("other");
        DevCa::init(&other_dir, INSTANCE, std::slice::from_ref(&good), false).unwrap();

        ca.revoke(&gone).unwrap();
        ca.revoke(&gone).unwrap(); // idempotent
        let index = fs::read_to_string(dir.join(REVOKED)).unwrap();
        assert_eq!(index.lines().count(), 1, "{index}");
        assert!(index.contains("GOV/dpmptsp/sipanse"));
        // The CRL can be rebuilt from the index alone, by a freshly loaded CA.
        DevCa::load(dir).unwrap().refresh_crl().unwrap();

        if !have("openssl") {
            return;
        }
        let (ok, out) = openssl_verify(dir, &dir.join(SERVER_CERT));
        assert!(ok, "server cert: {out}");
        let (ok, out) = openssl_verify(dir, &member_paths(dir, &good).cert);
        assert!(ok, "valid member: {out}");
        let (ok, out) = openssl_verify(dir, &member_paths(dir, &gone).cert);
        assert!(!ok && out.contains("revoked"), "revoked member: {out}");
        let (ok, out) = openssl_verify(dir, &member_paths(&other_dir, &good).cert);
        assert!(!ok, "another CA's member: {out}");
        // A re-issued certificate has a new serial, so it is not covered by the old revocation.
        ca.issue(INSTANCE, &gone, Validity::days(1)).unwrap();
        let (ok, out) = openssl_verify(dir, &member_paths(dir, &gone).cert);
        assert!(ok, "re-issued member: {out}");
        // The key files are plain PKCS#8 PEM that openssl reads.
        let out = Command::new("openssl")
            .args(["pkey", "-noout", "-in"])
            .arg(member_paths(dir, &good).key)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
}
