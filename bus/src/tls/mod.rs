//! mTLS for the bus: the rustls server and client configurations and the listener.
//!
//! Every refusal (no certificate, unknown CA, revoked, expired, not a registry member) happens
//! in the TLS handshake, before any HTTP is parsed, so an unauthenticated client never reaches
//! a handler. The peer's identity is read once, from the verified certificate, in the
//! listener; see [`listener`].

pub mod crl;
mod listener;
pub mod ocsp;
pub mod rotation;
mod verifier;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use listener::{TlsConn, TlsListener};
pub use verifier::{IsMember, MemberVerifier};

use crate::identity::MemberId;

/// ALPN offered by both sides: h2 first, HTTP/1.1 for simple clients such as `curl --http1.1`.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: bad PEM: {source}", path.display())]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{}: no {what} found", path.display())]
    Missing { path: PathBuf, what: &'static str },
    #[error("{}: not a usable CA certificate: {source}", path.display())]
    BadCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("{}: {why}", path.display())]
    Crl { path: PathBuf, why: String },
    #[error("{}: unusable CRL: {source}", path.display())]
    BadCrl {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("OpenSSL: {0}")]
    OpenSsl(openssl::error::ErrorStack),
    #[error("OCSP client: {0}")]
    Http(String),
}

/// What the server needs to terminate mTLS.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Trusted CA certificates (PEM, any number per file) that issue member certificates.
    pub ca_files: Vec<PathBuf>,
    /// PEM CRL files, one per issuing CA, re-read when one changes. When set, they must hold
    /// a CRL from every CA that issues member certificates: a certificate whose revocation
    /// status is unknown is refused rather than assumed good.
    pub crl_files: Vec<PathBuf>,
    /// The server's certificate chain (leaf first) and key.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The instance name in member SPIFFE IDs (`spiffe://<instance>/...`).
    pub instance: String,
    /// How long a client may take to finish the TLS handshake before it is dropped.
    pub handshake_timeout: Duration,
    /// Open connections (including those still handshaking) before accepting pauses.
    pub max_connections: usize,
    /// How long past its `nextUpdate` a CRL is still trusted (`--crl-grace`, default 0).
    pub crl_grace: Duration,
    /// OCSP for member certificates (`[trust] ocsp`).
    pub ocsp: ocsp::OcspSettings,
}

/// The server's TLS configuration and the verifier inside it, which the server also asks
/// about open connections when the CRL changes, and `/readyz` about the CRL's freshness.
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub verifier: Arc<MemberVerifier>,
    /// The server certificate, which a reload replaces for new handshakes.
    pub cert: Arc<rotation::ServerCert>,
    /// The OCSP cache (none when `[trust] ocsp = "off"`), which the listener asks about each
    /// new connection and the server keeps fresh.
    pub ocsp: Option<Arc<ocsp::Ocsp>>,
}

/// The one crypto provider for the whole process, passed explicitly so nothing depends on a
/// process-wide default being installed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The server configuration: TLS 1.2/1.3, h2 + HTTP/1.1, client certificate required and
/// checked by [`MemberVerifier`] against the CA(s), the CRL and `is_member`.
///
/// Session resumption is off: a resumed session skips certificate verification, which would let
/// a certificate revoked (or expired) after the first handshake keep connecting.
pub fn server_config(s: &TlsSettings, is_member: IsMember) -> Result<ServerTls, TlsError> {
    let provider = provider();
    let roots = Arc::new(load_roots(&s.ca_files)?);
    let changes = Arc::new(tokio::sync::watch::Sender::new(0));
    let ocsp = ocsp::Ocsp::new(s.ocsp.clone(), &s.ca_files, changes.clone())?.map(Arc::new);
    let verifier = Arc::new(MemberVerifier::new(
        roots,
        verifier::Revocation {
            crl_files: s.crl_files.clone(),
            grace: s.crl_grace,
            ocsp: ocsp.clone(),
            changes,
        },
        s.instance.clone(),
        is_member,
        provider.clone(),
    )?);
    let cert = Arc::new(rotation::ServerCert::load(
        s.cert_file.clone(),
        s.key_file.clone(),
        provider.clone(),
    )?);
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier.clone())
        .with_cert_resolver(cert.clone());
    cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(ServerTls {
        config: Arc::new(cfg),
        verifier,
        cert,
        ocsp,
    })
}

/// A client configuration for members and tests: trusts `ca_pem`, presents `cert_pem` and
/// `key_pem`, offers h2 and HTTP/1.1 (reqwest leaves ALPN to a preconfigured config).
pub fn client_config(
    ca_pem: &Path,
    cert_pem: &Path,
    key_pem: &Path,
) -> Result<ClientConfig, TlsError> {
    let roots = load_roots(&[ca_pem.to_owned()])?;
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_client_auth_cert(load_certs(cert_pem)?, load_key(key_pem)?)?;
    cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    }
}

/// All certificates in a PEM file, in order (a chain file is leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(path))?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Missing {
            path: path.to_owned(),
            what: "private key",
        },
        e => pem_error(path)(e),
    })
}

fn load_roots(files: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for path in files {
        for cert in load_certs(path)? {
            roots.add(cert).map_err(|source| TlsError::BadCa {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(roots)
}

/// Every CRL in a PEM file (one per CA).
fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let pem = read(path)?;
    CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(path))
}

/// The member named by a certificate, used by the listener on the already verified leaf.
fn peer_member(instance: &str, conn: &rustls::ServerConnection) -> Option<MemberId> {
    let leaf = conn.peer_certificates()?.first()?;
    crate::identity::member_from_cert(instance, leaf).ok()
}

#[cfg(test)]
mod tests;
