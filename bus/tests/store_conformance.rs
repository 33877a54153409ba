//! One behavioural suite for every store: each backend runs these same tests through the
//! `Store` trait alone (`conformance!` below), so a second backend is held to exactly what the
//! embedded one promises.

use std::sync::Arc;
use std::time::Duration;

use bus::audit::{Action, Entry};
use bus::core::audit::{CheckpointPolicy, Sealer, verify_store};
use bus::identity::MemberId;
use bus::registry::Kind;
use bus::store::{
    AppendOutcome, Appended, DeadLetter, DeliveryState, LeaseRequest, NewMessage, Outbox,
    PgOptions, PgStore, ReplyOutcome, Settled, SqliteStore, Store, StoreOptions, Ticket,
};
use bus::trust::{KeySet, Signer, SignerCell};
use uuid::Uuid;

#[path = "../../tests/common/pg.rs"]
mod pg;

#[path = "conformance/admin.rs"]
mod admin;

fn member(s: &str) -> MemberId {
    MemberId::parse(s).unwrap()
}

fn message(sender: &MemberId, to: &MemberId, kind: Kind, body: &str) -> NewMessage {
    let id = Uuid::now_v7();
    NewMessage {
        id,
        sender: sender.clone(),
        type_: "t.test".into(),
        kind,
        hash: hash_of(body),
        envelope: format!(r#"{{"id":"{id}","data":{{"b":{body:?}}}}}"#),
        digest: [7; 32],
        subjects: Vec::new(),
        warnings: "[]".into(),
        recipients: vec![to.clone()],
        to_feed: kind == Kind::Event,
    }
}

/// A stand-in content hash: different bodies, different hashes.
fn hash_of(body: &str) -> [u8; 32] {
    let mut h = [0u8; 32];
    for (i, b) in body.bytes().enumerate() {
        h[i % 32] ^= b.wrapping_add(i as u8);
    }
    h
}

/// Acks by id alone, naming no lease.
fn tickets(ids: &[Uuid]) -> Vec<Ticket> {
    ids.iter().map(|&id| id.into()).collect()
}

fn lease(max: usize, secs: u64, max_attempts: u32) -> LeaseRequest {
    LeaseRequest {
        max,
        lease: Duration::from_millis(secs * 1000),
        max_attempts,
    }
}

async fn leased_ids(store: &dyn Store, who: &MemberId, req: LeaseRequest) -> Vec<Uuid> {
    let got = store.lease(who, req).await.unwrap();
    got.leased
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l.event.get()).unwrap();
            Uuid::parse_str(v["id"].as_str().unwrap()).unwrap()
        })
        .collect()
}

pub async fn a_batch_is_stored_all_or_nothing(store: &dyn Store) {
    let (a, b) = (member("GOV/a"), member("GOV/b"));
    let first = message(&a, &b, Kind::Message, "1");
    store.append(vec![first.clone()]).await.unwrap();
    let fresh = message(&a, &b, Kind::Message, "2");
    let mut clash = first.clone();
    clash.hash = hash_of("other");
    let out = store.append(vec![fresh.clone(), clash]).await.unwrap();
    assert_eq!(out, AppendOutcome::Conflict(1));
    assert!(store.message(&a, fresh.id).await.unwrap().is_none());
    assert_eq!(leased_ids(store, &b, lease(10, 30, 5)).await, [first.id]);
}

pub async fn ids_belong_to_their_sender(store: &dyn Store) {
    let (a, c, b) = (
        member("GOV/a"),
        member("COM/8120000123456"),
        member("GOV/b"),
    );
    let mine = message(&a, &b, Kind::Message, "mine");
    let mut theirs = message(&c, &b, Kind::Message, "theirs");
    theirs.id = mine.id;
    let stored = AppendOutcome::Stored(vec![Appended::Accepted]);
    assert_eq!(store.append(vec![theirs.clone()]).await.unwrap(), stored);
    assert_eq!(store.append(vec![mine.clone()]).await.unwrap(), stored);
    // The same sender, id and content again: the original answer.
    let dup = store.append(vec![mine.clone()]).await.unwrap();
    let Appended::Duplicate { warnings, envelope } = &match dup {
        AppendOutcome::Stored(r) => r,
        other => panic!("{other:?}"),
    }[0] else {
        panic!("not a duplicate")
    };
    assert_eq!(warnings, "[]");
    assert_eq!(
        envelope, &mine.envelope,
        "the envelope as stored the first time"
    );
    assert_eq!(store.message(&a, mine.id).await.unwrap().unwrap().sender, a);
    assert_eq!(store.message(&c, mine.id).await.unwrap().unwrap().sender, c);
    assert!(store.message(&b, mine.id).await.unwrap().is_none());
}

pub async fn an_expired_lease_is_delivered_again_then_dead_lettered(store: &dyn Store) {
    let (a, b, c) = (member("GOV/a"), member("GOV/b"), member("GOV/c"));
    // While a lease runs, the message is not delivered again.
    let held = message(&a, &c, Kind::Message, "held");
    store.append(vec![held.clone()]).await.unwrap();
    assert_eq!(leased_ids(store, &c, lease(10, 30, 5)).await, [held.id]);
    assert!(leased_ids(store, &c, lease(10, 30, 5)).await.is_empty());
    // A lease of no length has run out as soon as it is taken: no waiting on the clock.
    let m = message(&a, &b, Kind::Message, "x");
    store.append(vec![m.clone()]).await.unwrap();
    let expiring = LeaseRequest {
        max: 10,
        lease: Duration::ZERO,
        max_attempts: 2,
    };
    assert_eq!(leased_ids(store, &b, expiring).await, [m.id]);
    let again = store.lease(&b, expiring).await.unwrap();
    assert_eq!(again.leased.len(), 1);
    assert_eq!(again.leased[0].attempt, 2);
    // Out of attempts: the next lease dead-letters it and says whose it was.
    let last = store.lease(&b, expiring).await.unwrap();
    assert!(last.leased.is_empty());
    assert_eq!(last.expired, [(a.clone(), m.id)]);
    let rec = store.message(&a, m.id).await.unwrap().unwrap();
    assert_eq!(rec.deliveries[0].state, DeliveryState::DeadLettered);
    assert_eq!(rec.deliveries[0].dead, Some(DeadLetter::OutOfAttempts));
    assert_eq!(rec.deliveries[0].attempts, 2);
}

pub async fn acks_and_nacks_settle_once(store: &dyn Store) {
    let (a, b) = (member("GOV/a"), member("GOV/b"));
    let (m1, m2, m3) = (
        message(&a, &b, Kind::Message, "1"),
        message(&a, &b, Kind::Message, "2"),
        message(&a, &b, Kind::Message, "3"),
    );
    store
        .append(vec![m1.clone(), m2.clone(), m3.clone()])
        .await
        .unwrap();
    // Not leased yet: nothing to settle.
    assert_eq!(
        store.ack(&b, tickets(&[m1.id])).await.unwrap(),
        [Settled::NotFound]
    );
    assert_eq!(leased_ids(store, &b, lease(10, 30, 5)).await.len(), 3);
    // One batch ack, one answer per id.
    let unknown = Uuid::now_v7();
    let out = store
        .ack(&b, tickets(&[m1.id, m2.id, unknown]))
        .await
        .unwrap();
    assert_eq!(out, [Settled::Done, Settled::Done, Settled::NotFound]);
    assert_eq!(
        store.ack(&b, tickets(&[m1.id])).await.unwrap(),
        [Settled::AlreadyDone]
    );
    let (nacked, senders) = store.nack(&b, m3.id.into(), "no").await.unwrap();
    assert_eq!((nacked, senders), (Settled::Done, vec![a.clone()]));
    assert_eq!(
        store.ack(&b, tickets(&[m3.id])).await.unwrap(),
        [Settled::Conflict]
    );
    assert_eq!(
        store.nack(&b, m1.id.into(), "late").await.unwrap().0,
        Settled::Conflict
    );
    // Another member cannot settle what is in b's inbox.
    assert_eq!(
        store.ack(&a, tickets(&[m2.id])).await.unwrap(),
        [Settled::NotFound]
    );
    let rec = store.message(&a, m3.id).await.unwrap().unwrap();
    assert!(rec.deliveries[0].reason.as_deref().unwrap().contains("no"));
    assert_eq!(rec.deliveries[0].dead, Some(DeadLetter::Nacked));
}

/// An ack or nack naming a lease that ran out, after the message was leased again, is refused;
/// the current lease settles it. Without a lease, the current lease is meant.
pub async fn a_stale_lease_cannot_settle(store: &dyn Store) {
    let (a, b) = (member("GOV/a"), member("GOV/b"));
    let m = message(&a, &b, Kind::Message, "s");
    store.append(vec![m.clone()]).await.unwrap();
    let expiring = LeaseRequest {
        max: 1,
        lease: Duration::ZERO,
        max_attempts: 5,
    };
    let first = store
        .lease(&b, expiring)
        .await
        .unwrap()
        .leased
        .remove(0)
        .token;
    let second = store
        .lease(&b, lease(1, 30, 5))
        .await
        .unwrap()
        .leased
        .remove(0)
        .token;
    assert_ne!(first, second, "every lease has its own token");
    let stale = Ticket {
        id: m.id,
        lease: Some(first),
    };
    assert_eq!(store.ack(&b, vec![stale]).await.unwrap(), [Settled::Stale]);
    assert_eq!(
        store.nack(&b, stale, "late").await.unwrap().0,
        Settled::Stale
    );
    let current = Ticket {
        id: m.id,
        lease: Some(second),
    };
    assert_eq!(store.ack(&b, vec![current]).await.unwrap(), [Settled::Done]);
    assert_eq!(
        store.ack(&b, vec![current]).await.unwrap(),
        [Settled::AlreadyDone]
    );
    let rec = store.message(&a, m.id).await.unwrap().unwrap();
    assert_eq!(rec.deliveries[0].state, DeliveryState::Acked);
}

pub async fn the_first_reply_wins(store: &dyn Store) {
    let (a, p) = (member("GOV/a"), member("GOV/p"));
    let q = message(&a, &p, Kind::Query, "q");
    store.append(vec![q.clone()]).await.unwrap();
    assert_eq!(leased_ids(store, &p, lease(1, 30, 5)).await, [q.id]);
    assert_eq!(
        store.addressed(&p, q.id).await.unwrap(),
        [(a.clone(), "t.test".to_owned())]
    );
    let out = store
        .reply(&p, q.id, None, "{\"r\":1}".into())
        .await
        .unwrap();
    assert_eq!(
        out,
        ReplyOutcome::Stored {
            requester: a.clone()
        }
    );
    let again = store
        .reply(&p, q.id, None, "{\"r\":2}".into())
        .await
        .unwrap();
    assert_eq!(again, ReplyOutcome::Existing("{\"r\":1}".into()));
    // Only the provider holding it may reply.
    let other = store.reply(&a, q.id, None, "{}".into()).await.unwrap();
    assert_eq!(other, ReplyOutcome::NotFound);
    let rec = store.message(&a, q.id).await.unwrap().unwrap();
    assert_eq!(rec.reply.as_deref(), Some("{\"r\":1}"));
    assert_eq!(rec.deliveries[0].state, DeliveryState::Acked);
}

pub async fn feed_cursors_never_skip_or_repeat(store: Arc<dyn Store>) {
    let (a, b) = (member("GOV/a"), member("GOV/b"));
    // Counts appends, so the reader waits for the next one instead of polling the clock.
    let (appended, mut next) = tokio::sync::watch::channel(0usize);
    let appended = Arc::new(appended);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (store, a, b, appended) = (store.clone(), a.clone(), b.clone(), appended.clone());
            tokio::spawn(async move {
                for i in 0..25 {
                    let mut ev = message(&a, &b, Kind::Event, &format!("{w}-{i}"));
                    ev.type_ = "t.feed".into();
                    store.append(vec![ev]).await.unwrap();
                    appended.send_modify(|n| *n += 1);
                }
            })
        })
        .collect();
    // A reader following the feed while the writers append.
    let mut seen = Vec::new();
    let mut after = 0;
    while seen.len() < 200 {
        // Read before the page: if every append had returned by then, the page must hold
        // whatever is left.
        let all_appended = *next.borrow_and_update() == 200;
        let page = store.feed(&b, "t.feed", after, 7).await.unwrap();
        for item in &page {
            assert!(item.cursor > after, "cursor went back");
            after = item.cursor;
            seen.push(item.event.get().to_owned());
        }
        if page.is_empty() {
            // Every append has returned and the feed has nothing after the cursor: it skipped.
            assert!(
                !all_appended,
                "the feed skipped events: it has nothing after {after} with {} of 200 read",
                seen.len()
            );
            let more = tokio::time::timeout(Duration::from_secs(30), next.changed()).await;
            assert!(
                matches!(more, Ok(Ok(()))),
                "the feed stopped at {} of 200 events",
                seen.len()
            );
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 200, "a feed item was repeated");
    assert!(
        store
            .feed(&b, "t.feed", after, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Consumers leasing at once (on one node or several) never get the same message while its
/// lease runs.
pub async fn concurrent_leases_never_share_a_message(store: Arc<dyn Store>) {
    let (a, b) = (member("GOV/a"), member("GOV/b"));
    let batch: Vec<_> = (0..200)
        .map(|i| message(&a, &b, Kind::Message, &i.to_string()))
        .collect();
    store.append(batch).await.unwrap();
    let lessees: Vec<_> = (0..8)
        .map(|_| {
            let (store, b) = (store.clone(), b.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = leased_ids(store.as_ref(), &b, lease(7, 60, 5)).await;
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got);
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for l in lessees {
        all.extend(l.await.unwrap());
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!((total, all.len()), (200, 200), "a message was leased twice");
}

/// Appends running at once (sharing a group commit, where the store has one) are each all or
/// nothing on their own: one that reuses an id with other content fails alone, and the same
/// new message sent twice at once is stored once.
pub async fn concurrent_appends_stand_or_fall_alone(store: Arc<dyn Store>) {
    let (a, b) = (member("GOV/a"), member("GOV/b"));
    let old = message(&a, &b, Kind::Message, "old");
    store.append(vec![old.clone()]).await.unwrap();
    let twice = message(&a, &b, Kind::Message, "twice");
    let mut tasks = Vec::new();
    for i in 0..60 {
        let batch = match i % 3 {
            // A fresh message, then one that reuses `old`'s id with other content.
            0 => {
                let mut clash = old.clone();
                clash.hash = hash_of(&format!("other {i}"));
                vec![message(&a, &b, Kind::Message, &format!("f{i}")), clash]
            }
            1 => vec![message(&a, &b, Kind::Event, &format!("e{i}"))],
            _ => vec![twice.clone()],
        };
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            (i, store.append(batch).await.unwrap())
        }));
    }
    let mut accepted_twice = 0;
    for t in tasks {
        let (i, out) = t.await.unwrap();
        match (i % 3, out) {
            (0, AppendOutcome::Conflict(1)) => {}
            (1, AppendOutcome::Stored(r)) => assert_eq!(r, [Appended::Accepted]),
            (2, AppendOutcome::Stored(r)) => {
                accepted_twice += usize::from(r == [Appended::Accepted]);
            }
            (_, other) => panic!("append {i}: {other:?}"),
        }
    }
    assert_eq!(
        accepted_twice, 1,
        "the same message was stored more than once"
    );
    // Only what was accepted is in the inbox: old, 20 events, and `twice` once.
    let mut got = Vec::new();
    loop {
        let page = leased_ids(store.as_ref(), &b, lease(100, 60, 5)).await;
        if page.is_empty() {
            break;
        }
        got.extend(page);
    }
    assert_eq!(got.len(), 22, "the inbox holds what was refused");
    assert!(got.contains(&old.id) && got.contains(&twice.id));
}

pub async fn status_follows_the_deliveries(store: &dyn Store) {
    let (a, b) = (member("GOV/a"), member("GOV/b"));
    let m = message(&a, &b, Kind::Message, "s");
    store.append(vec![m.clone()]).await.unwrap();
    async fn state(s: &dyn Store, a: &MemberId, id: Uuid) -> DeliveryState {
        s.message(a, id).await.unwrap().unwrap().deliveries[0].state
    }
    assert_eq!(state(store, &a, m.id).await, DeliveryState::Pending);
    leased_ids(store, &b, lease(1, 30, 5)).await;
    assert_eq!(state(store, &a, m.id).await, DeliveryState::Delivered);
    store.ack(&b, tickets(&[m.id])).await.unwrap();
    assert_eq!(state(store, &a, m.id).await, DeliveryState::Acked);
    assert!(store.health().await.is_ok());
}

pub async fn a_withdrawn_query_takes_no_reply_until_reopened(store: &dyn Store) {
    let (a, p) = (member("GOV/a"), member("GOV/p"));
    let q = message(&a, &p, Kind::Query, "q");
    store.append(vec![q.clone()]).await.unwrap();
    assert!(store.withdraw(&a, q.id, "timed out").await.unwrap());
    assert!(leased_ids(store, &p, lease(10, 30, 5)).await.is_empty());
    let out = store.reply(&p, q.id, None, "{}".into()).await.unwrap();
    assert_eq!(out, ReplyOutcome::Closed(DeadLetter::Withdrawn));
    // The requester's retry puts it back.
    assert!(store.reopen(&a, q.id).await.unwrap());
    assert_eq!(leased_ids(store, &p, lease(10, 30, 5)).await, [q.id]);
    let out = store.reply(&p, q.id, None, "{}".into()).await.unwrap();
    assert_eq!(
        out,
        ReplyOutcome::Stored {
            requester: a.clone()
        }
    );
    assert!(!store.withdraw(&a, q.id, "late").await.unwrap());
}

pub async fn a_nacked_query_takes_no_reply(store: &dyn Store) {
    let (a, p) = (member("GOV/a"), member("GOV/p"));
    let q = message(&a, &p, Kind::Query, "q");
    store.append(vec![q.clone()]).await.unwrap();
    leased_ids(store, &p, lease(10, 30, 5)).await;
    let (settled, senders) = store.nack(&p, q.id.into(), "no such person").await.unwrap();
    assert_eq!((settled, senders), (Settled::Done, vec![a.clone()]));
    let out = store.reply(&p, q.id, None, "{}".into()).await.unwrap();
    assert_eq!(out, ReplyOutcome::Closed(DeadLetter::Nacked));
    let rec = store.message(&a, q.id).await.unwrap().unwrap();
    assert_eq!(rec.deliveries[0].dead, Some(DeadLetter::Nacked));
    assert!(rec.reply.is_none());
}

/// Every action leaves its record in the same commit, in order; they end up in one chain in
/// commit order (chained as written by a store with one writer, or by the one sealer),
/// however many writers ran at once, and the chain verifies with its checkpoints.
pub async fn every_action_is_audited_into_one_chain(store: Arc<dyn Store>) {
    let (a, b) = (member("GOV/a"), member("GOV/b"));
    let m = message(&a, &b, Kind::Message, "1");
    store.append(vec![m.clone()]).await.unwrap();
    leased_ids(store.as_ref(), &b, lease(10, 30, 5)).await;
    store.ack(&b, tickets(&[m.id])).await.unwrap();
    store.message(&a, m.id).await.unwrap().unwrap();
    let refusal = Entry::new("GOV/a", Action::Reject).detail("message: schema-validation");
    store.record(vec![refusal]).await.unwrap();

    let pki = tempfile::tempdir().unwrap();
    bus::pki::DevCa::init(pki.path(), "simpul.test", &[], false).unwrap();
    let signer = Signer::load(
        &pki.path().join("server.pem"),
        &pki.path().join("server.key"),
    );
    let policy = CheckpointPolicy {
        every: Duration::from_secs(3600),
        records: 10,
    };
    let sealer = Arc::new(Sealer::new(
        store.clone(),
        Arc::new(SignerCell::new(signer.unwrap(), &KeySet::default())),
        policy,
    ));
    // A store may chain its records as it writes them (one writer) or leave them to the
    // sealer (several); either way, once the sealer has flushed, they are chained in order.
    sealer.flush().await.unwrap();
    let chained = store.audit_records(0, 100).await.unwrap();
    let actions: Vec<Action> = chained.iter().map(|r| r.entry.action).collect();
    use Action::*;
    assert_eq!(actions, [Accept, Lease, Ack, StatusRead, Reject]);
    let positions: Vec<i64> = chained.iter().map(|r| r.pos).collect();
    assert_eq!(positions, [1, 2, 3, 4, 5]);
    let accept = &chained[0].entry;
    assert_eq!(accept.actor, "GOV/a");
    assert_eq!(accept.counterpart.as_deref(), Some("GOV/b"));
    assert_eq!(accept.id, Some(m.id));
    assert_eq!(accept.digest, Some(hex::encode([7u8; 32])));
    assert_eq!(chained[1].entry.counterpart.as_deref(), Some("GOV/a"));

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            let (a, b) = (a.clone(), b.clone());
            tokio::spawn(async move {
                for i in 0..10 {
                    let m = message(&a, &b, Kind::Message, &format!("{w}-{i}"));
                    store.append(vec![m]).await.unwrap();
                }
            })
        })
        .collect();
    let sealing = tokio::spawn(sealer.clone().run());
    for w in writers {
        w.await.unwrap();
    }
    sealing.abort();
    sealer.flush().await.unwrap();
    assert_eq!(store.unsealed_count().await.unwrap(), 0);
    let keys = KeySet::from_pem_files(&[pki.path().join("server.pem")]).unwrap();
    let verified = verify_store(store.as_ref(), &keys, |_, _| {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(verified.records, 45);
    assert!(verified.checkpoints >= 1, "{verified:?}");
    assert_eq!(verified.unsigned, 0, "flush signs the end of the chain");
}

/// Runs every test above against one backend; `$make` builds a fresh, empty store (and
/// whatever must live as long as it).
macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            macro_rules! case {
                ($name:ident, $arg:ident => $call:expr) => {
                    #[tokio::test(flavor = "multi_thread")]
                    async fn $name() {
                        let (_keep, $arg) = $make;
                        $call.await;
                    }
                };
            }

            case!(a_batch_is_stored_all_or_nothing, s => super::a_batch_is_stored_all_or_nothing(s.as_ref()));
            case!(ids_belong_to_their_sender, s => super::ids_belong_to_their_sender(s.as_ref()));
            case!(an_expired_lease_is_delivered_again_then_dead_lettered, s => super::an_expired_lease_is_delivered_again_then_dead_lettered(s.as_ref()));
            case!(acks_and_nacks_settle_once, s => super::acks_and_nacks_settle_once(s.as_ref()));
            case!(a_stale_lease_cannot_settle, s => super::a_stale_lease_cannot_settle(s.as_ref()));
            case!(the_first_reply_wins, s => super::the_first_reply_wins(s.as_ref()));
            case!(a_withdrawn_query_takes_no_reply_until_reopened, s => super::a_withdrawn_query_takes_no_reply_until_reopened(s.as_ref()));
            case!(a_nacked_query_takes_no_reply, s => super::a_nacked_query_takes_no_reply(s.as_ref()));
            case!(feed_cursors_never_skip_or_repeat, s => super::feed_cursors_never_skip_or_repeat(s));
            case!(concurrent_leases_never_share_a_message, s => super::concurrent_leases_never_share_a_message(s));
            case!(concurrent_appends_stand_or_fall_alone, s => super::concurrent_appends_stand_or_fall_alone(s));
            case!(status_follows_the_deliveries, s => super::status_follows_the_deliveries(s.as_ref()));
            case!(every_action_is_audited_into_one_chain, s => super::every_action_is_audited_into_one_chain(s));
            case!(dead_letters_are_listed_and_redriven, s => super::admin::dead_letters_are_listed_and_redriven(s.as_ref()));
        }
    };
}

fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(StoreOptions::new(dir.path().join("s.db"))).unwrap();
    (dir, Arc::new(store))
}

conformance!(sqlite_store, sqlite());

/// A store in a schema of its own in the shared PostgreSQL: every test starts empty.
async fn postgres() -> ((), Arc<dyn Store>) {
    let url = pg::fresh_url("conformance");
    let store = PgStore::connect(PgOptions::new(url)).await.unwrap();
    ((), Arc::new(store))
}

conformance!(postgres_store, postgres().await);

/// PostgreSQL only (the embedded store keeps everything): settled messages go once past
/// `--retention`, open ones stay whatever their age.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_purges_settled_messages_past_retention() {
    let mut opts = PgOptions::new(pg::fresh_url("retention"));
    opts.retention = Duration::ZERO;
    opts.purge_every = Duration::from_millis(50);
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(opts).await.unwrap());
    let (a, b) = (member("GOV/a"), member("GOV/b"));
    let (done, open) = (
        message(&a, &b, Kind::Event, "done"),
        message(&a, &b, Kind::Message, "open"),
    );
    store.append(vec![done.clone()]).await.unwrap();
    assert_eq!(
        leased_ids(store.as_ref(), &b, lease(1, 30, 5)).await,
        [done.id]
    );
    store.ack(&b, tickets(&[done.id])).await.unwrap();
    store.append(vec![open.clone()]).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.message(&a, done.id).await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "never purged");
        tokio::task::yield_now().await;
    }
    assert!(store.message(&a, open.id).await.unwrap().is_some());
    assert!(store.feed(&b, "t.test", 0, 10).await.unwrap().is_empty());
}

/// PostgreSQL only: one node of a bus relays (and seals) at a time, but buses in other schemas
/// of the same database do not wait for it: the session lock is the schema's.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_leadership_is_per_schema() {
    let url = pg::fresh_url("lead");
    let node_a = PgStore::connect(PgOptions::new(url.clone())).await.unwrap();
    let node_b = PgStore::connect(PgOptions::new(url)).await.unwrap();
    let other_bus = PgStore::connect(PgOptions::new(pg::fresh_url("lead")))
        .await
        .unwrap();
    let held = node_a.lead().await.unwrap();
    let limit = Duration::from_secs(20);
    let other = tokio::time::timeout(limit, other_bus.lead()).await;
    assert!(
        other.is_ok(),
        "another schema's bus waited for this one's lock"
    );
    // The same bus's second node takes over once the first's session ends, not before.
    let mut waiting = tokio::spawn(async move { node_b.lead().await.map(drop) });
    // It tries once a second: after three tries it still must not lead.
    let early = tokio::time::timeout(Duration::from_millis(3500), &mut waiting).await;
    assert!(early.is_err(), "two nodes of one bus led at once");
    drop(held);
    let took_over = tokio::time::timeout(limit, waiting).await;
    assert!(matches!(took_over, Ok(Ok(Ok(())))), "{took_over:?}");
}
