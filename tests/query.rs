//! Synchronous queries through a provider, with response validation and field grants.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_requester_sees_only_its_granted_fields() {
    let bus = Bus::start(&[]);
    // DPMPTSP is granted status, hasil and diperiksa_pada.
    let provider = tokio::spawn(provide_once(bus.client(DUKCAPIL), verify_response()));
    let a = bus.client(DPMPTSP).send(&verify_request()).await.unwrap();
    assert_status(&a, 200);
    assert_eq!(a.body["data"], verify_response());
    assert_status(&provider.await.unwrap(), 200);

    // The portal is granted status only.
    let provider = tokio::spawn(provide_once(bus.client(DUKCAPIL), verify_response()));
    let ev = verify_request();
    let a = bus.client(PORTAL).send(&ev).await.unwrap();
    assert_status(&a, 200);
    assert_eq!(a.body["data"], json!({ "status": "aktif" }));
    provider.await.unwrap();
    // A retry of the same query gets the stored answer, cut the same way.
    let again = bus.client(PORTAL).send(&ev).await.unwrap();
    assert_status(&again, 200);
    assert_eq!(again.body["data"], json!({ "status": "aktif" }));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_reply_is_refused_and_a_valid_one_still_answers() {
    let bus = Bus::start(&[]);
    let dukcapil = bus.client(DUKCAPIL);
    let requester = bus.client(HR);
    let ask = tokio::spawn(async move { requester.send(&verify_request()).await.unwrap() });
    let got = dukcapil
        .pull(1, Duration::from_secs(20), Duration::from_secs(30))
        .await
        .unwrap();
    let id = leased_ids(&got)[0];
    // The record itself is not a valid answer: verify never returns the record.
    let bad = json!({ "status": "aktif", "hasil": {}, "nama_lgkp": "BUDI SANTOSO" });
    let a = dukcapil.reply(id, &bad).await.unwrap();
    assert_status(&a, 422);
    // The field that has no place in a verify answer, by its own pointer.
    assert_eq!(a.pointers(), ["/nama_lgkp"], "{:#}", a.body);
    assert_status(&dukcapil.reply(id, &verify_response()).await.unwrap(), 200);
    let answer = ask.await.unwrap();
    assert_status(&answer, 200);
    assert_eq!(
        answer.body["data"],
        json!({ "status": "aktif", "hasil": verify_response()["hasil"] })
    );
    // Only the provider may reply, and only once.
    assert_status(
        &bus.client(DPMPTSP)
            .reply(id, &verify_response())
            .await
            .unwrap(),
        404,
    );
    let mut other = verify_response();
    other["status"] = json!("meninggal");
    assert_status(&dukcapil.reply(id, &other).await.unwrap(), 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_without_a_reply_times_out_with_504() {
    let bus = Bus::start(&["--query-timeout", "1"]);
    let a = bus.client(DPMPTSP).send(&verify_request()).await.unwrap();
    assert_status(&a, 504);
    assert_eq!(a.problem(), Some("query-timeout"));
}

#[tokio::test(flavor = "multi_thread")]
async fn only_permitted_members_may_query() {
    let bus = Bus::start(&[]);
    let a = bus.client(BIZ).send(&verify_request()).await.unwrap();
    assert_status(&a, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_nack_answers_the_requester_at_once_with_502() {
    let bus = Bus::start(&["--query-timeout", "60"]);
    let dukcapil = bus.client(DUKCAPIL);
    let requester = bus.client(HR);
    let ev = verify_request();
    let ask = send_in_background(&requester, &ev);
    let got = dukcapil
        .pull(1, Duration::from_secs(20), Duration::from_secs(30))
        .await
        .unwrap();
    let id = leased_ids(&got)[0];
    assert_status(
        &dukcapil
            .nack(id, "data SIAK tidak dapat dipetakan")
            .await
            .unwrap(),
        200,
    );
    let started = std::time::Instant::now();
    let a = ask.await.unwrap();
    assert_status(&a, 502);
    assert_eq!(a.problem(), Some("provider-refused"));
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("tidak dapat dipetakan")
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the requester waited for the timeout"
    );
    // A retry of the same query gets the same refusal, without waiting.
    let again = bus.client(HR).send(&ev).await.unwrap();
    assert_status(&again, 502);
}

/// A reply after the provider nacked the query is refused with 409; the requester's answer
/// stays the refusal.
#[tokio::test(flavor = "multi_thread")]
async fn a_reply_after_a_nack_is_409_and_the_answer_stays_502() {
    let bus = Bus::start(&["--query-timeout", "60"]);
    let dukcapil = bus.client(DUKCAPIL);
    let hr = bus.client(HR);
    let ev = verify_request();
    let ask = send_in_background(&hr, &ev);
    let got = dukcapil
        .pull(1, Duration::from_secs(20), Duration::from_secs(30))
        .await
        .unwrap();
    let id = leased_ids(&got)[0];
    assert_status(&dukcapil.nack(id, "tidak ditemukan").await.unwrap(), 200);
    assert_status(&ask.await.unwrap(), 502);
    let late = dukcapil.reply(id, &verify_response()).await.unwrap();
    assert_status(&late, 409);
    assert_status(&hr.send(&ev).await.unwrap(), 502);
}

/// A query dead-lettered because its leases ran out is 504 provider-unavailable, not a
/// refusal by the provider.
#[tokio::test(flavor = "multi_thread")]
async fn a_query_whose_leases_ran_out_is_provider_unavailable() {
    let bus = Bus::start(&["--query-timeout", "30", "--max-attempts", "1"]);
    let dukcapil = bus.client(DUKCAPIL);
    let hr = bus.client(HR);
    let ev = verify_request();
    let ask = send_in_background(&hr, &ev);
    let got = dukcapil
        .pull(1, Duration::from_secs(20), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(leased_ids(&got), [id_of(&ev)]);
    // The provider never answers; once its lease runs out, its next pull dead-letters it.
    let dead = wait_until(Duration::from_secs(10), || async {
        pull_now(&dukcapil).await;
        hr.status(id_of(&ev)).await.unwrap().body["status"] == "dead_lettered"
    })
    .await;
    assert!(dead);
    // The waiting requester hears it at once, not after its 30 s timeout.
    let live = tokio::time::timeout(Duration::from_secs(10), ask)
        .await
        .expect("the requester waited for its timeout")
        .unwrap();
    assert_status(&live, 504);
    assert_eq!(live.problem(), Some("provider-unavailable"));
    let again = hr.send(&ev).await.unwrap();
    assert_status(&again, 504);
    assert_eq!(again.problem(), Some("provider-unavailable"));
}

/// A query id belongs to its requester: another member sending the same id asks its own
/// question and never receives the stored answer.
#[tokio::test(flavor = "multi_thread")]
async fn another_member_reusing_a_query_id_never_gets_its_answer() {
    let bus = Bus::start(&["--query-timeout", "2"]);
    let ev = verify_request();
    let provider = tokio::spawn(provide_once(bus.client(DUKCAPIL), verify_response()));
    let a = bus.client(HR).send(&ev).await.unwrap();
    assert_status(&a, 200);
    assert_status(&provider.await.unwrap(), 200);
    // Same id, same content, another requester: a new question to the provider.
    let other = bus.client(DPMPTSP).send(&ev).await.unwrap();
    assert_status(&other, 504);
    let got = pull_now(&bus.client(DUKCAPIL)).await;
    assert!(
        leased_ids(&got).is_empty(),
        "a withdrawn query was delivered"
    );
    // The first requester's retry still gets its own answer.
    let again = bus.client(HR).send(&ev).await.unwrap();
    assert_status(&again, 200);
    assert_eq!(again.body["data"], a.body["data"]);
}
