//! Who a member is, and who is on the other end of a connection.
//!
//! A member ID (`CLASS/CODE[/SUBSYSTEM]`, as in X-Road) is carried in the member's certificate
//! as a SPIFFE-style SAN URI. The bus reads it from the verified chain in the accept path, once,
//! and hands it to handlers as a [`Peer`]; it is never taken from a header or a body.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use x509_parser::extensions::GeneralName;

/// Member classes: government, business (by NIB), other organisation.
const CLASSES: [&str; 3] = ["GOV", "COM", "ORG"];

/// Why a string or certificate does not name a member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("member ID {0:?} must be CLASS/CODE or CLASS/CODE/SUBSYSTEM")]
    Shape(String),
    #[error("member ID {0:?}: class must be one of GOV, COM, ORG")]
    Class(String),
    #[error("member ID {id:?}: {part} must be 1+ of A-Z a-z 0-9 . _ - (and not . or ..)")]
    Part { id: String, part: &'static str },
    #[error("member ID {0:?}: a COM code is an NIB, 13 digits")]
    Nib(String),
    #[error("URI {uri:?} is not a SPIFFE ID of instance {instance:?}")]
    NotInstanceUri { instance: String, uri: String },
    #[error("certificate could not be parsed: {0}")]
    Certificate(String),
    #[error("certificate has no SAN URI for instance {0:?}")]
    NoMemberUri(String),
    #[error("certificate has {count} SAN URIs for instance {instance:?}; exactly one is required")]
    AmbiguousMemberUri { instance: String, count: usize },
}

/// A member ID `CLASS/CODE[/SUBSYSTEM]`.
///
/// Always valid once constructed (the only way in is [`MemberId::parse`]), and cheap to
/// clone: it is copied into every routed message, inbox key and audit record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(Arc<str>);

/// `[A-Za-z0-9._-]+`, minus `.` and `..` so a part is also a safe URI path segment.
fn valid_part(p: &str) -> bool {
    !p.is_empty()
        && p != "."
        && p != ".."
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl MemberId {
    pub fn parse(s: &str) -> Result<MemberId, IdentityError> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(IdentityError::Shape(s.to_owned()));
        }
        if !CLASSES.contains(&parts[0]) {
            return Err(IdentityError::Class(s.to_owned()));
        }
        for (part, name) in parts[1..].iter().zip(["code", "subsystem"]) {
            if !valid_part(part) {
                return Err(IdentityError::Part {
                    id: s.to_owned(),
                    part: name,
                });
            }
        }
        if parts[0] == "COM"
            && !(parts[1].len() == 13 && parts[1].bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(IdentityError::Nib(s.to_owned()));
        }
        Ok(MemberId(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `GOV`, `COM` or `ORG`.
    pub fn class(&self) -> &str {
        self.parts().next().unwrap_or_default()
    }

    /// The agency code, or the NIB for `COM`.
    pub fn code(&self) -> &str {
        self.parts().nth(1).unwrap_or_default()
    }

    pub fn subsystem(&self) -> Option<&str> {
        self.parts().nth(2)
    }

    fn parts(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// `spiffe://<instance>/<CLASS>/<CODE>[/<SUBSYSTEM>]`: the form carried in certificates.
    pub fn to_spiffe_uri(&self, instance: &str) -> String {
        format!("spiffe://{instance}/{}", self.0)
    }

    /// The inverse of [`MemberId::to_spiffe_uri`]; a URI of another instance is refused so a
    /// certificate issued for one bus cannot be used on another that trusts the same CA.
    pub fn from_spiffe_uri(instance: &str, uri: &str) -> Result<MemberId, IdentityError> {
        let not_ours = || IdentityError::NotInstanceUri {
            instance: instance.to_owned(),
            uri: uri.to_owned(),
        };
        let rest = uri
            .strip_prefix("spiffe://")
            .and_then(|r| r.strip_prefix(instance))
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(not_ours)?;
        MemberId::parse(rest)
    }

    /// A file-name-safe stem such as `GOV_dpmptsp_sipanse`, used for `certs/members/<stem>.pem`.
    ///
    /// Not injective when codes contain `_` (`GOV/a_b` and `GOV/a/b` share a stem); the
    /// development PKI refuses to overwrite another member's files because of that.
    pub fn file_stem(&self) -> String {
        self.0.replace('/', "_")
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for MemberId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MemberId::parse(s)
    }
}

impl AsRef<str> for MemberId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for MemberId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Deserialising validates, so a registry or stored record can never hold a malformed ID.
impl<'de> serde::Deserialize<'de> for MemberId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        MemberId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The bus's own SPIFFE ID, carried by its server certificate. Member ids have at least two
/// parts, so no member can hold it; RabbitMQ knows the bus by it (EXTERNAL login).
pub fn bus_identity_uri(instance: &str) -> String {
    format!("spiffe://{instance}/simpul-bus")
}

/// Extracts the member from a DER end-entity certificate's SAN URIs.
///
/// URIs of other instances are ignored; exactly one for `instance` is required, since a
/// certificate naming two members would make "who sent this" ambiguous.
pub fn member_from_cert(instance: &str, der: &[u8]) -> Result<MemberId, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| IdentityError::Certificate(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Certificate(e.to_string()))?;
    let prefix = format!("spiffe://{instance}/");
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|s| s.value.general_names.iter())
        .filter_map(|n| match n {
            GeneralName::URI(u) if u.starts_with(&prefix) => Some(*u),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(IdentityError::NoMemberUri(instance.to_owned())),
        [uri] => MemberId::from_spiffe_uri(instance, uri),
        many => Err(IdentityError::AmbiguousMemberUri {
            instance: instance.to_owned(),
            count: many.len(),
        }),
    }
}

/// The authenticated peer of a connection, set once in the accept path from the verified
/// certificate and read by handlers (as linkerd does), so no handler re-derives identity.
#[derive(Debug, Clone)]
pub struct Peer {
    pub member: MemberId,
    pub remote: SocketAddr,
    /// The leaf certificate (DER) the connection presented: a sender's own signature must
    /// verify against its key.
    pub cert: std::sync::Arc<[u8]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_design_examples() {
        for s in [
            "GOV/dukcapil",
            "GOV/dpmptsp/sipanse",
            "COM/8120000123456",
            "ORG/lsm-1.x_y",
        ] {
            let id = MemberId::parse(s).unwrap();
            assert_eq!(id.as_str(), s);
            assert_eq!(id.to_string(), s);
        }
        let id = MemberId::parse("GOV/dpmptsp/sipanse").unwrap();
        assert_eq!(
            (id.class(), id.code(), id.subsystem()),
            ("GOV", "dpmptsp", Some("sipanse"))
        );
        assert_eq!(id.file_stem(), "GOV_dpmptsp_sipanse");
        assert_eq!(MemberId::parse("GOV/dukcapil").unwrap().subsystem(), None);
    }

    #[test]
    fn rejects_malformed_ids() {
        for s in [
            "",
            "GOV",
            "GOV/",
            "/dukcapil",
            "gov/dukcapil",
            "XYZ/a",
            "GOV/a/b/c",
            "GOV//b",
            "GOV/a/",
            "GOV/a b",
            "GOV/ä",
            "GOV/..",
            "GOV/a/.",
            "COM/123",
            "COM/812000012345x",
            "COM/81200001234567",
            "COM/tokobaru",
        ] {
            assert!(MemberId::parse(s).is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn spiffe_round_trip_and_instance_check() {
        let id = MemberId::parse("GOV/bkpsdm/hr").unwrap();
        let uri = id.to_spiffe_uri("simpul.dev");
        assert_eq!(uri, "spiffe://simpul.dev/GOV/bkpsdm/hr");
        assert_eq!(MemberId::from_spiffe_uri("simpul.dev", &uri).unwrap(), id);
        assert!(MemberId::from_spiffe_uri("other.dev", &uri).is_err());
        assert!(MemberId::from_spiffe_uri("simpul", &uri).is_err());
        assert!(MemberId::from_spiffe_uri("simpul.dev", "https://simpul.dev/GOV/x").is_err());
        assert!(MemberId::from_spiffe_uri("simpul.dev", "spiffe://simpul.dev/GOV/x?y").is_err());
    }

    #[test]
    fn serde_is_a_validated_string() {
        let id: MemberId = serde_json::from_str("\"COM/8120000123456\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"COM/8120000123456\"");
        assert!(serde_json::from_str::<MemberId>("\"COM/abc\"").is_err());
        assert_eq!("GOV/x".parse::<MemberId>().unwrap().as_str(), "GOV/x");
    }

    fn cert_with_uris(uris: &[&str]) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::default();
        p.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI((*u).try_into().unwrap()))
            .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn member_from_cert_needs_exactly_one_uri_of_the_instance() {
        let one = cert_with_uris(&["spiffe://simpul.dev/GOV/dukcapil", "spiffe://other/GOV/x"]);
        assert_eq!(
            member_from_cert("simpul.dev", &one).unwrap().as_str(),
            "GOV/dukcapil"
        );
        let none = cert_with_uris(&["spiffe://other/GOV/x"]);
        assert!(matches!(
            member_from_cert("simpul.dev", &none),
            Err(IdentityError::NoMemberUri(_))
        ));
        let two = cert_with_uris(&["spiffe://simpul.dev/GOV/a", "spiffe://simpul.dev/GOV/b"]);
        assert!(matches!(
            member_from_cert("simpul.dev", &two),
            Err(IdentityError::AmbiguousMemberUri { count: 2, .. })
        ));
        let bad = cert_with_uris(&["spiffe://simpul.dev/XYZ/b"]);
        assert!(matches!(
            member_from_cert("simpul.dev", &bad),
            Err(IdentityError::Class(_))
        ));
        assert!(member_from_cert("simpul.dev", b"not a certificate").is_err());
    }
}
