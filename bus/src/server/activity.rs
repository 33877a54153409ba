//! What a connection is doing, for the lifetimes in `http`: requests running, when the last
//! one ended, and since when the head of a next request has been arriving.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls::TlsConn;

pub(super) struct Activity {
    running: AtomicUsize,
    times: Mutex<Times>,
}

struct Times {
    last: Instant,
    head_since: Option<Instant>,
}

impl Activity {
    pub(super) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            running: AtomicUsize::new(0),
            times: Mutex::new(Times {
                last: Instant::now(),
                head_since: None,
            }),
        })
    }

    fn times(&self) -> MutexGuard<'_, Times> {
        self.times.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long no request has been running, or `None` while one is.
    pub(super) fn idle_for(&self) -> Option<Duration> {
        if self.running.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.times().last.elapsed())
    }

    /// How long the head of a next request has been arriving without being complete.
    pub(super) fn head_for(&self) -> Option<Duration> {
        self.times().head_since.map(|t| t.elapsed())
    }

    /// Bytes arrived: between requests, they are the start of the next request's head.
    fn received(&self) {
        if self.running.load(Ordering::Acquire) == 0 {
            self.times().head_since.get_or_insert_with(Instant::now);
        }
    }
}

/// Marks one request as running until dropped.
pub(super) struct Running(Arc<Activity>);

impl Running {
    pub(super) fn start(a: &Arc<Activity>) -> Running {
        a.running.fetch_add(1, Ordering::AcqRel);
        a.times().head_since = None;
        Running(a.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.times().last = Instant::now();
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connection's IO, noting when bytes arrive so that a request head that trickles in can
/// be timed. hyper's own header timeout also runs while a keep-alive connection waits for its
/// next request, which would close every idle HTTP/1.1 connection after the header timeout
/// instead of the idle timeout.
pub(super) struct WatchedIo {
    pub(super) inner: TlsConn,
    pub(super) activity: Arc<Activity>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.received();
        }
        r
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
