//! The audit chain over a store: the sealer that chains what a store with several writers
//! wrote, in the order it committed, and signs checkpoints (for every store); and the verifier
//! and exporter that read it back.

use std::sync::Arc;
use std::time::Duration;

use crate::audit::verify::{Broken, Verified, Verifier};
use crate::audit::{Checkpoint, Record, now_us};
use crate::store::{AuditRead, Store, StoreError};
use crate::trust::{KeySet, SignerCell};

/// When a checkpoint is due: after `every` or `records` new records, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    pub every: Duration,
    pub records: i64,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            every: Duration::from_secs(60),
            records: 10_000,
        }
    }
}

/// Records sealed in one store transaction.
const BATCH: usize = 2000;

/// How often the sealer looks for new records when the last look found few.
const IDLE: Duration = Duration::from_millis(200);

pub struct Sealer {
    store: Arc<dyn Store>,
    signer: Arc<SignerCell>,
    policy: CheckpointPolicy,
    /// When this sealer started: a chain without checkpoints gets its first one a full
    /// interval later (or at shutdown), not at its first record.
    started: i64,
}

impl Sealer {
    pub fn new(store: Arc<dyn Store>, signer: Arc<SignerCell>, policy: CheckpointPolicy) -> Sealer {
        Sealer {
            store,
            signer,
            policy,
            started: now_us(),
        }
    }

    /// Seals one batch of what waits, with a checkpoint when one is due (or `force`d and the
    /// chain grew since the last). Returns how many records it sealed.
    pub async fn seal_once(&self, force: bool) -> Result<usize, StoreError> {
        let head = self.store.audit_head().await?;
        let pending = self.store.unsealed(BATCH).await?;
        let n = pending.len();
        let sealed = Record::chain(pending, head.count, head.hash);
        let (count, hash) = sealed
            .last()
            .map_or((head.count, head.hash), |(_, r)| (r.pos, r.hash));
        let grown = count - head.checkpoint_count;
        let due = grown >= self.policy.records
            || (grown > 0
                && (force
                    || now_us() - head.checkpoint_at.max(self.started)
                        >= self.policy.every.as_micros() as i64));
        let checkpoint = due.then(|| Checkpoint::sign(&self.signer.get(), count, hash));
        if n > 0 || checkpoint.is_some() {
            self.store.seal(sealed, checkpoint).await?;
        }
        Ok(n)
    }

    /// Seals everything that waits and checkpoints the end: at shutdown, so the chain a
    /// stopped bus leaves is whole and signed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        while self.seal_once(false).await? == BATCH {}
        self.seal_once(true).await.map(drop)
    }

    /// Seals for as long as this node leads the store's sealing (every node of a shared store
    /// runs one; one at a time leads, and another takes over when its session ends).
    pub async fn run(self: Arc<Self>) {
        loop {
            let lead = match self.store.lead_sealing().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "audit sealer: cannot take the lead; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut lost = lead.lost;
            loop {
                let round = tokio::select! {
                    _ = &mut lost => break,
                    r = self.seal_once(false) => r,
                };
                match round {
                    Ok(BATCH) => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "audit sealer: sealing failed"),
                }
                tokio::select! {
                    _ = &mut lost => break,
                    _ = tokio::time::sleep(IDLE) => {}
                }
            }
        }
    }
}

/// Records read from a store per round trip while verifying or exporting.
const PAGE: usize = 10_000;

/// Verifies a store's whole chain and every checkpoint; `progress` hears (checked, total).
pub async fn verify_store(
    store: &dyn AuditRead,
    keys: &KeySet,
    mut progress: impl FnMut(i64, i64),
) -> Result<Result<Verified, Broken>, StoreError> {
    let total = store.audit_head().await?.count;
    let mut v = match Verifier::new(keys, store.checkpoints().await?) {
        Ok(v) => v,
        Err(broken) => return Ok(Err(broken)),
    };
    let mut after = 0;
    loop {
        let page = store.audit_records(after, PAGE).await?;
        for r in &page {
            if let Err(b) = v.push(r) {
                return Ok(Err(b));
            }
        }
        match page.last() {
            Some(last) => after = last.pos,
            None => break,
        }
        progress(after, total);
    }
    Ok(v.finish())
}

/// Writes the sealed records accepted between `from` and `to` (microseconds since the epoch),
/// then every checkpoint over them and the first one after, as JSON lines.
pub async fn export(
    store: &dyn AuditRead,
    from: i64,
    to: i64,
    out: &mut impl std::io::Write,
) -> Result<usize, ExportError> {
    let mut after = 0;
    let (mut first, mut last, mut n) = (None, 0, 0);
    loop {
        let page = store.audit_records(after, PAGE).await?;
        for r in page.iter().filter(|r| (from..=to).contains(&r.entry.at)) {
            first.get_or_insert(r.pos);
            last = r.pos;
            writeln!(out, "{}", r.to_json())?;
            n += 1;
        }
        match page.last() {
            Some(r) => after = r.pos,
            None => break,
        }
    }
    if let Some(first) = first {
        let checkpoints = store.checkpoints().await?;
        let covering = checkpoints.iter().filter(|c| c.count >= first);
        let mut past_end = false;
        for c in covering {
            if past_end {
                break;
            }
            past_end = c.count >= last;
            writeln!(out, "{}", c.to_json())?;
        }
    }
    Ok(n)
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}
