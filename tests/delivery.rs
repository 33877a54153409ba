//! Pull delivery with leases, acks, nacks, dead letters, status and replayable feeds.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn send_pull_ack_and_status_walk_through() {
    let bus = Bus::start(&[]);
    let biz = bus.client(BIZ);
    let ev = permit();
    assert_status(&biz.send(&ev).await.unwrap(), 202);
    let s = biz.status(id_of(&ev)).await.unwrap();
    assert_eq!(s.body["status"], "accepted");
    assert_eq!(s.body["deliveries"][0]["recipient"], DPMPTSP);
    assert_eq!(s.body["deliveries"][0]["state"], "pending");

    let dpmptsp = bus.client(DPMPTSP);
    let got = pull_now(&dpmptsp).await;
    assert_eq!(leased_ids(&got), [id_of(&ev)]);
    assert_eq!(got.body["messages"][0]["attempt"], 1);
    assert_eq!(
        biz.status(id_of(&ev)).await.unwrap().body["status"],
        "delivered"
    );

    assert_status(&dpmptsp.ack(id_of(&ev)).await.unwrap(), 200);
    let s = biz.status(id_of(&ev)).await.unwrap();
    assert_eq!(s.body["status"], "acked");
    assert_eq!(s.body["deliveries"][0]["state"], "acked");
    // Acked messages are not delivered again.
    assert!(leased_ids(&pull_now(&dpmptsp).await).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_lease_is_delivered_again() {
    let bus = Bus::start(&[]);
    let ev = permit();
    assert_status(&bus.client(BIZ).send(&ev).await.unwrap(), 202);
    let dpmptsp = bus.client(DPMPTSP);
    let first = dpmptsp
        .pull(1, Duration::ZERO, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(leased_ids(&first), [id_of(&ev)]);
    // Not visible while leased...
    assert!(leased_ids(&dpmptsp.pull(1, Duration::ZERO, LEASE).await.unwrap()).is_empty());
    // ...and delivered again once the lease runs out (the long poll waits for it).
    let again = dpmptsp
        .pull(1, Duration::from_secs(10), LEASE)
        .await
        .unwrap();
    assert_eq!(leased_ids(&again), [id_of(&ev)]);
    assert_eq!(again.body["messages"][0]["attempt"], 2);
    assert_status(&dpmptsp.ack(id_of(&ev)).await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nack_dead_letters_with_the_reason_for_the_sender() {
    let bus = Bus::start(&[]);
    let biz = bus.client(BIZ);
    let ev = permit();
    assert_status(&biz.send(&ev).await.unwrap(), 202);
    let dpmptsp = bus.client(DPMPTSP);
    dpmptsp.pull(1, Duration::ZERO, LEASE).await.unwrap();
    let a = dpmptsp
        .nack(id_of(&ev), "lampiran tidak dapat dibaca")
        .await
        .unwrap();
    assert_status(&a, 200);
    let s = biz.status(id_of(&ev)).await.unwrap();
    assert_eq!(s.body["status"], "dead_lettered");
    let reason = s.body["deliveries"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("lampiran tidak dapat dibaca"), "{reason}");
    // Dead letters are not redelivered, and cannot be acked afterwards.
    assert!(leased_ids(&dpmptsp.pull(1, Duration::ZERO, LEASE).await.unwrap()).is_empty());
    assert_status(&dpmptsp.ack(id_of(&ev)).await.unwrap(), 409);
    // A nack needs a reason.
    let a = dpmptsp
        .request(
            reqwest::Method::POST,
            &format!("/v1/inbox/{}/nack", id_of(&ev)),
            Some("application/json"),
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
    assert_status(&a, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_ack_settles_a_whole_pull_and_answers_for_each_id() {
    let bus = Bus::start(&[]);
    let biz = bus.client(BIZ);
    let (first, second, never_leased) = (permit(), permit(), permit());
    for ev in [&first, &second] {
        assert_status(&biz.send(ev).await.unwrap(), 202);
    }
    let dpmptsp = bus.client(DPMPTSP);
    assert_eq!(leased_ids(&pull_now(&dpmptsp).await).len(), 2);
    assert_status(&biz.send(&never_leased).await.unwrap(), 202);

    // Bad ids: every one is named, and nothing is acked.
    let a = dpmptsp
        .request(
            reqwest::Method::POST,
            "/v1/inbox/ack",
            Some("application/json"),
            Some(serde_json::to_vec(&json!({ "ids": [id_of(&first), "x", 7] })).unwrap()),
        )
        .await
        .unwrap();
    assert_status(&a, 400);
    assert_eq!(a.pointers(), ["/ids/1", "/ids/2"]);
    let s = biz.status(id_of(&first)).await.unwrap();
    assert_eq!(s.body["status"], "delivered");
    let empty = dpmptsp
        .request(
            reqwest::Method::POST,
            "/v1/inbox/ack",
            Some("application/json"),
            Some(br#"{"ids":[]}"#.to_vec()),
        )
        .await
        .unwrap();
    assert_status(&empty, 400);
    assert_eq!(empty.pointers(), ["/ids"]);

    let ids = [
        id_of(&first),
        id_of(&second),
        id_of(&never_leased),
        id_of(&first),
    ];
    let a = dpmptsp.ack_many(&ids).await.unwrap();
    assert_status(&a, 200);
    let results = a.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for (r, id) in results.iter().zip(ids) {
        assert_eq!(r["id"], id.to_string());
    }
    assert_eq!(results[0]["state"], "acked");
    assert_eq!(results[1]["state"], "acked");
    // Still pending: not leased, so not this consumer's to ack yet.
    assert_eq!(results[2]["problem"]["status"], 404);
    assert_eq!(
        results[2]["problem"]["type"],
        "urn:simpul:problem:not-found"
    );
    // The same id twice: acked already, as a repeated single ack would answer.
    assert_eq!(results[3]["state"], "acked");
    for ev in [&first, &second] {
        let s = biz.status(id_of(ev)).await.unwrap();
        assert_eq!(s.body["status"], "acked");
    }
    // Only the message that was never leased comes back.
    assert_eq!(
        leased_ids(&pull_now(&dpmptsp).await),
        [id_of(&never_leased)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_attempts_without_ack_dead_letters() {
    let bus = Bus::start(&["--max-attempts", "2"]);
    let biz = bus.client(BIZ);
    let ev = permit();
    assert_status(&biz.send(&ev).await.unwrap(), 202);
    let dpmptsp = bus.client(DPMPTSP);
    let short = Duration::from_secs(1);
    assert_eq!(
        leased_ids(&dpmptsp.pull(1, Duration::ZERO, short).await.unwrap()).len(),
        1
    );
    let second = dpmptsp
        .pull(1, Duration::from_secs(10), short)
        .await
        .unwrap();
    assert_eq!(second.body["messages"][0]["attempt"], 2);
    // After the second lease runs out the message is dead, not delivered a third time.
    let dead = wait_until(Duration::from_secs(10), || async {
        let got = dpmptsp.pull(1, Duration::ZERO, short).await.unwrap();
        assert!(leased_ids(&got).is_empty(), "delivered a third time");
        biz.status(id_of(&ev)).await.unwrap().body["status"] == "dead_lettered"
    })
    .await;
    assert!(dead);
    let s = biz.status(id_of(&ev)).await.unwrap();
    assert_eq!(s.body["deliveries"][0]["attempts"], 2);
    assert!(
        s.body["deliveries"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("2 delivery attempt")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_poll_wakes_when_a_message_arrives() {
    let bus = Bus::start(&[]);
    let dpmptsp = bus.client(DPMPTSP);
    let poll = tokio::spawn(async move { dpmptsp.pull(1, Duration::from_secs(20), LEASE).await });
    // Send only once the poll is parked, so the message can only reach it by waking it.
    assert!(
        bus.wait_for_log("waiting for messages").await,
        "the poll never parked"
    );
    let ev = permit();
    assert_status(&bus.client(BIZ).send(&ev).await.unwrap(), 202);
    let got = poll.await.unwrap().unwrap();
    assert_eq!(leased_ids(&got), [id_of(&ev)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_fan_out_to_every_subscriber_and_replay_from_a_cursor() {
    let bus = Bus::start(&[]);
    let dukcapil = bus.client(DUKCAPIL);
    let events: Vec<_> = [NIK, NIK2, NIK].iter().map(|n| death(n)).collect();
    for ev in &events {
        assert_status(&dukcapil.send(ev).await.unwrap(), 202);
    }
    let ids: Vec<_> = events.iter().map(id_of).collect();
    for m in [HR, DPMPTSP] {
        let got = pull_now(&bus.client(m)).await;
        assert_eq!(leased_ids(&got), ids, "fan-out to {m}");
    }
    let hr = bus.client(HR);
    let all = hr.feed("siak.penduduk.meninggal", 0, 100).await.unwrap();
    assert_status(&all, 200);
    let cursors: Vec<i64> = all.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cursor"].as_i64().unwrap())
        .collect();
    assert_eq!(cursors.len(), 3);
    // Resume after the first: exactly the last two, in order, no gap, no duplicate.
    let rest = hr
        .feed("siak.penduduk.meninggal", cursors[0], 100)
        .await
        .unwrap();
    let rest_ids: Vec<_> = rest.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rest_ids, [ids[1].to_string(), ids[2].to_string()]);
    assert_eq!(rest.body["next"], cursors[2]);
    // Paging with a limit.
    let page = hr.feed("siak.penduduk.meninggal", 0, 2).await.unwrap();
    assert_eq!(page.body["events"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["next"], cursors[1]);
    // Only event types have feeds.
    let a = bus
        .client(DPMPTSP)
        .feed("sipanse.izin.permohonan", 0, 10)
        .await
        .unwrap();
    assert_status(&a, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_of_an_event_lists_every_subscriber() {
    let bus = Bus::start(&[]);
    let dukcapil = bus.client(DUKCAPIL);
    let ev = death(NIK);
    assert_status(&dukcapil.send(&ev).await.unwrap(), 202);
    let hr = bus.client(HR);
    hr.pull(1, Duration::ZERO, LEASE).await.unwrap();
    hr.ack(id_of(&ev)).await.unwrap();
    let s = dukcapil.status(id_of(&ev)).await.unwrap();
    let states: Vec<_> = s.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["recipient"].clone(), d["state"].clone()))
        .collect();
    assert_eq!(
        states,
        [
            (json!(HR), json!("acked")),
            (json!(DPMPTSP), json!("pending"))
        ]
    );
    assert_eq!(s.body["status"], "delivered");
}

#[tokio::test(flavor = "multi_thread")]
async fn feed_only_events_leave_no_inbox_copies() {
    let bus = Bus::start(&[]);
    let ev = event(
        "eabsen.kehadiran.tercatat",
        json!({ "nip": "199009132025242014", "waktu": "2026-11-23T07:01:02+07:00", "sumber": "mesin" }),
    );
    assert_status(&bus.client(EABSEN).send(&ev).await.unwrap(), 202);
    let hr = bus.client(HR);
    assert!(leased_ids(&pull_now(&hr).await).is_empty());
    let feed = hr.feed("eabsen.kehadiran.tercatat", 0, 10).await.unwrap();
    assert_eq!(feed.body["events"][0]["event"]["id"], ev["id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ack_naming_a_lease_that_ran_out_is_refused_once_the_message_is_leased_again() {
    let bus = Bus::start(&[]);
    let ev = death(NIK);
    assert_status(&bus.client(DUKCAPIL).send(&ev).await.unwrap(), 202);
    let hr = bus.client(HR);
    let first = hr
        .pull(1, Duration::ZERO, Duration::from_secs(1))
        .await
        .unwrap();
    let stale = first.body["messages"][0]["lease"]
        .as_str()
        .unwrap()
        .to_owned();
    // A long poll takes it again once the 1 s lease has run out.
    let again = hr
        .pull(1, Duration::from_secs(20), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again.body["messages"][0]["attempt"], 2, "{:#}", again.body);
    let current = again.body["messages"][0]["lease"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(stale, current);
    let id = id_of(&ev);
    let post = |path: String, body: Option<serde_json::Value>| {
        let hr = hr.clone();
        async move {
            let ct = body.as_ref().map(|_| "application/json");
            let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
            hr.request(reqwest::Method::POST, &path, ct, bytes)
                .await
                .unwrap()
        }
    };
    let a = post(format!("/v1/inbox/{id}/ack?lease={stale}"), None).await;
    assert_status(&a, 409);
    assert!(a.body["detail"].as_str().unwrap().contains("leased again"));
    let nack = json!({ "reason": "late" });
    let a = post(format!("/v1/inbox/{id}/nack?lease={stale}"), Some(nack)).await;
    assert_status(&a, 409);
    let a = post(format!("/v1/inbox/{id}/ack?lease=nonsense"), None).await;
    assert_status(&a, 400);
    assert_eq!(a.pointers(), ["/query/lease"]);
    // The batch ack takes leases too: the stale one is refused, the current one settles.
    let body = json!({ "ids": [
        { "id": id, "lease": stale },
        { "id": id, "lease": current },
        { "id": id, "lease": 7 }
    ] });
    let a = post("/v1/inbox/ack".into(), Some(body)).await;
    assert_status(&a, 400);
    assert_eq!(a.pointers(), ["/ids/2"]);
    let body = json!({ "ids": [{ "id": id, "lease": stale }, { "id": id, "lease": current }] });
    let a = post("/v1/inbox/ack".into(), Some(body)).await;
    assert_status(&a, 200);
    assert_eq!(
        a.body["results"][0]["problem"]["status"], 409,
        "{:#}",
        a.body
    );
    assert_eq!(a.body["results"][1]["state"], "acked", "{:#}", a.body);
    let status = bus.client(DUKCAPIL).status(id).await.unwrap();
    assert_eq!(
        status.body["deliveries"][0]["state"], "acked",
        "{:#}",
        status.body
    );
}
