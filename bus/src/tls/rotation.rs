//! The server certificate, replaced without a restart: rustls asks [`ServerCert`] for it on
//! every handshake, and a reload swaps it once the new certificate and key match.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{TlsError, load_certs, load_key};

#[derive(Debug)]
pub struct ServerCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCert {
    pub fn load(
        cert_file: PathBuf,
        key_file: PathBuf,
        provider: Arc<CryptoProvider>,
    ) -> Result<ServerCert, TlsError> {
        let current = RwLock::new(Arc::new(read(&cert_file, &key_file, &provider)?));
        Ok(ServerCert {
            cert_file,
            key_file,
            provider,
            current,
        })
    }

    /// Reads the files again; returns whether the certificate changed. A certificate and key
    /// that do not belong together (one file written, the other not yet) keep the old pair.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let next = read(&self.cert_file, &self.key_file, &self.provider)?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.cert == next.cert {
            return Ok(false);
        }
        *current = Arc::new(next);
        Ok(true)
    }

    /// The files it is read from, to watch.
    pub fn files(&self) -> [&PathBuf; 2] {
        [&self.cert_file, &self.key_file]
    }
}

fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let ck = CertifiedKey::from_der(load_certs(cert)?, load_key(key)?, provider)?;
    Ok(ck)
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}
