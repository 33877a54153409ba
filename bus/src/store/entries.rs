//! The audit records that both backends write for the same operations, built in one place so
//! an action reads the same in the chain whichever store recorded it.

use uuid::Uuid;

use super::NewMessage;
use crate::audit::{Action, Entry};
use crate::identity::MemberId;
use crate::registry::Kind;

/// The audit record of an accepted message: its sender, recipients and digest.
pub fn accepted(m: &NewMessage) -> Entry {
    let action = match m.kind {
        Kind::Query => Action::Query,
        _ => Action::Accept,
    };
    let to: Vec<&str> = m.recipients.iter().map(|r| r.as_str()).collect();
    Entry::new(m.sender.as_str(), action)
        .type_(&m.type_)
        .id(m.id)
        .counterpart(to.join(","))
        .digest(&m.digest)
}

/// The audit record of an ack, or with a reason a nack, of `sender`'s message.
pub fn settled(
    member: &MemberId,
    nack: Option<&str>,
    type_: &str,
    id: Uuid,
    sender: &str,
) -> Entry {
    let action = if nack.is_some() {
        Action::Nack
    } else {
        Action::Ack
    };
    let e = Entry::new(member.as_str(), action)
        .type_(type_)
        .id(id)
        .counterpart(sender);
    match nack {
        Some(why) => e.detail(why),
        None => e,
    }
}

/// The audit record of a provider's reply, with the digest of the reply as delivered.
pub fn replied(provider: &MemberId, id: Uuid, requester: &str, type_: &str, body: &str) -> Entry {
    let e = Entry::new(provider.as_str(), Action::Reply)
        .type_(type_)
        .id(id)
        .counterpart(requester);
    match crate::trust::digest_json(body) {
        Some(d) => e.digest(&d),
        None => e,
    }
}

/// The audit record of a query taken back from its provider after its requester's timeout.
pub fn withdrawn(requester: &MemberId, id: Uuid, reason: &str) -> Entry {
    Entry::new(requester.as_str(), Action::DeadLetter)
        .id(id)
        .detail(reason)
}

/// The audit record of a sender reading its message's status.
pub fn status_read(sender: &MemberId, type_: &str, id: Uuid) -> Entry {
    Entry::new(sender.as_str(), Action::StatusRead)
        .type_(type_)
        .id(id)
}

/// The audit record of a feed read that returned events: which cursors `reader` was given.
/// A read that found nothing disclosed nothing and is not recorded.
pub fn feed_read(reader: &MemberId, type_: &str, items: &[super::FeedItem]) -> Option<Entry> {
    let (first, last) = (items.first()?, items.last()?);
    Some(
        Entry::new(reader.as_str(), Action::FeedRead)
            .type_(type_)
            .detail(format!(
                "cursors {}..={} ({} events)",
                first.cursor,
                last.cursor,
                items.len()
            )),
    )
}

/// Whether a feed read's record (its `detail`, as [`feed_read`] writes it) covers `cursor`.
pub fn feed_read_covers(detail: Option<&str>, cursor: i64) -> bool {
    let range = detail
        .and_then(|d| d.strip_prefix("cursors "))
        .and_then(|d| d.split(' ').next())
        .and_then(|r| r.split_once("..="));
    match range {
        Some((a, b)) => match (a.parse::<i64>(), b.parse::<i64>()) {
            (Ok(a), Ok(b)) => (a..=b).contains(&cursor),
            _ => false,
        },
        None => false,
    }
}

/// A person's records from the records of each message about them (`linked`) and the feed
/// reads of their types (`reads`, kept where their cursors cover `cursor`): oldest first,
/// each once.
pub fn subject_report(linked: Vec<Entry>, reads: Vec<(Entry, i64)>) -> Vec<Entry> {
    let mut out = linked;
    out.extend(
        reads
            .into_iter()
            .filter(|(e, cursor)| feed_read_covers(e.detail.as_deref(), *cursor))
            .map(|(e, _)| e),
    );
    out.sort_by(|a, b| (a.at, &a.actor).cmp(&(b.at, &b.actor)));
    out.dedup();
    out
}
