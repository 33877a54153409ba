//! One keep-alive mTLS connection to a server (the bus or the echo ceiling), HTTP/1.1 or h2.
//!
//! Built directly on hyper's connection API rather than reqwest so that the load generator
//! spends as little CPU as possible per request: it shares the two cores with the server it
//! measures, and every cycle it burns is taken from the server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The HTTP version a run uses; chosen by ALPN so the server sees what a real client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Proto {
    #[value(name = "h1")]
    #[serde(rename = "h1")]
    H1,
    #[value(name = "h2")]
    #[serde(rename = "h2")]
    H2,
}

/// Where to connect and as whom.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub tls: Arc<rustls::ClientConfig>,
    pub proto: Proto,
}

impl Target {
    /// `tls` is a member's client configuration; its ALPN list is narrowed to `proto`.
    pub fn new(addr: SocketAddr, mut tls: rustls::ClientConfig, proto: Proto) -> Target {
        tls.alpn_protocols = vec![match proto {
            Proto::H1 => b"http/1.1".to_vec(),
            Proto::H2 => b"h2".to_vec(),
        }];
        Target {
            addr,
            tls: Arc::new(tls),
            proto,
        }
    }

    /// Opens one connection and completes the TLS handshake and HTTP setup.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connect to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost")?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .context("mTLS handshake")?;
        let io = TokioIo::new(tls);
        let authority = format!("localhost:{}", self.addr.port());
        let sender = match self.proto {
            Proto::H1 => {
                let (s, conn) = http1::handshake(io).await?;
                tokio::spawn(conn);
                Sender::H1(s)
            }
            Proto::H2 => {
                let (s, conn) = http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                Sender::H2(s)
            }
        };
        Ok(Conn { sender, authority })
    }
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// A connection. For h2 it can be cloned to run several streams over one connection.
pub struct Conn {
    sender: Sender,
    authority: String,
}

impl Conn {
    /// Another handle on the same h2 connection (a new stream per request), or `None` for
    /// HTTP/1.1, which has one request in flight per connection.
    pub fn stream(&self) -> Option<Conn> {
        match &self.sender {
            Sender::H2(s) => Some(Conn {
                sender: Sender::H2(s.clone()),
                authority: self.authority.clone(),
            }),
            Sender::H1(_) => None,
        }
    }

    /// Sends one request and reads the whole answer.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut req = Request::builder().method(method);
        req = match self.sender {
            // h2 needs :scheme and :authority, which hyper takes from an absolute URI.
            Sender::H2(_) => req.uri(format!("https://{}{path}", self.authority)),
            Sender::H1(_) => req.uri(path).header(hyper::header::HOST, &self.authority),
        };
        if let Some(ct) = content_type {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        let req = req.body(Full::new(body))?;
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// Like [`Conn::request`] but fails unless the status is `want`.
    pub async fn expect(
        &mut self,
        want: StatusCode,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<Bytes> {
        let (status, bytes) = self.request(method, path, content_type, body).await?;
        if status != want {
            bail!(
                "{path}: expected {want}, got {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(400)])
            );
        }
        Ok(bytes)
    }
}
