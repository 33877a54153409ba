//! CRLs as an operator configures them: one file per issuing CA, each checked for what RFC 5280
//! requires before it is used, and the configured CAs that no CRL covers named at start.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateRevocationListDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::TlsError;

/// The CRLs in `path`, each of which parses and carries a CRL Number.
///
/// webpki refuses a CRL without one with a bare "ParseError"; RFC 5280 (section 5.2.3) makes
/// the extension mandatory for conforming issuers, so the operator is told that, and which file.
pub fn load_checked(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = super::load_crls(path)?;
    if crls.is_empty() {
        return Err(TlsError::Missing {
            path: path.to_owned(),
            what: "CRL",
        });
    }
    for der in &crls {
        let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| TlsError::Crl {
            path: path.to_owned(),
            why: format!("not a readable X.509 CRL ({e})"),
        })?;
        if crl.crl_number().is_none() {
            return Err(TlsError::Crl {
                path: path.to_owned(),
                why: format!(
                    "the CRL issued by {} has no CRL Number extension, which RFC 5280 \
                     (section 5.2.3) requires; ask its CA for a conforming CRL",
                    crl.issuer()
                ),
            });
        }
    }
    Ok(crls)
}

/// Every CA certificate in `ca_files` that no CRL in `crl_files` is issued by, as
/// "subject (file)": member certificates it issues are refused for unknown revocation status.
pub fn uncovered(ca_files: &[PathBuf], crl_files: &[PathBuf]) -> Result<Vec<String>, TlsError> {
    let mut issuers: Vec<Vec<u8>> = Vec::new();
    for path in crl_files {
        for der in super::load_crls(path)? {
            if let Ok((_, crl)) = x509_parser::parse_x509_crl(der.as_ref()) {
                issuers.push(crl.issuer().as_raw().to_vec());
            }
        }
    }
    let mut out = Vec::new();
    for path in ca_files {
        for der in super::load_certs(path)? {
            let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
                continue; // the root store refuses it, with its reason
            };
            if !issuers.iter().any(|i| i == cert.subject().as_raw()) {
                out.push(format!("{} ({})", cert.subject(), path.display()));
            }
        }
    }
    Ok(out)
}

/// The earliest `nextUpdate` among the CRLs in `files` (`None` if none has one).
pub(super) fn next_update(files: &[PathBuf]) -> Result<Option<SystemTime>, TlsError> {
    let mut earliest: Option<SystemTime> = None;
    for path in files {
        for der in super::load_crls(path)? {
            let Ok((_, crl)) = x509_parser::parse_x509_crl(der.as_ref()) else {
                continue; // `build` refuses it, with its reason
            };
            if let Some(t) = crl.next_update() {
                let t = SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64);
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        }
    }
    Ok(earliest)
}

pub(super) fn stamps(files: &[PathBuf]) -> Result<Vec<(SystemTime, u64)>, TlsError> {
    files
        .iter()
        .map(|path| {
            let m = std::fs::metadata(path).and_then(|m| Ok((m.modified()?, m.len())));
            m.map_err(|source| TlsError::Read {
                path: path.clone(),
                source,
            })
        })
        .collect()
}
