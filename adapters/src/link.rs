//! An adapter's link to the bus: its mTLS client, its durable outbox, the key its event ids
//! are derived under, and the trace.
//!
//! Everything an adapter sends that is not a synchronous query goes through the outbox, so
//! the agency system never waits on the network and never loses a record when the link drops.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use bus::client::{Answer, Client};
use bus::identity::MemberId;
use serde_json::Value;
use uuid::Uuid;

use crate::agency::{AdapterError, envelope};
use crate::idkey::IdKey;
use crate::outbox::{ForwardOptions, Forwarded, Outbox};
use crate::trace::Trace;

/// One message leased from the adapter's inbox.
#[derive(Debug, Clone)]
pub struct Leased {
    pub id: Uuid,
    pub type_: String,
    /// The sender as the bus saw it in the sender's certificate.
    pub source: String,
    pub data: Value,
}

pub struct Link {
    pub member: MemberId,
    client: RwLock<Client>,
    /// The bus's nodes, when it has several: after a failure the link moves to the next.
    nodes: Vec<Client>,
    node: AtomicUsize,
    /// The last failure, with when it happened (RFC 3339), for the health output.
    last_error: Mutex<Option<(String, String)>>,
    pub outbox: Outbox,
    /// The secret the adapter derives its event ids under ([`IdKey::derive`]), kept next to
    /// the outbox ([`IdKey::path_for`]). Every adapter takes it from here, so every derived id
    /// is keyed; replace it to use a key provisioned elsewhere.
    pub ids: IdKey,
    pub trace: Trace,
    /// Batch size and compression of forwards (gzip on by default: offices are on slow links).
    pub forward: ForwardOptions,
}

impl Link {
    /// A link using the dev PKI layout (`certs/ca.pem`, `certs/members/<member>.pem`).
    ///
    /// Opens (or creates) the outbox database at `outbox`, and the member's id key next to it
    /// (created on first run; see [`crate::idkey`]).
    pub fn open(
        base: &str,
        certs: &Path,
        member: &str,
        outbox: &Path,
        trace: Trace,
    ) -> Result<Link, AdapterError> {
        let parsed = MemberId::parse(member).map_err(|e| AdapterError::Protocol(e.to_string()))?;
        let client = Client::for_member(base, certs, &parsed)?;
        Link::with_clients(member, vec![client], outbox, trace)
    }

    /// A link through `nodes` (the nodes of one bus, each a client with the member's
    /// certificate), starting with the first.
    pub fn with_clients(
        member: &str,
        nodes: Vec<Client>,
        outbox: &Path,
        trace: Trace,
    ) -> Result<Link, AdapterError> {
        let member = MemberId::parse(member).map_err(|e| AdapterError::Protocol(e.to_string()))?;
        let first = nodes
            .first()
            .cloned()
            .ok_or_else(|| AdapterError::Protocol("no bus address".into()))?;
        let ids = IdKey::load_or_create(&IdKey::path_for(outbox, member.as_str()))?;
        Ok(Link {
            member,
            client: RwLock::new(first),
            nodes,
            node: AtomicUsize::new(0),
            last_error: Mutex::default(),
            outbox: Outbox::open(outbox)?,
            ids,
            trace,
            forward: ForwardOptions::default(),
        })
    }

    /// Notes a failure for the health output and, when it is the bus node's
    /// ([`AdapterError::is_the_bus_nodes`]) and the bus has several nodes, moves to the next.
    pub fn failed(&self, e: &AdapterError) {
        let at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let why = bus::formats::mask_digit_runs(&e.to_string());
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, why));
        if e.is_the_bus_nodes() && self.nodes.len() > 1 {
            let next = (self.node.fetch_add(1, Ordering::Relaxed) + 1) % self.nodes.len();
            self.set_client(self.nodes[next].clone());
            tracing::warn!(bus = %self.bus(), "moving to the next bus node");
        }
    }

    /// The last failure: when, and what.
    pub fn last_error(&self) -> Option<(String, String)> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The bus address in use.
    pub fn bus(&self) -> String {
        self.client().url("")
    }

    pub fn client(&self) -> Client {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Points the link at another bus address (a restarted bus, a failover node).
    pub fn set_client(&self, client: Client) {
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = client;
    }

    /// Queues an event or message durably; it goes out with the next [`Link::flush`].
    pub fn queue(&self, event: &Value) -> Result<bool, AdapterError> {
        Ok(self.outbox.enqueue(event)?)
    }

    /// Forwards the outbox. A down link is not an error for the caller's work: the backlog
    /// stays queued and shows in the outbox health.
    pub async fn flush(&self) -> Result<Forwarded, AdapterError> {
        Ok(self.outbox.forward(&self.client(), self.forward).await?)
    }

    /// Where this adapter stopped reading its agency's change log (0 before the first read).
    pub fn cursor(&self, key: &str) -> Result<i64, AdapterError> {
        Ok(self
            .outbox
            .meta(key)?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    pub fn set_cursor(&self, key: &str, seq: i64) -> Result<(), AdapterError> {
        Ok(self.outbox.set_meta(key, &seq.to_string())?)
    }

    /// Sets aside a native record that cannot be mapped: kept in the outbox with the reason
    /// (personal IDs masked) for the operator to see in the health output, never dropped.
    pub fn set_aside(&self, id: &str, kind: &str, e: &AdapterError) -> Result<(), AdapterError> {
        let reason = bus::formats::mask_digit_runs(&e.to_string());
        tracing::error!(record = id, kind, %reason, "native record not mapped");
        self.outbox.set_aside(id, kind, &reason)?;
        self.trace
            .note(&format!("  {id} ({kind}) not mapped: {reason}"));
        Ok(())
    }

    /// Forwards what was queued; a down link leaves it queued for the next try.
    pub async fn flush_or_keep(&self) {
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "bus unreachable; the backlog stays in the outbox");
        }
    }

    /// Asks a query and returns the reply's data (already cut to this member's grant).
    pub async fn ask(&self, type_: &str, data: Value) -> Result<Value, AdapterError> {
        let ev = envelope(Uuid::now_v7(), type_, data, None);
        let a = self.client().send(&ev).await?;
        expect(&a, 200)?;
        Ok(a.body["data"].clone())
    }

    /// Leases up to `max` messages, long-polling up to `wait` (rounded up to whole seconds,
    /// the bus's unit, so a short wait never becomes no wait at all).
    pub async fn pull(&self, max: usize, wait: Duration) -> Result<Vec<Leased>, AdapterError> {
        let wait = Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        let a = self
            .client()
            .pull(max, wait, Duration::from_secs(60))
            .await?;
        expect(&a, 200)?;
        let msgs = a.body["messages"].as_array().cloned().unwrap_or_default();
        msgs.into_iter()
            .map(|m| {
                let ev = &m["event"];
                let id = ev["id"]
                    .as_str()
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or_else(|| AdapterError::Protocol("leased event without id".into()))?;
                Ok(Leased {
                    id,
                    type_: ev["type"].as_str().unwrap_or_default().to_owned(),
                    source: ev["source"].as_str().unwrap_or_default().to_owned(),
                    data: ev["data"].clone(),
                })
            })
            .collect()
    }

    pub async fn ack(&self, id: Uuid) -> Result<(), AdapterError> {
        expect(&self.client().ack(id).await?, 200)
    }

    pub async fn nack(&self, id: Uuid, reason: &str) -> Result<(), AdapterError> {
        expect(&self.client().nack(id, reason).await?, 200)
    }

    pub async fn reply(&self, id: Uuid, data: &Value) -> Result<(), AdapterError> {
        expect(&self.client().reply(id, data).await?, 200)
    }
}

/// Turns an unexpected status into an error carrying the bus's (masked) problem detail.
pub fn expect(a: &Answer, status: u16) -> Result<(), AdapterError> {
    if a.status.as_u16() == status {
        return Ok(());
    }
    let mut detail = a.body["detail"].as_str().unwrap_or_default().to_owned();
    for p in a.pointers() {
        detail.push_str(&format!(" [{p}]"));
    }
    Err(AdapterError::Refused {
        status: a.status.as_u16(),
        detail,
    })
}
