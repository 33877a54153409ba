//! OCSP for member certificates, surviving a responder outage.
//!
//! A CRL says who was revoked up to its last issue; OCSP asks the CA about one certificate now.
//! X-Road relies on it, and national CAs such as BSrE publish responders in their certificates'
//! AIA. Asking on every handshake would put the responder on the hot path and make its outage
//! the bus's, so answers are cached:
//! - A verified answer is used until its `nextUpdate`. Each certificate seen is asked again
//!   every `refresh` in the background, so a revocation is learnt without anyone reconnecting,
//!   and a good answer keeps admitting while the responder is down.
//! - A certificate known to be revoked fails the handshake (`certificate_revoked`), and open
//!   connections presenting it are closed within seconds ([`Ocsp::changes`]).
//! - A certificate seen for the first time is asked about once its handshake is done
//!   ([`Ocsp::admit`], off the TLS path). Without a good, current answer the policy decides:
//!   `require` refuses it with a problem+json that says why; `prefer` lets it in (WARN).
//!
//! Trouble with a responder shows in `/readyz` as a degradation ([`Ocsp::health`]).

mod fetch;
mod refresh;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use openssl::x509::X509;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use tokio::sync::watch;

pub use fetch::{Answer, FetchError, Status};

use super::TlsError;
use crate::identity::MemberId;

/// How long an entry for a certificate nobody has presented lives on.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How soon a failed ask is tried again (before the next `refresh`).
const RETRY: Duration = Duration::from_secs(5);

/// `[trust] ocsp` in the registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OcspPolicy {
    /// A certificate without a good, current answer is refused.
    Require,
    /// Revoked is refused; no answer (responder down, none known) is let in, at WARN.
    #[default]
    Prefer,
    /// OCSP is not asked.
    Off,
}

#[derive(Debug, Clone)]
pub struct OcspSettings {
    pub policy: OcspPolicy,
    /// Ask this responder, whatever a certificate's AIA says (`[trust] ocsp_responder`).
    pub responder: Option<String>,
    /// How often a certificate's status is asked again (`[trust] ocsp_refresh`, seconds).
    pub refresh: Duration,
    /// How long one ask may take.
    pub timeout: Duration,
}

impl Default for OcspSettings {
    fn default() -> Self {
        OcspSettings {
            policy: OcspPolicy::default(),
            responder: None,
            refresh: Duration::from_secs(300),
            timeout: Duration::from_secs(3),
        }
    }
}

/// Why a member with an otherwise valid certificate is not served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OcspRefusal {
    #[error("the certificate of {member} is revoked: the CA's OCSP responder says {why}")]
    Revoked { member: MemberId, why: String },
    #[error(
        "the revocation status of {member}'s certificate is unknown ({why}), and this bus \
         requires a current OCSP answer"
    )]
    Unknown { member: MemberId, why: String },
}

struct Entry {
    member: MemberId,
    leaf: X509,
    issuer: X509,
    untrusted: Vec<X509>,
    /// The responder to ask (`None`: none is known for this certificate).
    url: Option<String>,
    answer: Option<Answer>,
    /// When the last ask ended, and how it failed if it did.
    asked: Option<(Instant, Option<String>)>,
    seen: Instant,
}

/// The verdict on one entry now.
fn verdict(e: &Entry, policy: OcspPolicy, refresh: Duration) -> Result<(), OcspRefusal> {
    let now = SystemTime::now();
    let why = match &e.answer {
        Some(Answer {
            status: Status::Revoked(why),
            ..
        }) => {
            return Err(OcspRefusal::Revoked {
                member: e.member.clone(),
                why: why.clone(),
            });
        }
        Some(a) if a.status == Status::Good && current(a, refresh, now) => return Ok(()),
        Some(a) if a.status == Status::Unknown => "the responder does not know it".to_owned(),
        Some(_) => "the last good answer has passed its nextUpdate".to_owned(),
        None => match (&e.url, &e.asked) {
            (None, _) => "no OCSP responder is known for it: no AIA in the certificate and \
                          no [trust] ocsp_responder"
                .to_owned(),
            (Some(_), Some((_, Some(err)))) => err.clone(),
            (Some(_), _) => "not asked yet".to_owned(),
        },
    };
    by_policy(policy, &e.member, why)
}

/// Without a good, current answer for `member`'s certificate: refused only under `require`.
fn by_policy(policy: OcspPolicy, member: &MemberId, why: String) -> Result<(), OcspRefusal> {
    match policy {
        OcspPolicy::Require => Err(OcspRefusal::Unknown {
            member: member.clone(),
            why,
        }),
        _ => Ok(()),
    }
}

/// A good answer without `nextUpdate` is current for one refresh interval.
fn current(a: &Answer, refresh: Duration, now: SystemTime) -> bool {
    match a.next_update {
        Some(t) => now < t,
        None => now < a.this_update + refresh,
    }
}

type Key = [u8; 32];

fn key(leaf: &[u8]) -> Key {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf);
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// The OCSP cache and the asking; see the module docs.
pub struct Ocsp {
    settings: OcspSettings,
    cas: Vec<X509>,
    trusted: X509Store,
    http: reqwest::Client,
    entries: Mutex<HashMap<Key, Entry>>,
    /// One ask at a time per certificate, so a member opening 50 connections asks once.
    asking: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    /// Bumped when a verdict turns to a refusal, so open connections are checked again.
    changes: Arc<watch::Sender<u64>>,
}

impl Ocsp {
    /// `None` when the policy is `off`.
    pub fn new(
        settings: OcspSettings,
        ca_files: &[PathBuf],
        changes: Arc<watch::Sender<u64>>,
    ) -> Result<Option<Ocsp>, TlsError> {
        if settings.policy == OcspPolicy::Off {
            return Ok(None);
        }
        let mut cas = Vec::new();
        let mut store = X509StoreBuilder::new().map_err(TlsError::OpenSsl)?;
        for path in ca_files {
            let pem = super::read(path)?;
            let certs = X509::stack_from_pem(&pem).map_err(|e| TlsError::Crl {
                path: path.clone(),
                why: format!("not readable by OpenSSL for OCSP ({e})"),
            })?;
            for c in certs {
                store.add_cert(c.clone()).map_err(TlsError::OpenSsl)?;
                cas.push(c);
            }
        }
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| TlsError::Http(e.to_string()))?;
        Ok(Some(Ocsp {
            settings,
            cas,
            trusted: store.build(),
            http,
            entries: Mutex::default(),
            asking: Mutex::default(),
            changes,
        }))
    }

    pub fn policy(&self) -> OcspPolicy {
        self.settings.policy
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The responder's reason when `leaf` is known to be revoked: the handshake fails on it.
    pub fn known_revoked(&self, leaf: &[u8]) -> Option<String> {
        match &self.entries().get(&key(leaf))?.answer {
            Some(Answer {
                status: Status::Revoked(why),
                ..
            }) => Some(why.clone()),
            _ => None,
        }
    }

    /// Whether a connection presenting `leaf` may stay open (no entry: nothing against it).
    pub fn still_admitted(&self, leaf: &[u8]) -> bool {
        let s = &self.settings;
        self.entries()
            .get(&key(leaf))
            .is_none_or(|e| verdict(e, s.policy, s.refresh).is_ok())
    }

    /// Decides on a verified connection: from the cache when it has a current answer,
    /// otherwise after asking the responder (at most `timeout`).
    pub async fn admit(
        &self,
        member: &MemberId,
        chain: &[CertificateDer<'_>],
    ) -> Result<(), OcspRefusal> {
        let Some(leaf) = chain.first() else {
            return Ok(());
        };
        let k = key(leaf);
        if let Some(done) = self.decided(&k) {
            return done;
        }
        let lock = {
            let mut asking = self.asking.lock().unwrap_or_else(|p| p.into_inner());
            asking.entry(k).or_default().clone()
        };
        let done = {
            let _one = lock.lock().await;
            self.first_ask(&k, member, chain).await
        };
        self.asking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&k);
        done
    }

    /// The first ask about a certificate, unless another connection's ask settled it while
    /// this one waited for the lock.
    async fn first_ask(
        &self,
        k: &Key,
        member: &MemberId,
        chain: &[CertificateDer<'_>],
    ) -> Result<(), OcspRefusal> {
        if let Some(done) = self.decided(k) {
            return done;
        }
        if !self.entries().contains_key(k) {
            match self.entry(member, chain) {
                Ok(e) => {
                    self.entries().insert(*k, e);
                }
                Err(why) => return by_policy(self.settings.policy, member, why),
            }
        }
        self.ask(k).await;
        let s = &self.settings;
        self.entries()
            .get(k)
            .map_or(Ok(()), |e| verdict(e, s.policy, s.refresh))
    }

    /// The verdict from the cache for a certificate already asked about (or with nobody to
    /// ask). Only a certificate's first connection waits on the responder: after that the
    /// background refresh keeps asking, so an outage never adds its timeout to every connection.
    fn decided(&self, k: &Key) -> Option<Result<(), OcspRefusal>> {
        let mut entries = self.entries();
        let e = entries.get_mut(k)?;
        e.seen = Instant::now();
        let settled = e.url.is_none() || e.asked.is_some();
        settled.then(|| verdict(e, self.settings.policy, self.settings.refresh))
    }

    /// A new entry for a chain the verifier accepted: its issuer among the presented
    /// intermediates and the trusted CAs, and its responder.
    fn entry(&self, member: &MemberId, chain: &[CertificateDer<'_>]) -> Result<Entry, String> {
        let parse = |c: &CertificateDer<'_>| X509::from_der(c.as_ref()).map_err(|e| e.to_string());
        let leaf = parse(&chain[0])?;
        let untrusted = chain[1..]
            .iter()
            .map(parse)
            .collect::<Result<Vec<_>, _>>()?;
        let issuer = untrusted
            .iter()
            .chain(&self.cas)
            .find(|c| c.issued(&leaf) == openssl::x509::X509VerifyResult::OK)
            .cloned()
            .ok_or("its issuer is not among the presented or trusted certificates")?;
        let url = self.settings.responder.clone().or_else(|| {
            let aia = leaf.ocsp_responders().ok()?;
            let url = aia.iter().find(|u| u.starts_with("http"))?;
            Some(url.to_string())
        });
        Ok(Entry {
            member: member.clone(),
            leaf,
            issuer,
            untrusted,
            url,
            answer: None,
            asked: None,
            seen: Instant::now(),
        })
    }

    /// Asks about one entry and records the outcome.
    async fn ask(&self, k: &Key) {
        let s = &self.settings;
        let (url, leaf, issuer, untrusted) = {
            let entries = self.entries();
            let Some(e) = entries.get(k) else {
                return;
            };
            let Some(url) = e.url.clone() else {
                return;
            };
            (url, e.leaf.clone(), e.issuer.clone(), e.untrusted.clone())
        };
        let subject = fetch::Subject {
            leaf: &leaf,
            issuer: &issuer,
            untrusted: &untrusted,
        };
        let got = fetch::fetch(&self.http, &url, &subject, &self.trusted, s.timeout).await;
        let mut entries = self.entries();
        let Some(e) = entries.get_mut(k) else {
            return;
        };
        match got {
            Ok(a) => {
                match &a.status {
                    Status::Revoked(why) => {
                        tracing::warn!(member = %e.member, %why, "OCSP: certificate revoked")
                    }
                    Status::Unknown => tracing::warn!(
                        member = %e.member,
                        "OCSP: the responder does not know this certificate"
                    ),
                    Status::Good => tracing::debug!(member = %e.member, "OCSP: good"),
                }
                e.answer = Some(a);
                e.asked = Some((Instant::now(), None));
            }
            Err(err) => {
                tracing::warn!(
                    member = %e.member,
                    error = %err,
                    "OCSP responder not answering; a cached answer stands until its nextUpdate"
                );
                e.asked = Some((Instant::now(), Some(err.to_string())));
            }
        }
    }
}
