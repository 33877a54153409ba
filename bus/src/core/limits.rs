//! Fairness between members: a token bucket per member for request rates, and per-member
//! caps on what a request can hold open for long (long polls, queries awaiting a reply).
//!
//! Both are in memory, per node: a limit is about what one node spends on one member.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::identity::MemberId;
use crate::registry::RateLimit;

/// Where a member's bucket stands after a request was let through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allowance {
    /// Whole requests left in the bucket now.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset: u64,
}

/// Over the rate: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded; retry in {retry_after:?}")]
pub struct OverRate {
    pub retry_after: Duration,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per member.
#[derive(Default)]
pub struct RateLimiter(Mutex<HashMap<MemberId, Bucket>>);

impl RateLimiter {
    /// Takes one token from `member`'s bucket, or says how long until one is there.
    pub fn take(&self, member: &MemberId, limit: RateLimit) -> Result<Allowance, OverRate> {
        self.take_at(member, limit, Instant::now())
    }

    fn take_at(
        &self,
        member: &MemberId,
        limit: RateLimit,
        now: Instant,
    ) -> Result<Allowance, OverRate> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let burst = f64::from(limit.burst);
        let b = map.entry(member.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * limit.per_second).min(burst);
        b.at = now;
        if b.tokens < 1.0 {
            let wait = (1.0 - b.tokens) / limit.per_second;
            return Err(OverRate {
                retry_after: Duration::from_secs_f64(wait),
            });
        }
        b.tokens -= 1.0;
        Ok(Allowance {
            remaining: b.tokens.floor() as u32,
            reset: ((burst - b.tokens) / limit.per_second).ceil() as u64,
        })
    }
}

/// At most `cap` things at once per member (long polls, waiting queries).
pub struct Slots {
    cap: usize,
    held: Mutex<HashMap<MemberId, usize>>,
}

/// A slot taken from [`Slots`]; given back when dropped, however the request ends.
pub struct Slot<'a> {
    slots: &'a Slots,
    member: MemberId,
}

impl Slots {
    pub fn new(cap: usize) -> Slots {
        Slots {
            cap,
            held: Mutex::default(),
        }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// A slot for `member`, or `None` when it already holds `cap`.
    pub fn take(&self, member: &MemberId) -> Option<Slot<'_>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(member.clone()).or_default();
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Slot {
            slots: self,
            member: member.clone(),
        })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.member) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.member);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let rl = RateLimiter::default();
        let m = MemberId::parse("GOV/a").unwrap();
        let limit = RateLimit {
            per_second: 10.0,
            burst: 3,
        };
        let t0 = Instant::now();
        for left in [2, 1, 0] {
            assert_eq!(rl.take_at(&m, limit, t0).unwrap().remaining, left);
        }
        let over = rl.take_at(&m, limit, t0).unwrap_err();
        assert!(over.retry_after <= Duration::from_millis(100));
        assert!(
            rl.take_at(&m, limit, t0 + Duration::from_millis(100))
                .is_ok()
        );
        // Another member has its own bucket.
        let other = MemberId::parse("GOV/b").unwrap();
        assert!(rl.take_at(&other, limit, t0).is_ok());
    }

    #[test]
    fn slots_are_per_member_and_come_back() {
        let slots = Slots::new(2);
        let (a, b) = (
            MemberId::parse("GOV/a").unwrap(),
            MemberId::parse("GOV/b").unwrap(),
        );
        let one = slots.take(&a).unwrap();
        let _two = slots.take(&a).unwrap();
        assert!(slots.take(&a).is_none());
        assert!(slots.take(&b).is_some());
        drop(one);
        assert!(slots.take(&a).is_some());
    }
}
