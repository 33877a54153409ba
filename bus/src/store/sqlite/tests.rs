//! The SQLite store's own behaviour; the shared behaviour is in the end-to-end suite.

use super::*;
use crate::registry::Kind;
use crate::store::{Appended, DeadLetter, DeliveryState};

fn msg(sender: &MemberId, to: &MemberId, body: &str) -> NewMessage {
    NewMessage {
        id: Uuid::now_v7(),
        sender: sender.clone(),
        type_: "t".into(),
        kind: Kind::Message,
        hash: [7; 32],
        envelope: format!("{{\"data\":{body:?}}}"),
        warnings: "[]".into(),
        recipients: vec![to.clone()],
        to_feed: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(StoreOptions::new(dir.path().join("s.db"))).unwrap());
    let (a, b) = (
        MemberId::parse("GOV/a").unwrap(),
        MemberId::parse("GOV/b").unwrap(),
    );
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let (store, m) = (store.clone(), msg(&a, &b, &i.to_string()));
            tokio::spawn(async move { store.append(vec![m]).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(
            t.await.unwrap().unwrap(),
            AppendOutcome::Stored(_)
        ));
    }
    let commits = store.commits();
    assert!(
        commits < 200,
        "group commit should batch: {commits} commits for 400 appends"
    );
    let req = LeaseRequest {
        max: 100,
        lease: Duration::from_secs(30),
        max_attempts: 3,
    };
    let mut total = 0;
    loop {
        let got = store.lease(&b, req).await.unwrap().leased;
        if got.is_empty() {
            break;
        }
        total += got.len();
    }
    assert_eq!(total, 400);
}

/// An empty store in a temporary directory, and a sender and a recipient.
fn fresh_store() -> (tempfile::TempDir, SqliteStore, MemberId, MemberId) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(StoreOptions::new(dir.path().join("s.db"))).unwrap();
    let a = MemberId::parse("GOV/a").unwrap();
    let b = MemberId::parse("GOV/b").unwrap();
    (dir, store, a, b)
}

/// A 202, an ack and a reply wait for an fsync; a lease and a query's append do not need one
/// of their own.
#[tokio::test]
async fn only_promises_wait_for_the_disk() {
    let (_dir, store, a, b) = fresh_store();
    let m = msg(&a, &b, "1");
    store.append(vec![m.clone()]).await.unwrap();
    assert_eq!(
        store.syncs(),
        1,
        "an append is synced before it is answered"
    );
    let req = LeaseRequest {
        max: 10,
        lease: Duration::from_secs(30),
        max_attempts: 3,
    };
    assert_eq!(store.lease(&b, req).await.unwrap().leased.len(), 1);
    assert_eq!(store.syncs(), 1, "a lease alone is not synced");
    assert_eq!(store.ack(&b, vec![m.id]).await.unwrap(), [Settled::Done]);
    assert_eq!(store.syncs(), 2, "an ack is synced before it is answered");

    let q = NewMessage {
        kind: Kind::Query,
        ..msg(&a, &b, "2")
    };
    store.append(vec![q.clone()]).await.unwrap();
    assert_eq!(store.syncs(), 2, "a query waits for its reply's sync");
    assert_eq!(store.lease(&b, req).await.unwrap().leased.len(), 1);
    let out = store.reply(&b, q.id, None, "{}".into()).await.unwrap();
    assert_eq!(
        out,
        ReplyOutcome::Stored {
            requester: a.clone()
        }
    );
    assert_eq!(store.syncs(), 3, "a reply is synced before it is answered");
}

#[tokio::test]
async fn a_conflict_in_a_batch_stores_nothing() {
    let (_dir, store, a, b) = fresh_store();
    let first = msg(&a, &b, "1");
    store.append(vec![first.clone()]).await.unwrap();
    let fresh = msg(&a, &b, "2");
    let mut clash = first.clone();
    clash.hash = [9; 32];
    let out = store.append(vec![fresh.clone(), clash]).await.unwrap();
    assert_eq!(out, AppendOutcome::Conflict(1));
    assert!(store.message(&a, fresh.id).await.unwrap().is_none());
    let dup = store.append(vec![first.clone()]).await.unwrap();
    assert_eq!(
        dup,
        AppendOutcome::Stored(vec![Appended::Duplicate {
            warnings: "[]".into()
        }])
    );
}

fn lease_req() -> LeaseRequest {
    LeaseRequest {
        max: 10,
        lease: Duration::from_secs(30),
        max_attempts: 3,
    }
}

/// Ids belong to their sender: another member's earlier use of an id neither blocks nor
/// reveals mine, and a recipient acks each by the id it was given.
#[tokio::test]
async fn ids_are_per_sender() {
    let (_dir, store, a, b) = fresh_store();
    let c = MemberId::parse("COM/8120000123456").unwrap();
    let mine = msg(&a, &b, "1");
    let mut theirs = msg(&c, &b, "2");
    theirs.id = mine.id;
    theirs.hash = [1; 32];
    assert_eq!(
        store.append(vec![theirs.clone()]).await.unwrap(),
        AppendOutcome::Stored(vec![Appended::Accepted])
    );
    assert_eq!(
        store.append(vec![mine.clone()]).await.unwrap(),
        AppendOutcome::Stored(vec![Appended::Accepted])
    );
    assert!(store.message(&a, mine.id).await.unwrap().is_some());
    assert!(
        store
            .message(&MemberId::parse("GOV/x").unwrap(), mine.id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.lease(&b, lease_req()).await.unwrap().leased.len(), 2);
    assert_eq!(store.ack(&b, vec![mine.id]).await.unwrap(), [Settled::Done]);
    for sender in [&a, &c] {
        let rec = store.message(sender, mine.id).await.unwrap().unwrap();
        assert_eq!(rec.deliveries[0].state, DeliveryState::Acked);
    }
}

/// A query taken back after its requester's timeout is not leased, takes no reply, and is
/// put back by the requester's retry.
#[tokio::test]
async fn a_withdrawn_query_takes_no_reply_until_reopened() {
    let (_dir, store, a, b) = fresh_store();
    let q = NewMessage {
        kind: Kind::Query,
        ..msg(&a, &b, "q")
    };
    store.append(vec![q.clone()]).await.unwrap();
    assert!(store.withdraw(&a, q.id, "timed out").await.unwrap());
    assert!(
        store
            .lease(&b, lease_req())
            .await
            .unwrap()
            .leased
            .is_empty()
    );
    let out = store.reply(&b, q.id, None, "{}".into()).await.unwrap();
    assert_eq!(out, ReplyOutcome::Closed(DeadLetter::Withdrawn));
    assert!(store.reopen(&a, q.id).await.unwrap());
    assert_eq!(store.lease(&b, lease_req()).await.unwrap().leased.len(), 1);
    let out = store.reply(&b, q.id, None, "{}".into()).await.unwrap();
    assert_eq!(
        out,
        ReplyOutcome::Stored {
            requester: a.clone()
        }
    );
    assert!(!store.withdraw(&a, q.id, "late").await.unwrap());
}

/// A reply after the provider nacked the query is refused; the requester's answer stays the
/// nack.
#[tokio::test]
async fn a_nacked_query_takes_no_reply() {
    let (_dir, store, a, b) = fresh_store();
    let q = NewMessage {
        kind: Kind::Query,
        ..msg(&a, &b, "q")
    };
    store.append(vec![q.clone()]).await.unwrap();
    store.lease(&b, lease_req()).await.unwrap();
    let (settled, senders) = store.nack(&b, q.id, "no such person").await.unwrap();
    assert_eq!((settled, senders), (Settled::Done, vec![a.clone()]));
    let out = store.reply(&b, q.id, None, "{}".into()).await.unwrap();
    assert_eq!(out, ReplyOutcome::Closed(DeadLetter::Nacked));
    let rec = store.message(&a, q.id).await.unwrap().unwrap();
    assert_eq!(rec.deliveries[0].dead, Some(DeadLetter::Nacked));
    assert!(rec.reply.is_none());
}

/// A store written by a newer binary is refused, naming the versions.
#[test]
fn a_newer_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(SqliteStore::open(StoreOptions::new(&path)).unwrap());
    let c = Connection::open(&path).unwrap();
    c.pragma_update(None, "user_version", schema::VERSION + 1)
        .unwrap();
    drop(c);
    let err = SqliteStore::open(StoreOptions::new(&path))
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(text.contains("newer simpul"), "{text}");
}
