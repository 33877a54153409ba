//! Who this node has seen, when, and with which certificate: the console's "last seen" and
//! "certificate expiry" columns, the expiry gauge, and `/readyz`'s warning about members whose
//! certificate runs out soon.
//!
//! The listener records a member when its connection opens and then at most once a second
//! while the connection carries requests, so the request path pays nothing for it. It is this
//! node's view: with several nodes, each knows the members connected to it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::identity::MemberId;

/// How close to its expiry a member's certificate is named in `/readyz`.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// What this node last saw of one member.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub last: SystemTime,
    /// When the certificate it last connected with expires.
    pub not_after: Option<SystemTime>,
}

#[derive(Debug, Default)]
pub struct Presence(Mutex<HashMap<MemberId, Seen>>);

impl Presence {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<MemberId, Seen>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `member` connected with a certificate that expires at `not_after`.
    pub fn connected(&self, member: &MemberId, not_after: Option<SystemTime>) {
        let last = SystemTime::now();
        self.map().insert(member.clone(), Seen { last, not_after });
    }

    /// `member` is still at work on a connection it opened earlier.
    pub fn active(&self, member: &MemberId) {
        if let Some(seen) = self.map().get_mut(member) {
            seen.last = SystemTime::now();
        }
    }

    pub fn all(&self) -> HashMap<MemberId, Seen> {
        self.map().clone()
    }

    /// Each member's certificate expiry, in days from now (negative once past), for the
    /// `simpul_member_certificate_expiry_days` gauge.
    pub fn expiry_days(&self) -> Vec<(MemberId, f64)> {
        let now = SystemTime::now();
        self.map()
            .iter()
            .filter_map(|(m, s)| Some((m.clone(), days_from(now, s.not_after?))))
            .collect()
    }

    /// `Err` naming every member whose certificate (the one it last connected with) expires
    /// within [`EXPIRY_WARNING`], soonest first.
    pub fn expiring(&self) -> Result<(), String> {
        let now = SystemTime::now();
        let mut soon: Vec<(MemberId, SystemTime)> = self
            .map()
            .iter()
            .filter_map(|(m, s)| Some((m.clone(), s.not_after?)))
            .filter(|(_, t)| *t < now + EXPIRY_WARNING)
            .collect();
        if soon.is_empty() {
            return Ok(());
        }
        soon.sort_by_key(|(_, t)| *t);
        let named: Vec<String> = soon
            .iter()
            .map(|(m, t)| {
                let days = t.duration_since(now).map_or(0, |d| d.as_secs() / 86_400);
                let date = time::OffsetDateTime::from(*t).date();
                format!("{m} certificate expires in {days} days ({date})")
            })
            .collect();
        Err(named.join(", "))
    }
}

fn days_from(now: SystemTime, t: SystemTime) -> f64 {
    let secs = match t.duration_since(now) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    secs / 86_400.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_only_certificates_that_expire_soon_soonest_first() {
        let p = Presence::default();
        let day = Duration::from_secs(86_400);
        let (a, b, c) = (
            MemberId::parse("GOV/a").unwrap(),
            MemberId::parse("GOV/b").unwrap(),
            MemberId::parse("GOV/c").unwrap(),
        );
        p.connected(&a, Some(SystemTime::now() + 10 * day));
        p.connected(&b, Some(SystemTime::now() + 400 * day));
        p.connected(&c, Some(SystemTime::now() + 2 * day));
        let why = p.expiring().unwrap_err();
        assert!(
            why.starts_with("GOV/c certificate expires in 1 days"),
            "{why}"
        );
        assert!(why.contains("GOV/a") && !why.contains("GOV/b"), "{why}");
        let days: HashMap<_, _> = p.expiry_days().into_iter().collect();
        assert!((days[&b] - 400.0).abs() < 0.01);
    }
}
