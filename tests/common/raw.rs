//! A raw HTTP/1.1 connection over real mTLS, for what an HTTP client library hides: partial
//! headers, a body that never arrives, and whether the server closed the connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::Bus;

/// A member's development certificate and key, as `simpul certs init` names them.
fn member_files(bus: &Bus, member: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let stem = bus::identity::MemberId::parse(member).unwrap().file_stem();
    let members = bus.certs().join("members");
    (
        members.join(format!("{stem}.pem")),
        members.join(format!("{stem}.key")),
    )
}

pub struct RawConn {
    stream: TlsStream<TcpStream>,
}

impl RawConn {
    /// Connects as `member` (HTTP/1.1 only), with the member's development certificate.
    pub async fn open(bus: &Bus, member: &str) -> RawConn {
        let (cert, key) = member_files(bus, member);
        RawConn::open_with(bus, &cert, &key).await
    }

    pub async fn open_with(bus: &Bus, cert: &std::path::Path, key: &std::path::Path) -> RawConn {
        RawConn::connect(bus, cert, key, b"http/1.1").await
    }

    /// Connects as `member` speaking h2 (ALPN `h2`); the caller writes the frames.
    pub async fn open_h2(bus: &Bus, member: &str) -> RawConn {
        let (cert, key) = member_files(bus, member);
        RawConn::connect(bus, &cert, &key, b"h2").await
    }

    /// The certificate the bus presented in this connection's handshake.
    pub fn server_cert(&self) -> Vec<u8> {
        let certs = self
            .stream
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or_default();
        certs.first().map(|c| c.to_vec()).unwrap_or_default()
    }

    async fn connect(
        bus: &Bus,
        cert: &std::path::Path,
        key: &std::path::Path,
        alpn: &[u8],
    ) -> RawConn {
        let mut cfg = bus::tls::client_config(&bus.certs().join("ca.pem"), cert, key).unwrap();
        cfg.alpn_protocols = vec![alpn.to_vec()];
        let addr = bus.base.trim_start_matches("https://").to_owned();
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let stream = TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .unwrap();
        RawConn { stream }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// Sends `GET path` and returns the response head and body, or `None` if the connection
    /// was closed (or nothing came within 10 s).
    pub async fn get(&mut self, path: &str) -> Option<String> {
        let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
        if self.stream.write_all(req.as_bytes()).await.is_err() {
            return None;
        }
        self.response(Duration::from_secs(10)).await
    }

    /// Reads one response (head, and a body of its content-length).
    pub async fn response(&mut self, limit: Duration) -> Option<String> {
        let mut buf = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return Some(text);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await;
            match n {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// Reads h2 frames until one of `kind` arrives within `limit`; false on close or timeout.
    pub async fn h2_frame(&mut self, kind: u8, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut head = [0u8; 9];
            let read = self.stream.read_exact(&mut head);
            if !matches!(tokio::time::timeout_at(deadline, read).await, Ok(Ok(_))) {
                return false;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            let read = self.stream.read_exact(&mut payload);
            if !matches!(tokio::time::timeout_at(deadline, read).await, Ok(Ok(_))) {
                return false;
            }
            if head[3] == kind {
                return true;
            }
        }
    }

    /// Whether the server closes the connection within `limit` (reading and discarding).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}
