//! Signals between nodes over `LISTEN/NOTIFY`.
//!
//! A publisher task gathers this node's signals for a few milliseconds and sends each gathered
//! set with one `pg_notify` statement (a burst of accepts for one member is one notification):
//! sent one by one they cost PostgreSQL a statement per accepted message. A listener
//! task holds its own connection with `LISTEN`, and reconnects with backoff when it drops:
//! what was sent meanwhile is lost, which waiters survive by looking at the store on a short
//! period. Each node tags its notifications, so it skips its own (it woke its waiters itself).

use std::collections::HashSet;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use crate::identity::MemberId;
use crate::store::Signal;

/// Signals gathered into one notification round at most.
const ROUND: usize = 512;
/// Time between rounds, so that a stream of accepts costs a few notifications a second
/// rather than one statement per accept; it delays a cross-node wake-up by as much.
const COALESCE: Duration = Duration::from_millis(5);

/// Starts the publisher and the listener; returns where to publish and what others sent.
pub(super) fn start(
    config: tokio_postgres::Config,
    pool: Pool,
    channel: String,
) -> (mpsc::Sender<Signal>, mpsc::Receiver<Signal>) {
    let node = Uuid::now_v7().simple().to_string();
    let (out_tx, out_rx) = mpsc::channel(8192);
    let (in_tx, in_rx) = mpsc::channel(8192);
    tokio::spawn(publish(pool, channel.clone(), node.clone(), out_rx));
    tokio::spawn(listen(config, channel, node, in_tx));
    (out_tx, in_rx)
}

fn encode(node: &str, s: &Signal) -> String {
    match s {
        Signal::Inbox(m) => format!("{node} i {m}"),
        Signal::Query(m, id) => format!("{node} q {m} {id}"),
    }
}

/// A notification from another node; `None` for this node's own, or one it cannot read.
fn decode(node: &str, payload: &str) -> Option<Signal> {
    let mut parts = payload.split(' ');
    let from = parts.next()?;
    if from == node {
        return None;
    }
    let kind = parts.next()?;
    let member = MemberId::parse(parts.next()?).ok()?;
    match kind {
        "i" => Some(Signal::Inbox(member)),
        "q" => Some(Signal::Query(member, Uuid::parse_str(parts.next()?).ok()?)),
        _ => None,
    }
}

async fn publish(pool: Pool, channel: String, node: String, mut rx: mpsc::Receiver<Signal>) {
    while let Some(first) = rx.recv().await {
        let mut round = HashSet::from([first]);
        while round.len() < ROUND {
            match rx.try_recv() {
                Ok(s) => {
                    round.insert(s);
                }
                Err(_) => break,
            }
        }
        let payloads: Vec<String> = round.iter().map(|s| encode(&node, s)).collect();
        let sent = async {
            let c = pool.get().await.map_err(|e| e.to_string())?;
            c.execute(
                "SELECT pg_notify($1, p) FROM unnest($2::text[]) p",
                &[&channel, &payloads],
            )
            .await
            .map_err(|e| super::describe(&e))
        };
        if let Err(why) = sent.await {
            tracing::debug!(%why, count = payloads.len(), "signals to other nodes dropped");
        }
        tokio::time::sleep(COALESCE).await;
    }
}

async fn listen(
    config: tokio_postgres::Config,
    channel: String,
    node: String,
    tx: mpsc::Sender<Signal>,
) {
    let mut backoff = Duration::from_millis(100);
    while !tx.is_closed() {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx2, node2) = (tx.clone(), node.clone());
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
                    while let Some(Ok(m)) = messages.next().await {
                        if let AsyncMessage::Notification(n) = m
                            && let Some(signal) = decode(&node2, n.payload())
                        {
                            let _ = tx2.try_send(signal);
                        }
                    }
                });
                let quoted = channel.replace('"', "\"\"");
                match client.batch_execute(&format!("LISTEN \"{quoted}\"")).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        tracing::debug!(%channel, "listening for other nodes");
                        let _ = driver.await;
                    }
                    Err(e) => {
                        tracing::debug!(why = %super::describe(&e), "LISTEN failed");
                        driver.abort();
                    }
                }
                drop(client);
            }
            Err(e) => tracing::debug!(why = %super::describe(&e), "signal listener cannot connect"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_skips_its_own_signals_and_reads_the_others() {
        let m = MemberId::parse("GOV/dukcapil").unwrap();
        let id = Uuid::now_v7();
        for s in [Signal::Inbox(m.clone()), Signal::Query(m.clone(), id)] {
            let text = encode("a", &s);
            assert_eq!(decode("a", &text), None);
            assert_eq!(decode("b", &text), Some(s));
        }
        assert_eq!(decode("b", "a x GOV/dukcapil"), None);
        assert_eq!(decode("b", "a q GOV/dukcapil not-a-uuid"), None);
    }
}
