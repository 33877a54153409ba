//! `simpul certs import --p12`: a member's certificate and key as CAs such as BSrE deliver them
//! (PKCS#12), checked, then written as the PEM files the bus and the adapters read
//! ([`member_paths`]).
//!
//! Everything is checked before anything is written, so a wrong file never replaces a working
//! certificate: the password, that the key belongs to the certificate, that the certificate
//! names exactly one member of this instance that the registry knows, and that it chains to a
//! CA this bus trusts and is valid now.

use std::path::{Path, PathBuf};

use openssl::pkcs12::Pkcs12;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509StoreContext, X509VerifyResult};

use super::{IssuedPaths, PkiError, member_paths, write_file};
use crate::identity::{MemberId, member_from_cert};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not readable as PKCS#12 with this password ({why})", path.display())]
    Unreadable { path: PathBuf, why: String },
    #[error("{}: not written: a PKCS#12 holding a private key needs a password (SIMPUL_P12_PASSWORD or --password-file)", .0.display())]
    NoPassword(PathBuf),
    #[error("{}: holds no {what}", path.display())]
    Missing { path: PathBuf, what: &'static str },
    #[error("{}: the private key does not belong to the certificate", path.display())]
    KeyMismatch { path: PathBuf },
    #[error("{}: the certificate names no member of {instance}: {why}", path.display())]
    NotThisInstance {
        path: PathBuf,
        instance: String,
        why: String,
    },
    #[error("{}: {member} is not a member in the registry", path.display())]
    NotAMember { path: PathBuf, member: MemberId },
    #[error("{}: the certificate is not accepted by the CA(s) this bus trusts: {why}", path.display())]
    Untrusted { path: PathBuf, why: String },
    #[error("{} already exists; pass --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
}

/// What to import and against what.
pub struct P12Import<'a> {
    pub file: &'a Path,
    pub password: &'a str,
    /// The instance whose SPIFFE ID the certificate must carry.
    pub instance: &'a str,
    /// The registry's members: the certificate must name one of them.
    pub members: &'a [MemberId],
    /// The CA certificates (PEM) the bus trusts for members.
    pub ca_files: &'a [PathBuf],
    /// The certs directory to write into.
    pub dir: &'a Path,
    /// Replace a member certificate already there.
    pub force: bool,
}

/// What was written.
#[derive(Debug)]
pub struct Imported {
    pub member: MemberId,
    pub paths: IssuedPaths,
    /// Intermediates written after the leaf.
    pub intermediates: usize,
    pub not_after: String,
}

impl P12Import<'_> {
    pub fn run(&self) -> Result<Imported, ImportError> {
        let path = self.file.to_owned();
        let der = std::fs::read(&path).map_err(|source| ImportError::Io {
            path: path.clone(),
            source,
        })?;
        // RC2 and 3DES, which older exports use, live in OpenSSL 3's legacy provider; the
        // default provider stays available beside it.
        let _legacy = openssl::provider::Provider::try_load(None, "legacy", true).ok();
        let unreadable = |e: openssl::error::ErrorStack| ImportError::Unreadable {
            path: path.clone(),
            why: e.to_string(),
        };
        let parsed = Pkcs12::from_der(&der)
            .map_err(unreadable)?
            .parse2(self.password)
            .map_err(unreadable)?;
        let missing = |what| ImportError::Missing {
            path: path.clone(),
            what,
        };
        let cert = parsed.cert.ok_or_else(|| missing("certificate"))?;
        let key = parsed.pkey.ok_or_else(|| missing("private key"))?;
        if !cert.public_key()?.public_eq(&key) {
            return Err(ImportError::KeyMismatch { path });
        }
        let member = member_from_cert(self.instance, &cert.to_der()?).map_err(|e| {
            ImportError::NotThisInstance {
                path: path.clone(),
                instance: self.instance.to_owned(),
                why: e.to_string(),
            }
        })?;
        if !self.members.contains(&member) {
            return Err(ImportError::NotAMember { path, member });
        }
        let extra: Vec<X509> = parsed
            .ca
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        self.verify(&cert, &extra)?;
        let paths = member_paths(self.dir, &member);
        if paths.cert.exists() && !self.force {
            return Err(ImportError::Exists(paths.cert));
        }
        let chain = chain_of(&cert, &extra);
        let mut pem = cert.to_pem()?;
        for c in &chain {
            pem.extend(c.to_pem()?);
        }
        if let Some(parent) = paths.cert.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ImportError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        write_file(&paths.key, &key.private_key_to_pem_pkcs8()?, true)?;
        write_file(&paths.cert, &pem, false)?;
        Ok(Imported {
            member,
            paths,
            intermediates: chain.len(),
            not_after: cert.not_after().to_string(),
        })
    }

    /// The certificate must chain to a trusted CA (through the file's own intermediates) and
    /// be valid now: a certificate the bus would refuse is not worth installing.
    fn verify(&self, cert: &X509, extra: &[X509]) -> Result<(), ImportError> {
        let mut store = X509StoreBuilder::new()?;
        for ca in self.ca_files {
            let pem = std::fs::read(ca).map_err(|source| ImportError::Io {
                path: ca.clone(),
                source,
            })?;
            for c in X509::stack_from_pem(&pem)? {
                store.add_cert(c)?;
            }
        }
        let store = store.build();
        let mut untrusted = Stack::new()?;
        for c in extra {
            untrusted.push(c.clone())?;
        }
        let mut ctx = X509StoreContext::new()?;
        let why = ctx.init(&store, cert, &untrusted, |c| {
            Ok((!c.verify_cert()?).then(|| c.error().error_string().to_owned()))
        })?;
        match why {
            None => Ok(()),
            Some(why) => Err(ImportError::Untrusted {
                path: self.file.to_owned(),
                why,
            }),
        }
    }
}

/// The intermediates from `extra` that lead from `leaf` towards its root, in order; roots
/// (self-signed) are left out, since the peer already has them.
fn chain_of(leaf: &X509, extra: &[X509]) -> Vec<X509> {
    let mut chain = Vec::new();
    let mut at = leaf.clone();
    while let Some(issuer) = extra
        .iter()
        .find(|c| c.issued(&at) == X509VerifyResult::OK && c.issued(c) != X509VerifyResult::OK)
    {
        if chain.len() >= extra.len() {
            break; // a loop in a malformed file
        }
        chain.push(issuer.clone());
        at = issuer.clone();
    }
    chain
}

/// `simpul certs export --p12`: a member's certificate (with the chain in its PEM file) and
/// key as one PKCS#12 file, for a browser (the operator console) or a Windows or Java client.
/// OpenSSL 3's defaults: AES-256 and a SHA-256 MAC. A file holding a private key gets a
/// password: an empty one is refused.
pub fn export_p12(paths: &IssuedPaths, password: &str, out: &Path) -> Result<(), ImportError> {
    if password.is_empty() {
        return Err(ImportError::NoPassword(out.to_owned()));
    }
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| ImportError::Io {
            path: path.to_owned(),
            source,
        })
    };
    let mut certs = X509::stack_from_pem(&read(&paths.cert)?)?.into_iter();
    let leaf = certs.next().ok_or_else(|| ImportError::Missing {
        path: paths.cert.clone(),
        what: "certificate",
    })?;
    let key = openssl::pkey::PKey::private_key_from_pem(&read(&paths.key)?)?;
    let mut chain = Stack::new()?;
    for c in certs {
        chain.push(c)?;
    }
    let name = friendly_name(&leaf);
    let p12 = Pkcs12::builder()
        .name(&name)
        .pkey(&key)
        .cert(&leaf)
        .ca(chain)
        .build2(password)?;
    write_file(out, &p12.to_der()?, true)?;
    Ok(())
}

/// The friendly name a browser shows for the certificate: its common name.
fn friendly_name(cert: &X509) -> String {
    cert.subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .unwrap_or_else(|| "simpul member".into())
}
