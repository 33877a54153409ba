//! The SQLite store's own behaviour (group commit, what waits for the disk, schema versions);
//! what every store must do is in `bus/tests/store_conformance.rs`.

use super::*;
use crate::registry::Kind;
use crate::store::AuditRead;

fn msg(sender: &MemberId, to: &MemberId, body: &str) -> NewMessage {
    NewMessage {
        id: Uuid::now_v7(),
        sender: sender.clone(),
        type_: "t".into(),
        kind: Kind::Message,
        hash: [7; 32],
        envelope: format!("{{\"data\":{body:?}}}"),
        digest: [7; 32],
        subjects: Vec::new(),
        warnings: "[]".into(),
        recipients: vec![to.clone()],
        to_feed: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(StoreOptions::new(dir.path().join("s.db"))).unwrap());
    let (a, b) = sender_and_recipient();
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
    let (a, b) = sender_and_recipient();
    (dir, store, a, b)
}

fn sender_and_recipient() -> (MemberId, MemberId) {
    (
        MemberId::parse("GOV/a").unwrap(),
        MemberId::parse("GOV/b").unwrap(),
    )
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
    assert_eq!(
        store.ack(&b, vec![m.id.into()]).await.unwrap(),
        [Settled::Done]
    );
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

/// A version 2 store (no lease tokens) keeps its open leases through the upgrade: an ack
/// without a token settles one, and new leases carry tokens.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_2_store_gains_lease_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let (a, b) = sender_and_recipient();
    let (held, fresh) = (msg(&a, &b, "held"), msg(&a, &b, "fresh"));
    let store = SqliteStore::open(StoreOptions::new(&path)).unwrap();
    store.append(vec![held.clone()]).await.unwrap();
    let req = LeaseRequest {
        max: 1,
        lease: Duration::from_secs(60),
        max_attempts: 5,
    };
    assert_eq!(store.lease(&b, req).await.unwrap().leased.len(), 1);
    store.close().await;
    // As version 2 wrote it: no token column.
    let c = Connection::open(&path).unwrap();
    c.execute_batch("ALTER TABLE deliveries DROP COLUMN lease_token; PRAGMA user_version = 2;")
        .unwrap();
    drop(c);
    let store = SqliteStore::open(StoreOptions::new(&path)).unwrap();
    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::VERSION);
    assert_eq!(
        store.ack(&b, vec![held.id.into()]).await.unwrap(),
        [Settled::Done]
    );
    store.append(vec![fresh.clone()]).await.unwrap();
    let token = store.lease(&b, req).await.unwrap().leased.remove(0).token;
    let ticket = Ticket {
        id: fresh.id,
        lease: Some(token),
    };
    assert_eq!(store.ack(&b, vec![ticket]).await.unwrap(), [Settled::Done]);
}

/// Asserts that `records` are the chain from its start: positions 1.., each holding the hash
/// of the one before and its own hash over its content.
fn assert_chained(records: &[crate::audit::Record]) {
    let mut prev = [0; 32];
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.pos, i as i64 + 1);
        assert_eq!(
            r.prev, prev,
            "record {} does not follow its predecessor",
            r.pos
        );
        let hash = crate::audit::Record::hash_of(&r.entry, r.pos, &r.prev);
        assert_eq!(r.hash, hash, "record {} has the wrong hash", r.pos);
        prev = r.hash;
    }
}

/// Records are chained as they are written; an operation that rolls back (a batch with a
/// conflicting id) takes its records' places in the chain with it, leaving no gap.
#[tokio::test]
async fn a_rolled_back_operation_leaves_no_gap_in_the_chain() {
    let (_dir, store, a, b) = fresh_store();
    let (first, dropped, last) = (msg(&a, &b, "1"), msg(&a, &b, "2"), msg(&a, &b, "3"));
    store.append(vec![first.clone()]).await.unwrap();
    let reused = NewMessage {
        hash: [8; 32],
        ..first.clone()
    };
    let out = store.append(vec![dropped, reused]).await.unwrap();
    assert!(matches!(out, AppendOutcome::Conflict(1)), "{out:?}");
    store.append(vec![last.clone()]).await.unwrap();
    assert_eq!(store.unsealed_count().await.unwrap(), 0);
    let records = store.audit_records(0, 10).await.unwrap();
    let ids: Vec<_> = records.iter().map(|r| r.entry.id).collect();
    assert_eq!(ids, [Some(first.id), Some(last.id)]);
    assert_chained(&records);
}

/// A store from before records were chained as written holds records left for the sealer:
/// opening it chains them, in the order they were written, before anything new.
#[tokio::test(flavor = "multi_thread")]
async fn records_an_older_version_left_unsealed_are_chained_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let (a, b) = sender_and_recipient();
    let store = SqliteStore::open(StoreOptions::new(&path)).unwrap();
    let sent: Vec<_> = (0..3).map(|i| msg(&a, &b, &i.to_string())).collect();
    for m in &sent {
        store.append(vec![m.clone()]).await.unwrap();
    }
    store.close().await;
    // As the earlier version left them: the first sealed, the other two not yet.
    Connection::open(&path)
        .unwrap()
        .execute_batch("UPDATE audit SET pos = NULL, prev = NULL, hash = NULL WHERE pos > 1")
        .unwrap();
    let store = SqliteStore::open(StoreOptions::new(&path)).unwrap();
    assert_eq!(store.unsealed_count().await.unwrap(), 0);
    let after = msg(&a, &b, "after");
    store.append(vec![after.clone()]).await.unwrap();
    let records = store.audit_records(0, 10).await.unwrap();
    let ids: Vec<_> = records.iter().map(|r| r.entry.id).collect();
    let expected: Vec<_> = sent.iter().chain([&after]).map(|m| Some(m.id)).collect();
    assert_eq!(ids, expected);
    assert_chained(&records);
}
