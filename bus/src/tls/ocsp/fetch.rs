//! One OCSP exchange (RFC 6960) through openssl, which rustls has no answer for: build the
//! request, POST it, and verify the signed answer against the trusted CAs before believing it.

use std::time::{Duration, SystemTime};

use openssl::asn1::Asn1GeneralizedTimeRef;
use openssl::hash::MessageDigest;
use openssl::ocsp::{
    OcspCertId, OcspCertStatus, OcspFlag, OcspRequest, OcspResponse, OcspResponseStatus,
};
use openssl::stack::Stack;
use openssl::x509::X509;
use openssl::x509::store::X509Store;

/// Clock skew tolerated on `thisUpdate` and `nextUpdate` (OpenSSL's own `ocsp` uses 5 min).
const SKEW_SECS: u32 = 300;

/// An answer larger than this is not an OCSP answer for one certificate.
const MAX_ANSWER: usize = 64 * 1024;

/// What a responder said about one certificate, once its signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Good,
    /// With the reason and time, as the responder gave them.
    Revoked(String),
    /// The responder does not know the certificate.
    Unknown,
}

/// A verified answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: Status,
    pub this_update: SystemTime,
    /// Past this the answer is no longer evidence (`None`: the responder always has newer).
    pub next_update: Option<SystemTime>,
}

/// Why no answer could be had; said in `/readyz` and the log.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {why}")]
    Http { url: String, why: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: answer larger than {MAX_ANSWER} bytes")]
    TooLarge { url: String },
    #[error("{url}: responder said {0:?}", .status)]
    Refused { url: String, status: i32 },
    #[error("{url}: answer not usable: {why}")]
    Invalid { url: String, why: String },
    #[error("OCSP request: {0}")]
    Request(openssl::error::ErrorStack),
}

/// The certificate to ask about, with what it takes to ask and to check the answer.
pub struct Subject<'a> {
    pub leaf: &'a X509,
    pub issuer: &'a X509,
    /// Presented intermediates, among which a delegated responder's issuer may be.
    pub untrusted: &'a [X509],
}

/// Asks `url` about `subject` and verifies the answer against `trusted`.
pub async fn fetch(
    http: &reqwest::Client,
    url: &str,
    subject: &Subject<'_>,
    trusted: &X509Store,
    timeout: Duration,
) -> Result<Answer, FetchError> {
    let id = || OcspCertId::from_cert(MessageDigest::sha1(), subject.leaf, subject.issuer);
    let mut req = OcspRequest::new().map_err(FetchError::Request)?;
    req.add_id(id().map_err(FetchError::Request)?)
        .map_err(FetchError::Request)?;
    let body = req.to_der().map_err(FetchError::Request)?;
    let der = post(http, url, body, timeout).await?;
    let invalid = |why: String| FetchError::Invalid {
        url: url.to_owned(),
        why,
    };
    let resp = OcspResponse::from_der(&der).map_err(|e| invalid(e.to_string()))?;
    if resp.status() != OcspResponseStatus::SUCCESSFUL {
        return Err(FetchError::Refused {
            url: url.to_owned(),
            status: resp.status().as_raw(),
        });
    }
    let basic = resp.basic().map_err(|e| invalid(e.to_string()))?;
    let mut certs = Stack::new().map_err(FetchError::Request)?;
    for c in std::iter::once(subject.issuer).chain(subject.untrusted) {
        certs.push(c.clone()).map_err(FetchError::Request)?;
    }
    basic
        .verify(&certs, trusted, OcspFlag::empty())
        .map_err(|e| invalid(format!("signature does not verify ({e})")))?;
    let id = id().map_err(FetchError::Request)?;
    let st = basic
        .find_status(&id)
        .ok_or_else(|| invalid("no status for the certificate asked about".into()))?;
    st.check_validity(SKEW_SECS, None)
        .map_err(|e| invalid(format!("outside its validity ({e})")))?;
    let status = match st.status {
        OcspCertStatus::GOOD => Status::Good,
        OcspCertStatus::REVOKED => Status::Revoked(match st.revocation_time {
            Some(t) => format!("revoked at {t} (reason code {})", st.reason.as_raw()),
            None => "revoked".into(),
        }),
        _ => Status::Unknown,
    };
    let time = |t: &Asn1GeneralizedTimeRef| {
        system_time(t).ok_or_else(|| invalid(format!("unreadable time {t}")))
    };
    Ok(Answer {
        status,
        this_update: time(st.this_update)?,
        next_update: st.next_update().map(time).transpose()?,
    })
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    // reqwest's own message ("error sending request") hides the cause in its sources.
    let err = |e: reqwest::Error| {
        let mut why = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            why = format!("{why}: {c}");
            cause = c.source();
        }
        FetchError::Http {
            url: url.to_owned(),
            why,
        }
    };
    let mut resp = http
        .post(url)
        .header("content-type", "application/ocsp-request")
        .timeout(timeout)
        .body(body)
        .send()
        .await
        .map_err(err)?;
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status: resp.status().as_u16(),
        });
    }
    let mut der = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(err)? {
        der.extend_from_slice(&chunk);
        if der.len() > MAX_ANSWER {
            return Err(FetchError::TooLarge {
                url: url.to_owned(),
            });
        }
    }
    Ok(der)
}

/// OpenSSL prints a GeneralizedTime as `Nov 30 21:08:44 2026 GMT` and offers no other way
/// out of it, so that is read back.
fn system_time(t: &Asn1GeneralizedTimeRef) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let text = t.to_string();
    let mut parts = text.split_whitespace();
    let month = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u8 + 1;
    let day: u8 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split('.').next()?.split(':');
    let mut num = || hms.next()?.parse::<u8>().ok();
    let (h, m, s) = (num()?, num()?, num()?);
    let year: i32 = parts.next()?.parse().ok()?;
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    Some(date.with_hms(h, m, s).ok()?.assume_utc().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1GeneralizedTime;

    #[test]
    fn generalized_times_read_back_exactly() {
        let t = Asn1GeneralizedTime::from_str("20261130210844Z").unwrap();
        let want = time::macros::datetime!(2026-11-30 21:08:44 UTC);
        assert_eq!(system_time(&t), Some(want.into()));
        let t = Asn1GeneralizedTime::from_str("20270105030201Z").unwrap();
        let want = time::macros::datetime!(2027-01-05 03:02:01 UTC);
        assert_eq!(system_time(&t), Some(want.into()));
    }
}
