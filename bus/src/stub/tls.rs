use std::{net::SocketAddr, path::{Path, PathBuf}, sync::Arc, time::Duration};
use crate::identity::{MemberId, Peer};
#[derive(Debug, thiserror::Error)] #[error("tls")] pub struct TlsError;
#[derive(Debug, Clone)]
pub struct TlsSettings { pub ca_files: Vec<PathBuf>, pub crl_file: Option<PathBuf>, pub cert_file: PathBuf, pub key_file: PathBuf, pub instance: String, pub handshake_timeout: Duration, pub max_connections: usize }
pub fn server_config(_s: &TlsSettings, _f: Arc<dyn Fn(&MemberId) -> bool + Send + Sync>) -> Result<Arc<rustls::ServerConfig>, TlsError> { Err(TlsError) }
pub fn client_config(_a: &Path, _b: &Path, _c: &Path) -> Result<rustls::ClientConfig, TlsError> { Err(TlsError) }
pub struct TlsListener(tokio::net::TcpListener);
impl TlsListener {
    pub async fn bind(a: SocketAddr, _c: Arc<rustls::ServerConfig>, _s: &TlsSettings) -> std::io::Result<Self> { Ok(TlsListener(tokio::net::TcpListener::bind(a).await?)) }
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> { self.0.local_addr() }
}
impl axum::serve::Listener for TlsListener {
    type Io = tokio::net::TcpStream; type Addr = Peer;
    async fn accept(&mut self) -> (Self::Io, Self::Addr) { loop { if let Ok((s,a)) = self.0.accept().await { return (s, Peer{member: MemberId::parse("x").unwrap(), remote: a}) } } }
    fn local_addr(&self) -> std::io::Result<Peer> { Err(std::io::ErrorKind::Other.into()) }
}
impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(s: axum::serve::IncomingStream<'_, TlsListener>) -> Self { s.remote_addr().clone() }
}
