//! Checks a chain and its checkpoints, from a store or from an export, with nothing but the
//! bus's certificates: `simpul audit verify` and anyone's own verifier do the same steps.

use super::{Checkpoint, Record};
use crate::trust::KeySet;

/// The first thing wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {pos}: {why}")]
pub struct Broken {
    /// The position of the first bad record (or of the checkpoint's last record).
    pub pos: i64,
    pub why: String,
}

/// An intact chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verified {
    pub records: i64,
    pub checkpoints: usize,
    /// Records after the last checkpoint: intact as far as the chain tells, signed by none.
    pub unsigned: i64,
}

/// Walks the chain record by record. Feed it records in position order, then call
/// [`Verifier::finish`]; the first inconsistency is returned at once.
pub struct Verifier {
    checkpoints: std::collections::BTreeMap<i64, Checkpoint>,
    expected: i64,
    last: [u8; 32],
    /// Where an export begins: its first record's `prev` cannot be checked against a record
    /// the export does not hold.
    partial: bool,
    verified: usize,
}

impl Verifier {
    /// Checks every checkpoint's signature first: a forged one is named before any record.
    pub fn new(keys: &KeySet, checkpoints: Vec<Checkpoint>) -> Result<Verifier, Broken> {
        let mut by_count = std::collections::BTreeMap::new();
        for c in checkpoints {
            let bad = |why: String| Broken {
                pos: c.count,
                why: format!("checkpoint over {} records: {why}", c.count),
            };
            let jws = crate::trust::jws::parse(&c.jws).map_err(|e| bad(e.to_string()))?;
            jws.verify(&keys.keys, None)
                .map_err(|e| bad(format!("signature: {e}")))?;
            if jws.payload.as_deref() != Some(&Checkpoint::payload(c.count, &c.head, c.at)[..]) {
                return Err(bad("its fields differ from what was signed".into()));
            }
            by_count.insert(c.count, c);
        }
        Ok(Verifier {
            checkpoints: by_count,
            expected: 1,
            last: [0; 32],
            partial: false,
            verified: 0,
        })
    }

    /// For an export that starts at `first`: the chain is checked from there.
    pub fn starting_at(mut self, first: i64) -> Self {
        self.expected = first;
        self.partial = first > 1;
        self.checkpoints.retain(|c, _| *c >= first);
        self
    }

    pub fn push(&mut self, r: &Record) -> Result<(), Broken> {
        let broken = |pos: i64, why: &str| Broken {
            pos,
            why: why.to_owned(),
        };
        if r.pos > self.expected {
            return Err(broken(
                self.expected,
                "missing: the chain jumps from here to a later record (deleted)",
            ));
        }
        if r.pos < self.expected {
            return Err(broken(r.pos, "appears twice or out of order (inserted)"));
        }
        if Record::hash_of(&r.entry, r.pos, &r.prev) != r.hash {
            return Err(broken(
                r.pos,
                "its content does not match its hash (edited)",
            ));
        }
        let first_of_export = self.partial && r.pos == self.expected && self.verified == 0;
        if r.prev != self.last && !first_of_export {
            return Err(broken(
                r.pos,
                "does not follow the record before it (inserted, deleted or reordered)",
            ));
        }
        if let Some(c) = self.checkpoints.get(&r.pos)
            && c.head != r.hash
        {
            return Err(broken(
                r.pos,
                &format!(
                    "the chain up to here differs from the signed checkpoint (head {} signed, \
                     {} found): a record at or before it was rewritten",
                    hex::encode(c.head),
                    hex::encode(r.hash)
                ),
            ));
        }
        self.last = r.hash;
        self.expected += 1;
        self.verified += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<Verified, Broken> {
        let count = self.expected - 1;
        if let Some((&c, _)) = self.checkpoints.range(count + 1..).next() {
            return Err(Broken {
                pos: count + 1,
                why: format!(
                    "missing: a checkpoint signed {c} records, the chain ends at {count} \
                     (records deleted at the end)"
                ),
            });
        }
        let last_signed = self.checkpoints.keys().next_back().copied().unwrap_or(0);
        Ok(Verified {
            records: count,
            checkpoints: self.checkpoints.len(),
            unsigned: count - last_signed.max(0),
        })
    }
}

/// Verifies an export (`simpul audit export`): its records chain from the first one it holds,
/// and every checkpoint in it is signed and matches the record it names.
pub fn verify_export(text: &str, keys: &KeySet) -> Result<Verified, Broken> {
    let (mut records, mut checkpoints) = (Vec::new(), Vec::new());
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = || Broken {
            pos: 0,
            why: format!("line {} is neither a record nor a checkpoint", i + 1),
        };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|_| bad())?;
        if v.get("checkpoint").is_some() {
            checkpoints.push(Checkpoint::from_json(&v).ok_or_else(bad)?);
        } else {
            records.push(Record::from_json(&v).ok_or_else(bad)?);
        }
    }
    let first = records.first().map_or(1, |r| r.pos);
    let mut v = Verifier::new(keys, checkpoints)?.starting_at(first);
    for r in &records {
        v.push(r)?;
    }
    v.finish()
}
