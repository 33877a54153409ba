//! The client certificate verifier: webpki chain + CRL checks, then the member check.
//!
//! rustls' `WebPkiClientVerifier` is immutable once built, so to honour a CRL rewritten by
//! `simpul certs revoke` without a restart this wrapper rebuilds it when the CRL file changes.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};

use super::ocsp::{Ocsp, OcspPolicy};
use super::{TlsError, crl};
use crate::identity::{MemberId, member_from_cert};

/// Decides whether a verified member may connect at all (normally: is it in the registry).
pub type IsMember = Arc<dyn Fn(&MemberId) -> bool + Send + Sync>;

/// Stat the CRL at most this often: cheap enough for every handshake, quick enough that a
/// revocation takes effect within about a second.
const CRL_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Refused because the registry does not know this member (a valid certificate is not enough).
#[derive(Debug, thiserror::Error)]
#[error("{0} is not a member of this instance")]
struct NotAMember(MemberId);

/// Verifies client certificates for the bus; see the module docs.
pub struct MemberVerifier {
    instance: String,
    is_member: IsMember,
    roots: Arc<RootCertStore>,
    hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
    /// The CRL files, one per issuing CA (or several CRLs in one file).
    crl_files: Vec<PathBuf>,
    /// When each issuer's last refusal for unknown revocation status was logged at WARN: once
    /// a minute per issuer, so a member retrying in a loop does not flood the log.
    warned: Mutex<std::collections::HashMap<String, Instant>>,
    /// How long past its `nextUpdate` a CRL is still trusted (`--crl-grace`).
    grace: Duration,
    ocsp: Option<Arc<Ocsp>>,
    state: Mutex<State>,
    /// Bumped on every CRL reload and whenever OCSP turns against a certificate, so open
    /// connections can have their certificate checked again (see `server::http`).
    reloaded: Arc<watch::Sender<u64>>,
}

/// Where revocation is learnt: CRL files, OCSP, or both.
pub struct Revocation {
    /// The CRL files, one per issuing CA.
    pub crl_files: Vec<PathBuf>,
    /// How long past its `nextUpdate` a CRL is still trusted.
    pub grace: Duration,
    pub ocsp: Option<Arc<Ocsp>>,
    /// Told about CRL reloads here; OCSP tells the same sender.
    pub changes: Arc<watch::Sender<u64>>,
}

struct State {
    inner: Arc<dyn ClientCertVerifier>,
    /// (mtime, length) of each CRL file the inner verifier was built from.
    stamp: Vec<(SystemTime, u64)>,
    /// The earliest `nextUpdate` of the CRLs in force: past it (and the grace), they are
    /// stale and nobody is let in on them.
    next_update: Option<SystemTime>,
    checked: Instant,
}

/// Refused because the CRL in force is past its `nextUpdate`: revocation status unknown.
#[derive(Debug, thiserror::Error)]
#[error("the CRL is stale: {0}")]
struct StaleCrl(String);

impl fmt::Debug for MemberVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberVerifier")
            .field("instance", &self.instance)
            .field("crl_files", &self.crl_files)
            .finish_non_exhaustive()
    }
}

impl MemberVerifier {
    /// Fails if a CRL file is missing, unreadable or not a CRL RFC 5280 allows: starting
    /// without the revocations it holds would let revoked members in.
    pub fn new(
        roots: Arc<RootCertStore>,
        revocation: Revocation,
        instance: String,
        is_member: IsMember,
        provider: Arc<CryptoProvider>,
    ) -> Result<MemberVerifier, TlsError> {
        let Revocation {
            crl_files,
            grace,
            ocsp,
            changes,
        } = revocation;
        let hints = roots.subjects();
        let stamp = crl::stamps(&crl_files)?;
        let next_update = crl::next_update(&crl_files)?;
        let inner = build(&roots, &provider, &crl_files, ocsp_decides(&ocsp))?;
        Ok(MemberVerifier {
            instance,
            is_member,
            roots,
            hints,
            provider,
            crl_files,
            warned: Mutex::default(),
            grace,
            ocsp,
            state: Mutex::new(State {
                inner,
                stamp,
                next_update,
                checked: Instant::now(),
            }),
            reloaded: changes,
        })
    }

    /// A receiver that changes whenever the CRL is reloaded or OCSP turns against someone.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.reloaded.subscribe()
    }

    /// Whether a connection's certificate chain (leaf first) would still be let in now: not
    /// expired, not revoked by the CRL in force or by OCSP, still a member.
    pub fn still_valid(&self, chain: &[rustls::pki_types::CertificateDer<'static>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        self.check(leaf, intermediates, UnixTime::now()).is_ok()
            && self.ocsp.as_ref().is_none_or(|o| o.still_admitted(leaf))
    }

    /// Chain, CRL and membership; not the CRL's freshness, which only stops new handshakes
    /// (so connections already open can still read `/readyz` and learn why).
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)?;
        let member = member_from_cert(&self.instance, end_entity).map_err(refuse)?;
        if !(self.is_member)(&member) {
            return Err(refuse(NotAMember(member)));
        }
        if let Some(why) = self.ocsp.as_ref().and_then(|o| o.known_revoked(end_entity)) {
            tracing::info!(%member, %why, "refused: OCSP says the certificate is revoked");
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(())
    }

    /// `Err` with the reason while the CRL in force is past its `nextUpdate` and the grace.
    pub fn crl_health(&self) -> Result<(), String> {
        let next = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_update;
        match next {
            Some(t) if SystemTime::now() > t + self.grace => {
                let files: Vec<String> = self
                    .crl_files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                let since = time::OffsetDateTime::from(t)
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                Err(format!(
                    "CRL {} is past its nextUpdate ({since}); refresh it (`simpul certs \
                     crl-refresh` for the development CA)",
                    files.join(", ")
                ))
            }
            _ => Ok(()),
        }
    }

    /// Re-reads the CRLs if a file changed since the last look; true when they were reloaded.
    pub fn refresh(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.checked = Instant::now();
        if self.crl_files.is_empty() {
            return false;
        }
        match crl::stamps(&self.crl_files) {
            Ok(now) if now != st.stamp => {
                match build(
                    &self.roots,
                    &self.provider,
                    &self.crl_files,
                    ocsp_decides(&self.ocsp),
                )
                .and_then(|v| Ok((v, crl::next_update(&self.crl_files)?)))
                {
                    Ok((v, next)) => {
                        tracing::info!(crl = ?self.crl_files, "CRL changed; reloaded");
                        st.inner = v;
                        st.stamp = now;
                        st.next_update = next;
                        drop(st);
                        self.reloaded.send_modify(|n| *n += 1);
                        return true;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "CRL changed but could not be loaded; keeping the previous one")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot stat a CRL; keeping the previous ones")
            }
        }
        false
    }

    /// The webpki verifier to use now, rebuilt first if the CRL file changed.
    ///
    /// A CRL that fails to load (say, an operator's half-edited file) keeps the previous one
    /// in force and is retried on the next check, rather than taking the whole bus down.
    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        let due = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.checked.elapsed() >= CRL_CHECK_INTERVAL
        };
        if due {
            self.refresh();
        }
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .inner
            .clone()
    }
}

/// Under `ocsp = "require"` every certificate needs a current OCSP answer anyway, so an
/// issuer that no CRL covers is left to OCSP instead of being refused by webpki.
fn ocsp_decides(ocsp: &Option<Arc<Ocsp>>) -> bool {
    ocsp.as_ref()
        .is_some_and(|o| o.policy() == OcspPolicy::Require)
}

fn build(
    roots: &Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
    crl_files: &[PathBuf],
    ocsp_decides: bool,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut b = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
    if !crl_files.is_empty() {
        let mut crls = Vec::new();
        for path in crl_files {
            crls.extend(super::crl::load_checked(path)?);
        }
        // Only the leaf: a member's certificate is refused unless a CRL of its issuer is
        // given (checking intermediates too would need every CA's CRL up to the root).
        b = b.with_crls(crls).only_check_end_entity_revocation();
        if ocsp_decides {
            b = b.allow_unknown_revocation_status();
        }
    }
    b.build().map_err(|source| match crl_files {
        [] => TlsError::Verifier(source),
        files => TlsError::BadCrl {
            path: files[0].clone(),
            source,
        },
    })
}

impl MemberVerifier {
    /// Failing closed on a certificate whose issuer no CRL covers is right, but the operator
    /// must learn why: said at WARN, naming the issuer and what to configure.
    fn explain(&self, leaf: &CertificateDer<'_>, e: &rustls::Error) {
        if !matches!(
            e,
            rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus)
        ) {
            return;
        }
        let issuer = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map(|(_, c)| c.issuer().to_string())
            .unwrap_or_else(|_| "?".into());
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned
            .get(&issuer)
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        warned.insert(issuer.clone(), Instant::now());
        let member = member_from_cert(&self.instance, leaf)
            .map(|m| m.to_string())
            .unwrap_or_else(|_| "?".into());
        tracing::warn!(
            %member,
            %issuer,
            "refused: revocation status unknown, no configured CRL is issued by {issuer}; add \
             that CA's CRL to [trust] crl (one file per issuing CA)"
        );
    }
}

fn refuse(e: impl std::error::Error + Send + Sync + 'static) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

impl ClientCertVerifier for MemberVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now)
            .inspect_err(|e| self.explain(end_entity, e))?;
        self.crl_health().map_err(|why| refuse(StaleCrl(why)))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
