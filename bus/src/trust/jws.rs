//! Compact JWS (RFC 7515) with ES256 or RS256, as receipts and audit checkpoints use them.
//!
//! Written here rather than taken from a JOSE crate because what we sign is unusual for them: a
//! detached payload (appendix F) of RFC 8785 canonical bytes, with `iat` among the protected
//! headers. The cryptography is aws-lc-rs; this file only frames it.

use std::collections::BTreeMap;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

/// Why a JWS does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("not a compact JWS (three base64url parts separated by dots)")]
    Malformed,
    #[error("unsupported algorithm {0:?} (ES256 and RS256 are supported)")]
    Algorithm(String),
    #[error("no key with kid {0:?} among the bus's receipt keys")]
    UnknownKey(String),
    #[error("the signature does not match the payload")]
    BadSignature,
    #[error("the payload is detached: give the event it was made over")]
    Detached,
}

/// The protected header of every JWS the bus makes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    pub alg: String,
    pub kid: String,
    /// When it was signed, in seconds since the epoch.
    pub iat: i64,
}

/// A private key that signs: the bus's own, or (in tests and tools) a member's.
pub enum SigningKey {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl SigningKey {
    /// From a DER private key: PKCS#8 (as rcgen and most CAs write it), SEC1 or PKCS#1.
    pub fn from_der(der: &[u8]) -> Option<SigningKey> {
        let ec = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        EcdsaKeyPair::from_pkcs8(ec, der)
            .or_else(|_| EcdsaKeyPair::from_private_key_der(ec, der))
            .map(SigningKey::Ec)
            .ok()
            .or_else(|| {
                RsaKeyPair::from_pkcs8(der)
                    .or_else(|_| RsaKeyPair::from_der(der))
                    .map(SigningKey::Rsa)
                    .ok()
            })
    }

    pub fn alg(&self) -> &'static str {
        match self {
            SigningKey::Ec(_) => "ES256",
            SigningKey::Rsa(_) => "RS256",
        }
    }

    /// The public key as a certificate's SPKI carries it (an EC point, or PKCS#1 for RSA).
    pub fn public_key(&self) -> &[u8] {
        match self {
            SigningKey::Ec(k) => k.public_key().as_ref(),
            SigningKey::Rsa(k) => k.public_key().as_ref(),
        }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        // Signing with a key that loaded cannot fail but for the system's RNG.
        match self {
            SigningKey::Ec(k) => k
                .sign(&rng, input)
                .map(|s| s.as_ref().to_vec())
                .expect("ECDSA signing"),
            SigningKey::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, input, &mut sig)
                    .expect("RSA signing");
                sig
            }
        }
    }

    /// A compact JWS over `payload`; with `detached`, the payload part is left empty.
    pub fn jws(&self, kid: &str, iat: i64, payload: &[u8], detached: bool) -> String {
        let header = Header {
            alg: self.alg().into(),
            kid: kid.into(),
            iat,
        };
        // A header of three strings and an integer always serialises.
        let header = B64.encode(serde_json::to_vec(&header).expect("header"));
        let payload = B64.encode(payload);
        let sig = B64.encode(self.sign(format!("{header}.{payload}").as_bytes()));
        if detached {
            format!("{header}..{sig}")
        } else {
            format!("{header}.{payload}.{sig}")
        }
    }
}

/// A public key that verifies, selected by `kid`.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    pub alg: String,
    /// As a certificate's SPKI carries it.
    pub public_key: Vec<u8>,
}

impl VerifyingKey {
    fn verify(&self, input: &[u8], sig: &[u8]) -> Result<(), JwsError> {
        let alg: &dyn signature::VerificationAlgorithm = match self.alg.as_str() {
            "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
            "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
            other => return Err(JwsError::Algorithm(other.into())),
        };
        UnparsedPublicKey::new(alg, &self.public_key)
            .verify(input, sig)
            .map_err(|_| JwsError::BadSignature)
    }
}

/// The parts of a compact JWS.
pub struct Parsed {
    pub header: Header,
    /// The attached payload, when there is one.
    pub payload: Option<Vec<u8>>,
    signing_input_header: String,
    sig: Vec<u8>,
}

pub fn parse(jws: &str) -> Result<Parsed, JwsError> {
    let mut parts = jws.trim().split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed);
    };
    let header_bytes = B64.decode(h).map_err(|_| JwsError::Malformed)?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| JwsError::Malformed)?;
    let payload = match p {
        "" => None,
        p => Some(B64.decode(p).map_err(|_| JwsError::Malformed)?),
    };
    Ok(Parsed {
        header,
        payload,
        signing_input_header: h.to_owned(),
        sig: B64.decode(s).map_err(|_| JwsError::Malformed)?,
    })
}

impl Parsed {
    /// Verifies over `payload` (the detached one), or the attached payload when `None`.
    pub fn verify(
        &self,
        keys: &BTreeMap<String, VerifyingKey>,
        payload: Option<&[u8]>,
    ) -> Result<(), JwsError> {
        let key = keys
            .get(&self.header.kid)
            .ok_or_else(|| JwsError::UnknownKey(self.header.kid.clone()))?;
        if key.alg != self.header.alg {
            return Err(JwsError::Algorithm(self.header.alg.clone()));
        }
        let payload = payload
            .or(self.payload.as_deref())
            .ok_or(JwsError::Detached)?;
        let input = format!("{}.{}", self.signing_input_header, B64.encode(payload));
        key.verify(input.as_bytes(), &self.sig)
    }
}
