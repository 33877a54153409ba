//! The loops every adapter runs, written once.
//!
//! [`run`] serves an adapter's inbox: lease, [`InboxHandler::handle`] each message (it replies,
//! acks or nacks), then [`InboxHandler::after_poll`] (publish the agency's change log, forward
//! the outbox), with a pause after a failure so a bus that is down is not hammered, and a final
//! flush of the outbox on stop. [`publish`] reads an agency's [`ChangeLog`] from the stored
//! cursor, queues the event each entry becomes, and sets aside what cannot be mapped.
//!
//! An adapter supplies only what is its own: how it handles a message, and how a log entry
//! maps. A message being handled when the adapter stops is left leased: the bus delivers it
//! again when the lease runs out (at least once), and every handler is idempotent.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::agency::{AdapterError, Agency};
use crate::link::{Leased, Link};

/// Most messages one poll leases.
const PULL_MAX: usize = 10;
/// How long one poll waits on an empty inbox.
const POLL_WAIT: Duration = Duration::from_secs(1);
/// The pause after a failed poll.
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(200);
/// How long the last flush on stop may take (the backlog stays queued if it cannot finish).
const FINAL_FLUSH: Duration = Duration::from_secs(10);
/// Change-log entries read at once.
const LOG_PAGE: usize = 100;

/// An adapter that serves its inbox.
pub trait InboxHandler: Agency + Send + Sync + 'static {
    fn link(&self) -> &Link;

    /// Handles one leased message: replies to it, acks it, or nacks it with a reason. An error
    /// leaves it leased (it comes back when the lease runs out) and ends this poll.
    fn handle(&self, m: Leased) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// What follows each poll; by default, forwarding the outbox (a down link keeps it).
    fn after_poll(&self) -> impl Future<Output = Result<(), AdapterError>> + Send {
        async {
            self.link().flush_or_keep().await;
            Ok(())
        }
    }
}

/// One poll: leases up to [`PULL_MAX`] messages (waiting up to `wait` for the first), handles
/// each in order, then runs [`InboxHandler::after_poll`]. Returns how many were handled.
pub async fn serve_inbox<A: InboxHandler>(a: &A, wait: Duration) -> Result<usize, AdapterError> {
    let msgs = a.link().pull(PULL_MAX, wait).await?;
    let n = msgs.len();
    for m in msgs {
        a.handle(m).await?;
    }
    a.after_poll().await?;
    Ok(n)
}

/// Serves `a`'s inbox until `stop` turns true, then forwards what its outbox holds.
pub async fn run<A: InboxHandler>(a: Arc<A>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        tokio::select! {
            r = serve_inbox(&*a, POLL_WAIT) => {
                if let Err(e) = r {
                    // Native systems' errors may quote personal IDs.
                    let why = bus::formats::mask_digit_runs(&e.to_string());
                    tracing::warn!(error = %why, adapter = A::NAME, "poll failed; trying again");
                    a.link().failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_AFTER_FAILURE) => {}
                        _ = stop.changed() => break,
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
    if tokio::time::timeout(FINAL_FLUSH, a.link().flush_or_keep())
        .await
        .is_err()
    {
        tracing::warn!(adapter = A::NAME, "stopping with a backlog in the outbox");
    }
}

/// An agency system's own log of changes, read in order of a sequence number.
pub trait ChangeLog: InboxHandler {
    type Entry: Send;
    /// Where the adapter keeps its place in the log (in the outbox's state).
    const CURSOR: &'static str;

    /// Entries after `after`, oldest first, at most `max`.
    fn entries(
        &self,
        after: i64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Self::Entry>, AdapterError>> + Send;
    fn seq(entry: &Self::Entry) -> i64;
    /// How an entry is named when it is set aside: an id (`siak.log/12`) and its kind.
    fn named(entry: &Self::Entry) -> (String, String);
    /// The event or message the entry becomes; `None` when it is nothing to send.
    /// Async, because mapping may look the person up in the agency system.
    fn map(
        &self,
        entry: &Self::Entry,
    ) -> impl Future<Output = Result<Option<Value>, AdapterError>> + Send;
}

/// Reads the log from the stored cursor, queues one event per entry (ids derived from the
/// entry, so a re-read queues nothing twice), sets aside with its reason what cannot be mapped,
/// moves the cursor past each entry, and forwards. Returns how many were newly queued.
pub async fn publish<L: ChangeLog>(l: &L) -> Result<usize, AdapterError> {
    let link = l.link();
    let mut after = link.cursor(L::CURSOR)?;
    let mut queued = 0;
    loop {
        let batch = l.entries(after, LOG_PAGE).await?;
        if batch.is_empty() {
            break;
        }
        for entry in batch {
            match l.map(&entry).await {
                Ok(Some(ev)) if link.queue(&ev)? => {
                    queued += 1;
                    let to = ev["to"].as_str().unwrap_or("subscribers");
                    let what = match ev["data"]["status"].as_str() {
                        Some(status) => format!("queued: {status}"),
                        None => "queued in outbox".to_owned(),
                    };
                    let type_ = ev["type"].as_str().unwrap_or_default();
                    link.trace.hop(L::MEMBER, to, type_, &what);
                }
                Ok(_) => {}
                Err(e) => {
                    let (id, kind) = L::named(&entry);
                    link.set_aside(&id, &kind, &e)?;
                }
            }
            after = L::seq(&entry);
            link.set_cursor(L::CURSOR, after)?;
        }
    }
    link.flush_or_keep().await;
    Ok(queued)
}
