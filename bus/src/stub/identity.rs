use std::fmt;
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct MemberId(String);
#[derive(Debug, thiserror::Error)]
#[error("bad id")]
pub struct IdentityError;
impl MemberId {
    pub fn parse(s: &str) -> Result<MemberId, IdentityError> { Ok(MemberId(s.into())) }
    pub fn as_str(&self) -> &str { &self.0 }
    pub fn class(&self) -> &str { self.0.split('/').next().unwrap() }
    pub fn from_spiffe_uri(_i: &str, u: &str) -> Result<MemberId, IdentityError> { Ok(MemberId(u.into())) }
    pub fn file_stem(&self) -> String { self.0.replace('/', "_") }
}
impl fmt::Display for MemberId { fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(&self.0) } }
#[derive(Debug, Clone)]
pub struct Peer { pub member: MemberId, pub remote: std::net::SocketAddr }
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = axum::http::StatusCode;
    async fn from_request_parts(p: &mut axum::http::request::Parts, _s: &S) -> Result<Self, Self::Rejection> {
        p.extensions.get::<axum::extract::ConnectInfo<Peer>>().map(|c| c.0.clone()).ok_or(axum::http::StatusCode::UNAUTHORIZED)
    }
}
