//! A 202 means durable: kill -9 after the 202s and nothing is lost.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn every_accepted_message_survives_kill_9() {
    const N: usize = 300;
    let mut bus = Bus::start(&[]);
    let biz = bus.client(BIZ);
    let events: Vec<_> = (0..N).map(|_| permit()).collect();
    // Concurrent senders, so group commit batches many messages per fsync.
    let mut tasks = Vec::new();
    for chunk in events.chunks(N / 10) {
        let (c, chunk) = (biz.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for ev in chunk {
                let a = c.send(&ev).await.unwrap();
                assert_status(&a, 202);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    bus.kill9();
    bus.restart();

    let mut seen = HashSet::new();
    for id in pull_all(&bus.client(DPMPTSP)).await {
        assert!(seen.insert(id), "{id} delivered twice");
    }
    let sent: HashSet<_> = events.iter().map(id_of).collect();
    assert_eq!(seen, sent);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_shuts_down_cleanly_and_keeps_everything() {
    let mut bus = Bus::start(&[]);
    let ev = permit();
    assert_status(&bus.client(BIZ).send(&ev).await.unwrap(), 202);
    assert!(bus.terminate(), "simpul did not exit cleanly on SIGTERM");
    let logs = bus.logs();
    assert!(logs.contains("flushing the store"), "{logs}");
    bus.restart();
    let got = pull_now(&bus.client(DPMPTSP)).await;
    assert_eq!(leased_ids(&got), [id_of(&ev)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_does_not_wait_for_long_polls() {
    let mut bus = Bus::start(&[]);
    let hr = bus.client(HR);
    let poll = tokio::spawn(async move {
        hr.pull(1, Duration::from_secs(30), Duration::from_secs(30))
            .await
    });
    assert!(
        bus.wait_for_log("waiting for messages").await,
        "the poll never parked"
    );
    let started = std::time::Instant::now();
    assert!(bus.terminate(), "simpul did not exit cleanly on SIGTERM");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited for the long poll"
    );
    let answer = poll.await.unwrap().unwrap();
    assert_status(&answer, 200);
    assert!(leased_ids(&answer).is_empty());
}
