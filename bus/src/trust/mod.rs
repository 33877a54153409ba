//! What makes an exchange provable afterwards: the bus's signing key (receipts and audit
//! checkpoints), the keys that verify them, and the canonical bytes both are made over.

pub mod jws;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

pub use jws::{JwsError, SigningKey, VerifyingKey};

/// Where the bus keeps every certificate it has signed with, named by `kid`, so receipts and
/// checkpoints made before a rotation stay verifiable.
pub const KEY_ARCHIVE: &str = "receipt-keys";

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("{0}")]
    Keys(String),
}

fn file_error(path: &Path, why: impl std::fmt::Display) -> TrustError {
    TrustError::File {
        path: path.to_owned(),
        why: why.to_string(),
    }
}

/// RFC 8785 (JCS) canonical bytes of a JSON value: what receipts sign and audit digests hash.
pub fn canonical(value: &Value) -> Vec<u8> {
    // Serialising a `Value` cannot fail: its keys are strings and its numbers finite.
    serde_json_canonicalizer::to_vec(value).expect("canonical JSON")
}

/// [`canonical`] as a string.
pub fn canonical_string(value: &Value) -> String {
    serde_json_canonicalizer::to_string(value).expect("canonical JSON")
}

/// SHA-256 of the canonical form of a JSON text; `None` when it is not JSON.
pub fn digest_json(text: &str) -> Option<[u8; 32]> {
    let v: Value = serde_json::from_str(text).ok()?;
    Some(Sha256::digest(canonical(&v)).into())
}

/// `kid` of a certificate: its SHA-256 thumbprint (`x5t#S256`), base64url.
pub fn kid_of(cert_der: &[u8]) -> String {
    B64.encode(Sha256::digest(cert_der))
}

/// The bus's signing key and the certificate that names it.
pub struct Signer {
    pub key: SigningKey,
    pub kid: String,
    pub cert_der: Vec<u8>,
}

impl Signer {
    /// The server certificate (first in `cert`) and its key.
    pub fn load(cert: &Path, key: &Path) -> Result<Signer, TrustError> {
        let cert_der = crate::tls::load_certs(cert)
            .map_err(|e| file_error(cert, e))?
            .remove(0)
            .to_vec();
        let pem = std::fs::read(key).map_err(|e| file_error(key, e))?;
        use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
        let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| file_error(key, e))?;
        let key_pair = SigningKey::from_der(der.secret_der())
            .ok_or_else(|| file_error(key, "not an EC P-256 or RSA private key"))?;
        let (_, cert_key) = verifying_key(&cert_der).map_err(|e| file_error(cert, e))?;
        if cert_key.public_key != key_pair.public_key() {
            return Err(file_error(key, "does not belong to the certificate"));
        }
        Ok(Signer {
            kid: kid_of(&cert_der),
            key: key_pair,
            cert_der,
        })
    }

    /// A compact JWS over `payload`, signed now.
    pub fn sign(&self, payload: &[u8], detached: bool) -> String {
        let iat = time::OffsetDateTime::now_utc().unix_timestamp();
        self.key.jws(&self.kid, iat, payload, detached)
    }

    /// Keeps this certificate in `certs/receipt-keys/<kid>.pem`, where [`KeySet::archive`]
    /// finds it after the next rotation.
    pub fn archive(&self, certs: &Path) -> Result<(), TrustError> {
        let dir = certs.join(KEY_ARCHIVE);
        let path = dir.join(format!("{}.pem", self.kid));
        if path.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&dir).map_err(|e| file_error(&dir, e))?;
        let pem = pem_cert(&self.cert_der);
        std::fs::write(&path, pem).map_err(|e| file_error(&path, e))
    }
}

/// The bus's current signer, replaced in place when its certificate and key rotate: receipts
/// and checkpoints signed from then on name the new `kid`, and earlier ones stay verifiable by
/// theirs.
pub struct SignerCell {
    current: std::sync::RwLock<Arc<Signer>>,
    /// The JWK set of every key receipts may name: the current one and those before it.
    published: std::sync::RwLock<Arc<Value>>,
}

impl SignerCell {
    /// `s` signs; `keys` (which should hold it) is what `GET /v1/receipts/keys` publishes.
    pub fn new(s: Signer, keys: &KeySet) -> SignerCell {
        let mut keys = keys.clone();
        let _ = keys.add_cert(&s.cert_der);
        SignerCell {
            current: std::sync::RwLock::new(Arc::new(s)),
            published: std::sync::RwLock::new(Arc::new(keys.jwks())),
        }
    }

    pub fn get(&self) -> Arc<Signer> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The JWK set to publish.
    pub fn jwks(&self) -> Arc<Value> {
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Signs with `s` from now on, publishing it beside the keys published so far.
    pub fn replace(&self, s: Signer) {
        let mut keys = KeySet::from_jwks(&self.jwks().to_string()).unwrap_or_default();
        let _ = keys.add_cert(&s.cert_der);
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys.jwks());
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
    }

    /// A receipt: a compact JWS with a detached payload over `canonical`, signed now.
    pub fn receipt(&self, canonical: &[u8]) -> String {
        self.get().sign(canonical, true)
    }
}

fn pem_cert(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The algorithm and public key a certificate carries.
fn verifying_key(cert_der: &[u8]) -> Result<(Value, VerifyingKey), String> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| e.to_string())?;
    let spki = cert.public_key();
    let bytes = spki.subject_public_key.data.to_vec();
    let (jwk, alg) = match spki.parsed().map_err(|e| e.to_string())? {
        PublicKey::EC(point) if point.key_size() == 256 && bytes.len() == 65 => (
            json!({"kty": "EC", "crv": "P-256",
                   "x": B64.encode(&bytes[1..33]), "y": B64.encode(&bytes[33..65])}),
            "ES256",
        ),
        PublicKey::RSA(rsa) => (
            json!({"kty": "RSA", "n": B64.encode(strip(rsa.modulus)),
                   "e": B64.encode(strip(rsa.exponent))}),
            "RS256",
        ),
        _ => return Err("the certificate's key is neither EC P-256 nor RSA".into()),
    };
    Ok((
        jwk,
        VerifyingKey {
            alg: alg.into(),
            public_key: bytes,
        },
    ))
}

/// An unsigned big-endian integer without DER's leading zero.
fn strip(b: &[u8]) -> &[u8] {
    let zeros = b.iter().take_while(|x| **x == 0).count();
    &b[zeros.min(b.len().saturating_sub(1))..]
}

/// The keys that verify the bus's receipts and checkpoints, by `kid`, with their certificates.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: BTreeMap<String, VerifyingKey>,
    certs: BTreeMap<String, Vec<u8>>,
}

impl KeySet {
    pub fn add_cert(&mut self, der: &[u8]) -> Result<(), String> {
        let (_, key) = verifying_key(der)?;
        let kid = kid_of(der);
        self.keys.insert(kid.clone(), key);
        self.certs.insert(kid, der.to_vec());
        Ok(())
    }

    /// Every certificate in the PEM files given.
    pub fn from_pem_files(files: &[PathBuf]) -> Result<KeySet, TrustError> {
        let mut set = KeySet::default();
        for f in files {
            for der in crate::tls::load_certs(f).map_err(|e| file_error(f, e))? {
                set.add_cert(&der).map_err(|e| file_error(f, e))?;
            }
        }
        Ok(set)
    }

    /// The bus's current certificate and every one archived in `certs/receipt-keys/`.
    pub fn archive(certs: &Path) -> Result<KeySet, TrustError> {
        let mut files = vec![certs.join(crate::pki::SERVER_CERT)];
        if let Ok(dir) = std::fs::read_dir(certs.join(KEY_ARCHIVE)) {
            files.extend(dir.flatten().map(|e| e.path()));
        }
        files.retain(|f| f.exists());
        Self::from_pem_files(&files)
    }

    /// A JWK set (RFC 7517) as `GET /v1/receipts/keys` serves it, or as saved from there.
    pub fn from_jwks(text: &str) -> Result<KeySet, TrustError> {
        let v: Value = serde_json::from_str(text).map_err(|e| TrustError::Keys(e.to_string()))?;
        let mut set = KeySet::default();
        for k in v["keys"].as_array().into_iter().flatten() {
            let der = k["x5c"][0]
                .as_str()
                .and_then(|c| STANDARD.decode(c).ok())
                .ok_or_else(|| TrustError::Keys("a key without an x5c certificate".into()))?;
            set.add_cert(&der).map_err(TrustError::Keys)?;
        }
        Ok(set)
    }

    /// Reads `path` as a JWK set, or else as PEM certificates.
    pub fn load(path: &Path) -> Result<KeySet, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
        if text.trim_start().starts_with('{') {
            Self::from_jwks(&text)
        } else {
            Self::from_pem_files(&[path.to_owned()])
        }
    }

    /// The JWK set, each key with its certificate (`x5c`) and thumbprint.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .certs
            .iter()
            .filter_map(|(kid, der)| {
                let (mut jwk, key) = verifying_key(der).ok()?;
                jwk["kid"] = kid.clone().into();
                jwk["alg"] = key.alg.into();
                jwk["use"] = "sig".into();
                jwk["x5c"] = json!([STANDARD.encode(der)]);
                jwk["x5t#S256"] = kid.clone().into();
                Some(jwk)
            })
            .collect();
        json!({ "keys": keys })
    }
}
