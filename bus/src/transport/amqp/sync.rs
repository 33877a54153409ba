//! Keeps the broker in step with the registry: the vhost, the bus's own user, one user per
//! member with `delivery = "amqp"` allowed to read only its own queues, and no user for a
//! member that left. Users are named by the SAN URI of their certificate, the name the broker
//! takes for an EXTERNAL login.

use lapin::Channel;

use super::management::{Management, Permission};
use super::{AmqpError, topology};
use crate::identity::{MemberId, bus_identity_uri};

/// What the registry asks of the broker.
pub struct Desired<'a> {
    pub instance: &'a str,
    pub vhost: &'a str,
    /// The members served over AMQP.
    pub members: &'a [MemberId],
    pub max_attempts: u32,
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '.' | '^' | '$' | '|' | '?' | '*' | '+' | '(' | ')' | '[' | ']' | '{' | '}' | '\\' => {
                format!("\\{c}")
            }
            c => c.to_string(),
        })
        .collect()
}

/// A member may consume its inbox and its dead letters, nothing else: no publishing (every
/// message goes through the bus's validation), no declaring. `^$` also covers the default
/// exchange, which the broker checks as `amq.default`.
pub fn member_permission(vhost: &str, instance: &str, m: &MemberId) -> Permission {
    Permission {
        user: m.to_spiffe_uri(instance),
        vhost: vhost.to_owned(),
        configure: "^$".into(),
        write: "^$".into(),
        read: format!("^simpul\\.(inbox|dead)\\.{}$", regex_escape(m.as_str())),
    }
}

/// Users, permissions and the vhost, through the management API; returns what changed, one
/// line each. Runs before the bus connects, since its own user is made here.
pub async fn users(api: &Management, want: &Desired<'_>) -> Result<Vec<String>, AmqpError> {
    let mut changes = Vec::new();
    if api.ensure_vhost(want.vhost).await? {
        changes.push(format!("created vhost {}", want.vhost));
    }
    let existing = api.users().await?;
    let granted = api.permissions(want.vhost).await?;
    let bus = bus_identity_uri(want.instance);
    let mut wanted: Vec<Permission> = want
        .members
        .iter()
        .map(|m| member_permission(want.vhost, want.instance, m))
        .collect();
    wanted.push(Permission {
        user: bus.clone(),
        vhost: want.vhost.to_owned(),
        configure: ".*".into(),
        write: ".*".into(),
        read: ".*".into(),
    });
    for p in &wanted {
        if !existing.contains(&p.user) {
            api.put_user(&p.user).await?;
            changes.push(format!("created user {}", p.user));
        }
        if !granted.contains(p) {
            api.set_permission(p).await?;
            changes.push(format!(
                "granted {} on {}: configure {:?}, write {:?}, read {:?}",
                p.user, p.vhost, p.configure, p.write, p.read
            ));
        }
    }
    // Ours: users of this instance with rights on this vhost that the registry no longer has.
    let prefix = format!("spiffe://{}/", want.instance);
    for p in granted
        .iter()
        .filter(|p| p.user.starts_with(&prefix) && !wanted.iter().any(|w| w.user == p.user))
    {
        api.clear_permission(want.vhost, &p.user).await?;
        changes.push(format!("revoked {} on {}", p.user, want.vhost));
        let closed = api.close_connections(want.vhost, &p.user).await?;
        if closed > 0 {
            changes.push(format!("closed {closed} connection(s) of {}", p.user));
        }
        if api.user_permissions(&p.user).await?.is_empty() {
            api.delete_user(&p.user).await?;
            changes.push(format!("deleted user {}", p.user));
        }
    }
    Ok(changes)
}

/// Exchanges, queues and bindings, over AMQP as the bus; returns the queues it created.
pub async fn topology(
    api: &Management,
    ch: &Channel,
    want: &Desired<'_>,
) -> Result<Vec<String>, AmqpError> {
    let before = api.queues(want.vhost).await?;
    topology::declare(ch, want.members, want.max_attempts).await?;
    Ok(want
        .members
        .iter()
        .flat_map(|m| [topology::inbox_queue(m), topology::dead_queue(m)])
        .filter(|q| !before.contains(q))
        .map(|q| format!("declared queue {q}"))
        .collect())
}
