//! The background half of OCSP: asking again before answers go stale, forgetting certificates
//! nobody presents any more, and saying in `/readyz` what is wrong.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::sync::watch;

use super::{Answer, Entry, FORGET_AFTER, Key, Ocsp, OcspRefusal, RETRY, Status, current, verdict};

/// Asks in flight at once during a refresh round.
const ASKS_AT_ONCE: usize = 8;

fn revoked(e: &Entry) -> bool {
    matches!(
        e.answer,
        Some(Answer {
            status: Status::Revoked(_),
            ..
        })
    )
}

impl Ocsp {
    /// Changes whenever a certificate that was admitted no longer is (revoked, or under
    /// `require` its answer went stale), so connections presenting it are checked again.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Asks about every certificate whose answer is due, once a second, for ever.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut refused = HashSet::new();
        loop {
            tick.tick().await;
            // A few at a time: with a responder down each ask waits out its timeout.
            let this = &self;
            futures_util::stream::iter(self.due())
                .for_each_concurrent(ASKS_AT_ONCE, |k| async move { this.ask(&k).await })
                .await;
            let now = self.refused();
            if now.iter().any(|k| !refused.contains(k)) {
                self.changes.send_modify(|n| *n += 1);
            }
            refused = now;
        }
    }

    /// Entries to ask about now: every `refresh`, and every [`RETRY`] while the last ask
    /// failed or the answer is stale. Revoked is final and not asked again.
    fn due(&self) -> Vec<Key> {
        let refresh = self.settings.refresh;
        let now = SystemTime::now();
        let mut entries = self.entries();
        entries.retain(|_, e| e.seen.elapsed() < FORGET_AFTER);
        entries
            .iter()
            .filter(|(_, e)| e.url.is_some() && !revoked(e))
            .filter(|(_, e)| match &e.asked {
                None => true,
                Some((at, failed)) => {
                    let stale = e.answer.as_ref().is_none_or(|a| !current(a, refresh, now));
                    at.elapsed() >= refresh
                        || ((failed.is_some() || stale) && at.elapsed() >= RETRY)
                }
            })
            .map(|(k, _)| *k)
            .collect()
    }

    fn refused(&self) -> HashSet<Key> {
        let s = &self.settings;
        self.entries()
            .iter()
            .filter(|(_, e)| verdict(e, s.policy, s.refresh).is_err())
            .map(|(k, _)| *k)
            .collect()
    }

    /// `Err` naming each failing responder (with its last error and until when cached answers
    /// still admit) and every member refused for want of a current answer.
    pub fn health(&self) -> Result<(), String> {
        let s = &self.settings;
        let now = SystemTime::now();
        let entries = self.entries();
        // Per responder: its last error, the certificates affected, the earliest nextUpdate.
        let mut failing: BTreeMap<&str, (&str, usize, Option<SystemTime>)> = BTreeMap::new();
        let mut refused = BTreeSet::new();
        for e in entries.values() {
            if let (Some(url), Some((_, Some(err)))) = (&e.url, &e.asked) {
                let f = failing.entry(url).or_insert((err, 0, None));
                f.1 += 1;
                if let Some(t) = e.answer.as_ref().and_then(|a| a.next_update) {
                    f.2 = Some(f.2.map_or(t, |u: SystemTime| u.min(t)));
                }
            }
            if let Err(OcspRefusal::Unknown { .. }) = verdict(e, s.policy, s.refresh) {
                refused.insert(e.member.to_string());
            }
        }
        let mut why: Vec<String> = failing
            .into_iter()
            .map(|(url, (err, n, until))| {
                let until = match until {
                    Some(t) if t > now => format!(
                        "; cached answers admit until {}",
                        time::OffsetDateTime::from(t)
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default()
                    ),
                    _ => String::new(),
                };
                format!("OCSP responder {url} failing for {n} certificate(s): {err}{until}")
            })
            .collect();
        if !refused.is_empty() {
            let names: Vec<String> = refused.into_iter().collect();
            why.push(format!(
                "refused for want of a current OCSP answer (ocsp = \"require\"): {}",
                names.join(", ")
            ));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join("; "))
        }
    }
}
