//! Serving HTTP on verified mTLS connections, each under its lifetimes.
//!
//! `axum::serve` runs hyper without a timer, so once a handshake is done nothing bounds a
//! connection. Here every connection runs under hyper's timer (header read timeout, h2
//! keep-alive pings) and a watcher that closes it gracefully (`Connection: close` for HTTP/1.1,
//! GOAWAY for h2: requests already running finish, no new one is served) when:
//! - it has been idle for `idle_timeout`;
//! - it is older than `max_age`, so clients reconnect and pick up any change;
//! - its certificate expires, or a reloaded CRL revokes it: identity holds for the life of a
//!   connection, so the connection ends with the identity;
//! - the server shuts down.
//!
//! A connection that does not close within `CLOSE_GRACE` of being asked is dropped.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::Service;

use super::activity::{Activity, Running, WatchedIo};
use crate::core::presence::Presence;
use crate::error::ApiError;
use crate::tls::{MemberVerifier, TlsConn, TlsListener};
use axum::response::IntoResponse;

/// How long a connection asked to close may take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(30);

/// The lifetimes of a connection after its handshake; every one is a `simpul serve` flag.
#[derive(Debug, Clone)]
pub struct ConnOptions {
    /// Time to receive a request's headers once its first byte has arrived (HTTP/1.1).
    pub header_timeout: Duration,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// A connection is closed (gracefully) once this old.
    pub max_age: Duration,
    /// Interval of h2 keep-alive pings; a peer that does not answer one within the same
    /// interval is disconnected.
    pub h2_ping: Duration,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_age: Duration::from_secs(600),
            h2_ping: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on every connection `listener` yields until `shutdown` turns true, then
/// closes them all gracefully and waits (at most [`CLOSE_GRACE`]) for them to finish.
///
/// `verifier` (the listener's own) is asked again about each open connection's certificate
/// whenever its CRL is reloaded.
pub async fn serve(
    mut listener: TlsListener,
    router: Router,
    opts: ConnOptions,
    verifier: Option<Arc<MemberVerifier>>,
    presence: Arc<Presence>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header timeout is the watcher's (see `activity::WatchedIo`), not hyper's.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(opts.h2_ping)
        .keep_alive_timeout(opts.h2_ping);
    let builder = Arc::new(builder);
    let mut conns = JoinSet::new();
    let for_conns = shutdown.clone();
    loop {
        tokio::select! {
            (conn, _) = axum::serve::Listener::accept(&mut listener) => {
                let task = connection(
                    conn,
                    router.clone(),
                    builder.clone(),
                    opts.clone(),
                    verifier.clone(),
                    presence.clone(),
                    for_conns.clone(),
                );
                conns.spawn(task);
            }
            // Reap finished connections so the set does not grow with every one ever served.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(CLOSE_GRACE, async {
        while conns.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!(
            open = conns.len(),
            "connections still open after the grace period; dropping them"
        );
        conns.abort_all();
    }
}

/// Why a connection is being closed.
fn close_reason(
    conn_age: Instant,
    opts: &ConnOptions,
    not_after: Option<SystemTime>,
    activity: &Activity,
) -> Option<&'static str> {
    if conn_age.elapsed() >= opts.max_age {
        return Some("maximum connection age reached");
    }
    if not_after.is_some_and(|t| SystemTime::now() >= t) {
        return Some("client certificate expired");
    }
    if activity.idle_for().is_some_and(|d| d >= opts.idle_timeout) {
        return Some("idle");
    }
    None
}

async fn connection(
    conn: TlsConn,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    opts: ConnOptions,
    verifier: Option<Arc<MemberVerifier>>,
    presence: Arc<Presence>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _open = crate::telemetry::OpenConnection::new();
    let peer = conn.peer().clone();
    let chain = conn.chain().to_vec();
    let not_after = conn.not_after();
    presence.connected(&peer.member, not_after);
    let h1 = conn.alpn() != Some(b"h2");
    // A member OCSP refused after its handshake: every request is answered with why, and the
    // connection closes after the first.
    let refusal = conn.refusal().cloned();
    let answered = Arc::new(tokio::sync::Notify::new());
    let mut revocations = verifier.as_ref().map(|v| v.reloads());
    let activity = Activity::new();
    let service = {
        let (peer, activity) = (peer.clone(), activity.clone());
        let (refusal, answered) = (refusal.clone(), answered.clone());
        tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(peer.clone());
            let running = Running::start(&activity);
            let mut router = router.clone();
            let refused = refusal.as_ref().map(|r| {
                answered.notify_one();
                ApiError::from(r).into_response()
            });
            async move {
                let resp = match refused {
                    Some(resp) => resp,
                    None => router.call(req).await.unwrap_or_else(|e| match e {}),
                };
                drop(running);
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let born = Instant::now();
    let io = WatchedIo {
        inner: conn,
        activity: activity.clone(),
    };
    let http = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(http);
    // Often enough to honour the idle timeout and certificate expiry within a second or two.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut closing: Option<Instant> = None;
    loop {
        let revoked = async {
            match revocations.as_mut() {
                Some(r) => r.changed().await.is_err(),
                None => std::future::pending().await,
            }
        };
        let reason = tokio::select! {
            r = http.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(member = %peer.member, error = %e, "connection ended");
                }
                return;
            }
            _ = tick.tick() => {
                // Seen while a request runs or has ended since the last tick.
                if activity.idle_for().is_none_or(|d| d < Duration::from_secs(1)) {
                    presence.active(&peer.member);
                }
                match closing {
                    Some(since) if since.elapsed() >= CLOSE_GRACE => {
                        tracing::debug!(member = %peer.member, "connection did not close in time; dropped");
                        return;
                    }
                    Some(_) => None,
                    None if h1 && activity.head_for().is_some_and(|d| d >= opts.header_timeout) => {
                        // A request head that never completes has nothing to finish: drop it.
                        tracing::debug!(member = %peer.member, "request head not received in time; dropped");
                        return;
                    }
                    None => close_reason(born, &opts, not_after, &activity),
                }
            }
            gone = revoked, if closing.is_none() => {
                let still_valid = verifier.as_ref().is_some_and(|v| v.still_valid(&chain));
                if gone {
                    revocations = None;
                }
                (!still_valid).then_some("client certificate no longer valid (revoked or expired)")
            }
            _ = shutdown.wait_for(|s| *s), if closing.is_none() => Some("server shutting down"),
            _ = answered.notified(), if closing.is_none() => Some("client certificate refused by OCSP"),
        };
        if let (Some(why), None) = (reason, closing) {
            tracing::debug!(member = %peer.member, reason = why, "closing connection");
            if why.starts_with("client certificate") {
                tracing::info!(member = %peer.member, remote = %peer.remote, reason = why, "closing connection");
            }
            http.as_mut().graceful_shutdown();
            closing = Some(Instant::now());
        }
    }
}
