//! The operator's side of a store: dead letters listed oldest first with their reasons, a
//! redrive of one or of the oldest that resets attempts and is audited in the same commit,
//! and the trace of an id.

use super::*;
use bus::store::Redrive;

pub async fn dead_letters_are_listed_and_redriven(store: &dyn Store) {
    let (a, b, op) = (member("GOV/a"), member("GOV/b"), member("GOV/op"));
    let ms: Vec<NewMessage> = (0..5)
        .map(|i| message(&a, &b, Kind::Message, &format!("d{i}")))
        .collect();
    store.append(ms.clone()).await.unwrap();
    assert_eq!(leased_ids(store, &b, lease(10, 30, 5)).await.len(), 5);
    for m in &ms {
        store.nack(&b, m.id.into(), "rusak").await.unwrap();
    }
    assert!(
        store
            .dead_letters(&a, 0, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let page = store.dead_letters(&b, 0, 2).await.unwrap();
    assert_eq!(page.total, 5);
    let first: Vec<Uuid> = page.items.iter().map(|d| d.id).collect();
    assert_eq!(first, [ms[0].id, ms[1].id]);
    assert_eq!(page.items[0].sender, a);
    assert_eq!(page.items[0].dead, Some(DeadLetter::Nacked));
    assert_eq!(page.items[0].attempts, 1);
    assert!(page.items[0].reason.as_deref().unwrap().contains("rusak"));
    let rest = store.dead_letters(&b, page.items[1].seq, 10).await.unwrap();
    let rest: Vec<Uuid> = rest.items.iter().map(|d| d.id).collect();
    assert_eq!(rest, [ms[2].id, ms[3].id, ms[4].id]);
    assert_eq!(store.dead_counts().await.unwrap(), [(b.clone(), 5)]);

    // One by id: back in the inbox as a first delivery.
    let one = Redrive::One {
        id: ms[3].id,
        sender: None,
    };
    assert_eq!(
        store.redrive(&op, &b, one.clone()).await.unwrap(),
        [(a.clone(), ms[3].id)]
    );
    assert!(
        store.redrive(&op, &b, one).await.unwrap().is_empty(),
        "not dead any more"
    );
    let again = store.lease(&b, lease(10, 30, 5)).await.unwrap();
    assert_eq!(again.leased.len(), 1);
    assert_eq!(again.leased[0].attempt, 1);
    let rec = store.message(&a, ms[3].id).await.unwrap().unwrap();
    assert_eq!(rec.deliveries[0].state, DeliveryState::Delivered);
    assert_eq!(rec.deliveries[0].reason, None);
    // Another sender's id is not this one.
    let wrong = Redrive::One {
        id: ms[0].id,
        sender: Some(member("GOV/c")),
    };
    assert!(store.redrive(&op, &b, wrong).await.unwrap().is_empty());

    // The oldest two, then the rest.
    let two = store.redrive(&op, &b, Redrive::Oldest(2)).await.unwrap();
    assert_eq!(two, [(a.clone(), ms[0].id), (a.clone(), ms[1].id)]);
    let rest = store.redrive(&op, &b, Redrive::Oldest(100)).await.unwrap();
    assert_eq!(rest, [(a.clone(), ms[2].id), (a.clone(), ms[4].id)]);
    assert_eq!(store.dead_letters(&b, 0, 10).await.unwrap().total, 0);
    assert_eq!(leased_ids(store, &b, lease(10, 30, 5)).await.len(), 4);

    // Each redrive is on the record, by the operator, naming the recipient.
    let trace = store.trace(ms[3].id).await.unwrap();
    let actions: Vec<Action> = trace.audit.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            Action::Accept,
            Action::Lease,
            Action::Nack,
            Action::Redrive,
            Action::Lease,
            Action::StatusRead, // this test's own read of the status above
        ]
    );
    let redrive = &trace.audit[3];
    assert_eq!(redrive.actor, "GOV/op");
    assert_eq!(redrive.counterpart.as_deref(), Some("GOV/b"));
    assert_eq!(trace.messages.len(), 1);
    assert_eq!(trace.messages[0].record.sender, a);
    assert!(trace.messages[0].envelope.contains(&ms[3].id.to_string()));
    // A trace reads; it records no status read of the sender's.
    let after = store.trace(ms[3].id).await.unwrap();
    assert_eq!(after.audit.len(), trace.audit.len());
    assert!(
        store
            .trace(Uuid::now_v7())
            .await
            .unwrap()
            .messages
            .is_empty()
    );
}
