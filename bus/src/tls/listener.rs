//! The mTLS listener that `axum::serve` drives.
//!
//! TCP accept runs in a background task and every handshake in its own task with a timeout,
//! so a client that connects and then stalls (or a slow link) never holds up anyone else.
//! Finished, verified connections come out of a channel, each carrying its [`Peer`].
//!
//! Connection limit: a semaphore permit is taken *before* each TCP accept and lives inside the
//! [`TlsConn`] until the connection is dropped. When all permits are out, the listener simply
//! stops accepting, so new clients wait in the kernel's backlog (their own connect or TLS
//! timeouts apply) instead of being reset; load is shed by back-pressure, not by errors.
//! Handshaking connections count too, and the handshake timeout bounds how long a silent
//! client can hold a permit.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::ocsp::{Ocsp, OcspRefusal};
use super::{ServerTls, TlsSettings};
use crate::identity::Peer;

/// A verified mTLS connection and who is on the other end.
pub struct TlsConn {
    stream: TlsStream<TcpStream>,
    peer: Peer,
    /// The verified chain, leaf first, to check again when the CRL changes.
    chain: Vec<CertificateDer<'static>>,
    not_after: Option<SystemTime>,
    /// Set when OCSP refuses the member after the handshake: every request on the connection
    /// is answered with this, then it closes.
    refusal: Option<OcspRefusal>,
    _permit: OwnedSemaphorePermit,
}

impl TlsConn {
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The client's certificate chain as verified in the handshake, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// When the client's certificate expires: the connection must not outlive it.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.not_after
    }

    /// Why the member is refused although its handshake succeeded (see [`super::ocsp`]).
    pub fn refusal(&self) -> Option<&OcspRefusal> {
        self.refusal.as_ref()
    }

    /// The negotiated ALPN protocol (`h2` or `http/1.1`), if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.stream.get_ref().1.alpn_protocol()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Accepts mTLS connections for `axum::serve`.
///
/// `Addr` is the remote socket address; the [`Peer`] travels inside the `Io` ([`TlsConn`]) and
/// reaches handlers through the `Connected` impl below, so
/// `app.into_make_service_with_connect_info::<Peer>()` gives every request its verified peer.
pub struct TlsListener {
    local: SocketAddr,
    rx: mpsc::Receiver<(TlsConn, SocketAddr)>,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    pub async fn bind(
        addr: SocketAddr,
        tls: &ServerTls,
        settings: &TlsSettings,
    ) -> io::Result<Self> {
        if settings.max_connections == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_connections must be at least 1",
            ));
        }
        let tcp = TcpListener::bind(addr).await?;
        let local = tcp.local_addr()?;
        let permits = settings.max_connections.min(Semaphore::MAX_PERMITS);
        let (tx, rx) = mpsc::channel(permits.min(1024));
        let ctx = Arc::new(Handshake {
            acceptor: TlsAcceptor::from(tls.config.clone()),
            ocsp: tls.ocsp.clone(),
            timeout: settings.handshake_timeout,
            instance: settings.instance.clone(),
            tx,
        });
        let acceptor = tokio::spawn(accept_loop(tcp, Arc::new(Semaphore::new(permits)), ctx));
        Ok(TlsListener {
            local,
            rx,
            acceptor,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Stops accepting when axum drops the listener (e.g. on graceful shutdown); handshakes in
/// flight finish and are then dropped with the channel.
impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // Only if the accept task died (it never returns while we hold the receiver):
            // serve nothing rather than spin.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.io().peer().clone()
    }
}

struct Handshake {
    acceptor: TlsAcceptor,
    ocsp: Option<Arc<Ocsp>>,
    timeout: Duration,
    instance: String,
    tx: mpsc::Sender<(TlsConn, SocketAddr)>,
}

async fn accept_loop(tcp: TcpListener, permits: Arc<Semaphore>, ctx: Arc<Handshake>) {
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return; // the semaphore is never closed
        };
        let (sock, remote) = match tcp.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Usually EMFILE/ENFILE: back off instead of spinning, as axum's own listener does.
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        tokio::spawn(ctx.clone().run(sock, remote, permit));
    }
}

impl Handshake {
    async fn run(
        self: Arc<Self>,
        sock: TcpStream,
        remote: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) {
        let stream = match tokio::time::timeout(self.timeout, self.acceptor.accept(sock)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return log_failure(remote, &e),
            Err(_) => {
                crate::telemetry::handshake_failed("timeout");
                tracing::debug!(%remote, timeout = ?self.timeout, "TLS handshake timed out; dropping");
                return;
            }
        };
        // The verifier already accepted this leaf, so this cannot fail unless the verifier and
        // this code disagree; refuse rather than serve an anonymous connection.
        let Some(member) = super::peer_member(&self.instance, stream.get_ref().1) else {
            tracing::error!(%remote, "verified connection without a member identity; dropping");
            return;
        };
        tracing::debug!(%remote, %member, "mTLS connection accepted");
        let chain: Vec<CertificateDer<'static>> = stream
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.clone().into_owned())
            .collect();
        let cert = chain.first().map(|c| c.as_ref().into()).unwrap_or_default();
        let peer = Peer {
            member,
            remote,
            cert,
        };
        let not_after = chain.first().and_then(|leaf| {
            let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
            let secs = cert.validity().not_after.timestamp();
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
        });
        // After the handshake, so a slow responder never holds up TLS, and a refusal can be
        // explained in HTTP rather than as a bare alert.
        let refusal = match &self.ocsp {
            Some(ocsp) => ocsp.admit(&peer.member, &chain).await.err(),
            None => None,
        };
        if let Some(why) = &refusal {
            tracing::info!(%remote, member = %peer.member, reason = %why, "refused by OCSP");
        }
        let conn = TlsConn {
            stream,
            peer,
            chain,
            not_after,
            refusal,
            _permit: permit,
        };
        // Fails only when the listener is gone, and then the connection should close anyway.
        let _ = self.tx.send((conn, remote)).await;
    }
}

/// Certificate refusals are worth an operator's attention (info); resets and garbage from
/// scanners are not (debug). Only the address and the reason are logged, no certificate data.
fn log_failure(remote: SocketAddr, e: &io::Error) {
    use rustls::{CertificateError, Error, OtherError};
    let tls = e.get_ref().and_then(|i| i.downcast_ref::<Error>());
    crate::telemetry::handshake_failed(match tls {
        Some(Error::InvalidCertificate(c)) => match c {
            CertificateError::Revoked => "revoked",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::UnknownIssuer => "unknown_issuer",
            CertificateError::UnknownRevocationStatus => "revocation_unknown",
            CertificateError::Other(_) => "policy",
            _ => "bad_certificate",
        },
        Some(Error::NoCertificatesPresented) => "no_certificate",
        Some(_) => "protocol",
        None => "io",
    });
    match tls {
        // Our own refusals (not a member, no member URI) carry their reason inside `Other`.
        Some(Error::InvalidCertificate(CertificateError::Other(OtherError(why)))) => {
            tracing::info!(%remote, reason = %why, "TLS handshake refused")
        }
        Some(tls @ (Error::InvalidCertificate(_) | Error::NoCertificatesPresented)) => {
            tracing::info!(%remote, reason = %tls, "TLS handshake refused")
        }
        Some(tls) => tracing::debug!(%remote, reason = %tls, "TLS handshake failed"),
        None => tracing::debug!(%remote, reason = %e, "TLS handshake failed"),
    }
}
