//! Several nodes on one PostgreSQL behave as one bus, lose nothing when a node is killed, and
//! ride out a PostgreSQL crash. These run on every pass: a bus of several nodes has no
//! embedded form.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn a_message_accepted_on_one_node_is_pulled_and_acked_through_another() {
    let a = Bus::start_on_postgres(&[]);
    let b = a.another_node();
    let ev = death(NIK);
    assert_status(&a.client(DUKCAPIL).send(&ev).await.unwrap(), 202);
    let hr = b.client(HR);
    let got = pull_now(&hr).await;
    assert_eq!(leased_ids(&got), [id_of(&ev)]);
    // Leased through B: A does not hand it out again while the lease runs.
    assert!(leased_ids(&pull_now(&a.client(HR)).await).is_empty());
    assert_status(&hr.ack(id_of(&ev)).await.unwrap(), 200);
    let status = a.client(DUKCAPIL).status(id_of(&ev)).await.unwrap();
    let hr_copy = &status.body["deliveries"][0];
    assert_eq!(hr_copy["recipient"], HR, "{:#}", status.body);
    assert_eq!(hr_copy["state"], "acked", "{:#}", status.body);
    // The same id again through B is the same message.
    let again = b.client(DUKCAPIL).send(&ev).await.unwrap();
    assert_eq!(again.body["status"], "duplicate");
}

#[test]
fn nodes_started_at_the_same_moment_on_a_new_schema_all_start() {
    // Each creates the schema if missing: that must not race (it once failed one of them on
    // PostgreSQL's unique index of schema names).
    let url = pg::fresh_url("together");
    let nodes: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Bus::start_on(url, &[]))
        })
        .collect();
    for n in nodes {
        let bus = n.join().expect("every node started");
        assert!(bus.base.starts_with("https://"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_poll_on_one_node_is_woken_by_an_accept_on_another() {
    let a = Bus::start_on_postgres(&[]);
    let b = a.another_node();
    let hr = b.client(HR);
    let poll = tokio::spawn(async move {
        hr.pull(10, Duration::from_secs(25), Duration::from_secs(30))
            .await
            .unwrap()
    });
    assert!(
        b.wait_for_log("waiting for messages").await,
        "the poll never waited"
    );
    let ev = death(NIK);
    assert_status(&a.client(DUKCAPIL).send(&ev).await.unwrap(), 202);
    let got = poll.await.unwrap();
    assert_eq!(leased_ids(&got), [id_of(&ev)]);
    // Woken by A's signal through PostgreSQL, not by its own periodic look.
    assert!(b.wait_for_log("inbox signal from another node").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_asked_on_one_node_is_answered_through_another() {
    let a = Bus::start_on_postgres(&[]);
    let b = a.another_node();
    let provider = tokio::spawn(provide_once(b.client(DUKCAPIL), verify_response()));
    let answer = a.client(DPMPTSP).send(&verify_request()).await.unwrap();
    assert_status(&answer, 200);
    assert_eq!(answer.body["data"], verify_response());
    assert_status(&provider.await.unwrap(), 200);
    // B told A through PostgreSQL, rather than A finding the reply on its own periodic look.
    assert!(a.wait_for_log("query signal from another node").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_requester_whose_node_died_gets_the_stored_answer_through_another() {
    let mut a = Bus::start_on_postgres(&[]);
    let b = a.another_node();
    let ask = verify_request();
    let asking = tokio::spawn({
        let requester = a.client(DPMPTSP);
        let ask = ask.clone();
        async move { requester.send(&ask).await }
    });
    // The provider takes the question through B, and A dies before the answer comes.
    let provider = b.client(DUKCAPIL);
    let got = provider
        .pull(1, Duration::from_secs(20), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(leased_ids(&got), [id_of(&ask)]);
    a.kill9();
    assert!(asking.await.unwrap().is_err(), "A answered after SIGKILL");
    assert_status(
        &provider
            .reply(id_of(&ask), &verify_response())
            .await
            .unwrap(),
        200,
    );
    // The requester's retry with the same id, through B, finds the stored answer at once.
    let retry = b.client(DPMPTSP).send(&ask).await.unwrap();
    assert_status(&retry, 200);
    assert_eq!(retry.body["data"], verify_response());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_mid_stream_loses_nothing() {
    let mut a = Bus::start_on_postgres(&[]);
    let b = a.another_node();
    // HR leases through A and never acks: A dies holding those leases.
    let first: Vec<Value> = (0..5).map(|_| death(NIK)).collect();
    for ev in &first {
        assert_status(&a.client(DUKCAPIL).send(ev).await.unwrap(), 202);
    }
    let held = a
        .client(HR)
        .pull(5, Duration::ZERO, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(leased_ids(&held).len(), 5);
    // A stream of sends through A; A is killed in the middle of it.
    let sender = a.client(DUKCAPIL);
    let (tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let stream = tokio::spawn(async move {
        for _ in 0..400 {
            let ev = death(NIK);
            match sender.send(&ev).await {
                Ok(r) if r.status == 202 => tx.send(id_of(&ev)).unwrap(),
                _ => break,
            }
        }
    });
    let mut must_arrive: HashSet<Uuid> = first.iter().map(id_of).collect();
    for _ in 0..50 {
        must_arrive.insert(accepted.recv().await.unwrap());
    }
    a.kill9();
    stream.await.unwrap();
    while let Ok(id) = accepted.try_recv() {
        must_arrive.insert(id);
    }
    // Every 202 arrives through B, the leased ones once their leases ran out.
    let hr = b.client(HR);
    let mut seen = HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !must_arrive.is_subset(&seen) && std::time::Instant::now() < deadline {
        // A long poll: it returns as soon as something is ready.
        let got = hr
            .pull(100, Duration::from_secs(2), Duration::from_secs(60))
            .await
            .unwrap();
        let ids = leased_ids(&got);
        if !ids.is_empty() {
            assert_status(&hr.ack_many(&ids).await.unwrap(), 200);
        }
        seen.extend(ids);
    }
    assert!(
        must_arrive.is_subset(&seen),
        "{} of {} accepted messages never arrived",
        must_arrive.difference(&seen).count(),
        must_arrive.len()
    );
}

/// A PostgreSQL of this test's own, so crashing it disturbs no other test.
struct PrivatePostgres(PathBuf);

impl PrivatePostgres {
    fn start() -> (PrivatePostgres, String) {
        let dir = repo()
            .join("target/services")
            .join(format!("crash-{}", Uuid::now_v7().simple()));
        let pg = PrivatePostgres(dir);
        let out = pg.run(&["start", "postgres"]);
        let url = out
            .lines()
            .find_map(|l| l.strip_prefix("export SIMPUL_STORE="))
            .expect("SIMPUL_STORE")
            .to_owned();
        (pg, url)
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(repo().join("scripts/services"))
            .args(args)
            .env("SIMPUL_SERVICES_DIR", &self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/services {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/services"))
            .args(["stop", "--immediate", "postgres"])
            .env("SIMPUL_SERVICES_DIR", &self.0)
            .output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_crash_mid_stream_loses_no_202_and_the_bus_recovers_by_itself() {
    let (pg, url) = PrivatePostgres::start();
    let bus = Bus::start_on(url, &[]);
    let c = bus.client(DUKCAPIL);
    // A sender that keeps sending through the crash, as an agency's outbox would.
    let (tx, answers) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sender = c.clone();
    let stream = tokio::spawn(async move {
        while !*stopped.borrow() {
            let ev = death(NIK);
            let a = sender.send(&ev).await.unwrap();
            tx.send(Answer {
                status: a.status.as_u16(),
                problem: a.problem().map(str::to_owned),
                retry_after: a.retry_after.is_some(),
                id: id_of(&ev),
            })
            .unwrap();
        }
    });
    let mut t = Tally {
        answers,
        accepted: HashSet::new(),
        refused: 0,
    };
    t.take(20).await;
    pg.run(&["stop", "--immediate", "postgres"]);
    t.until_refused().await; // the outage is seen: 503s, never a 202 that is not durable
    let ready = c.request(Method::GET, "/readyz", None, None).await.unwrap();
    assert_status(&ready, 503);
    let why = ready.body["detail"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("PostgreSQL"), "{why}");
    pg.run(&["start", "postgres"]);
    // Back by itself, with no restart of the bus: 20 more 202s.
    let before = t.accepted.len();
    tokio::time::timeout(Duration::from_secs(60), t.take(20))
        .await
        .expect("the bus did not recover after PostgreSQL came back");
    stop.send_replace(true);
    stream.await.unwrap();
    t.drain();
    assert!(t.refused > 0 && t.accepted.len() >= before + 20);
    let ready = c.request(Method::GET, "/readyz", None, None).await.unwrap();
    assert_status(&ready, 200);
    // Every 202, before the crash and after it, is delivered.
    let seen: HashSet<Uuid> = pull_all(&bus.client(HR)).await.into_iter().collect();
    let lost: Vec<_> = t.accepted.difference(&seen).collect();
    assert!(lost.is_empty(), "{} accepted messages lost", lost.len());
}

/// What the sender saw of one message it sent.
struct Answer {
    status: u16,
    problem: Option<String>,
    retry_after: bool,
    id: Uuid,
}

/// The answers of a sender that keeps sending through an outage.
struct Tally {
    answers: tokio::sync::mpsc::UnboundedReceiver<Answer>,
    accepted: HashSet<Uuid>,
    refused: usize,
}

impl Tally {
    /// Counts one answer: a 202, or the 503 that an outage must give (with Retry-After, so the
    /// sender's outbox knows when to try again); nothing else.
    fn count(&mut self, a: Answer) -> bool {
        match a.status {
            202 => {
                self.accepted.insert(a.id);
                true
            }
            503 => {
                assert_eq!(a.problem.as_deref(), Some("store-unavailable"));
                assert!(a.retry_after, "a 503 in the outage without Retry-After");
                self.refused += 1;
                false
            }
            other => panic!("answered {other} around the outage"),
        }
    }

    async fn take(&mut self, accepted: usize) {
        let mut n = 0;
        while n < accepted {
            let a = self.answers.recv().await.unwrap();
            n += usize::from(self.count(a));
        }
    }

    async fn until_refused(&mut self) {
        loop {
            let a = self.answers.recv().await.unwrap();
            if !self.count(a) {
                return;
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(a) = self.answers.try_recv() {
            self.count(a);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_refuses_a_schema_newer_than_it_knows() {
    let mut bus = Bus::start_on_postgres(&[]);
    bus.kill9();
    let url = bus.store.clone().unwrap();
    let psql = Command::new("psql")
        .arg(&url)
        .args(["-qAt", "-c", "UPDATE simpul_schema SET version = 99"])
        .output()
        .unwrap();
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    let out = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &url,
            "--certs",
        ])
        .arg(bus.certs())
        .arg("--data")
        .arg(bus.data())
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a node started on a newer schema");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("newer simpul (schema version 99; this binary knows up to "),
        "{err}"
    );
    assert_eq!(err.matches("newer simpul").count(), 1, "said once: {err}");
}
