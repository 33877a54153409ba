//! Dead letters through the API and `simpul admin`: an operator lists them, redrives one or
//! all (the recipient gets them again as first deliveries), and traces a message from its
//! accept through each delivery, the nack, the redrive and the ack. Members who are not
//! operators are refused, and a malformed redrive names every bad field.

mod common;

use common::*;
use serde_json::json;

const OPERATOR: &str = "GOV/diskominfo";

/// Sends `n` deaths; HR leases and nacks each. Returns their ids, oldest first.
async fn dead_at_hr(bus: &Bus, n: usize) -> Vec<uuid::Uuid> {
    let (dukcapil, hr) = (bus.client(DUKCAPIL), bus.client(HR));
    let mut ids = Vec::new();
    for _ in 0..n {
        let ev = death(NIK);
        assert_status(&dukcapil.send(&ev).await.unwrap(), 202);
        ids.push(id_of(&ev));
    }
    let mut leased = Vec::new();
    while leased.len() < n {
        leased.extend(leased_ids(&pull_now(&hr).await));
    }
    for id in &leased {
        assert_status(&hr.nack(*id, "NIK tidak dikenal").await.unwrap(), 200);
    }
    ids
}

fn hr() -> bus::identity::MemberId {
    bus::identity::MemberId::parse(HR).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_redrives_a_dead_letter_and_traces_it() {
    let bus = Bus::start(&[]);
    let ids = dead_at_hr(&bus, 2).await;
    let op = bus.client(OPERATOR);

    let page = op.dead_letters(&hr(), 0, 10).await.unwrap();
    assert_status(&page, 200);
    assert_eq!(page.body["total"], 2);
    let items = page.body["items"].as_array().unwrap();
    assert_eq!(items[0]["id"], ids[0].to_string());
    assert_eq!(items[0]["sender"], DUKCAPIL);
    assert_eq!(items[0]["why"], "nacked");
    assert!(
        items[0]["reason"]
            .as_str()
            .unwrap()
            .contains("tidak dikenal")
    );
    assert!(items[0].get("data").is_none(), "no payload in the list");

    // Not an operator: refused, and nothing changes.
    for member in [DUKCAPIL, HR] {
        let c = bus.client(member);
        assert_status(&c.dead_letters(&hr(), 0, 10).await.unwrap(), 403);
        assert_status(&c.redrive(&hr(), &json!({"all": true})).await.unwrap(), 403);
        assert_status(&c.trace(ids[0]).await.unwrap(), 403);
    }

    let done = op.redrive(&hr(), &json!({"id": ids[1]})).await.unwrap();
    assert_status(&done, 200);
    assert_eq!(
        done.body["redriven"],
        json!([{"sender": DUKCAPIL, "id": ids[1]}])
    );
    assert_eq!(done.body["remaining"], 1);
    // Gone from the dead letters: a second redrive of it finds nothing.
    assert_status(
        &op.redrive(&hr(), &json!({"id": ids[1]})).await.unwrap(),
        404,
    );

    // HR gets it again, as a first delivery, and acks it.
    let hr_client = bus.client(HR);
    let pulled = pull_now(&hr_client).await;
    assert_eq!(leased_ids(&pulled), [ids[1]]);
    assert_eq!(pulled.body["messages"][0]["attempt"], 1);
    assert_status(&hr_client.ack(ids[1]).await.unwrap(), 200);

    let trace = op.trace(ids[1]).await.unwrap();
    assert_status(&trace, 200);
    let actions: Vec<&str> = trace.body["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["counterpart"] != json!(DPMPTSP) && e["actor"] != json!(DPMPTSP))
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["accept", "lease", "nack", "redrive", "lease", "ack"]
    );
    let m = &trace.body["messages"][0];
    assert_eq!(m["source"], DUKCAPIL);
    let to_hr = m["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["recipient"] == HR)
        .unwrap();
    assert_eq!(to_hr["state"], "acked");
    assert_eq!(m["attributes"]["id"], ids[1].to_string());
    assert!(
        m["attributes"].get("data").is_none(),
        "the trace carries no payload"
    );
    assert_status(&op.trace(uuid::Uuid::now_v7()).await.unwrap(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_redrive_names_every_field() {
    let bus = Bus::start(&[]);
    let op = bus.client(OPERATOR);
    let bad = op
        .redrive(
            &hr(),
            &json!({"id": "x", "all": "ya", "limit": 0, "extra": 1}),
        )
        .await
        .unwrap();
    assert_status(&bad, 400);
    let mut pointers = bad.pointers();
    pointers.sort();
    assert_eq!(pointers, ["/all", "/extra", "/id", "/limit"]);
    assert_status(&op.redrive(&hr(), &json!({})).await.unwrap(), 400);
    let stranger = bus::identity::MemberId::parse("GOV/nobody").unwrap();
    assert_status(
        &op.redrive(&stranger, &json!({"all": true})).await.unwrap(),
        404,
    );
    let page = op
        .request(
            reqwest::Method::GET,
            "/v1/admin/dead-letters/not-a-member",
            None,
            None,
        )
        .await
        .unwrap();
    assert_status(&page, 400);
    assert_eq!(page.pointers(), ["/path/recipient"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_lists_redrives_all_and_traces() {
    let bus = Bus::start(&[]);
    let ids = dead_at_hr(&bus, 3).await;
    let admin = |args: &[&str]| {
        let out = bus
            .simpul()
            .args(["admin", "--bus", &bus.base, "--certs"])
            .arg(bus.certs())
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success(),
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, listed, err) = admin(&["dlq", "list", HR]);
    assert!(ok, "{err}");
    assert!(listed.contains("3 dead letter(s)"), "{listed}");
    for id in &ids {
        assert!(listed.contains(&id.to_string()), "{listed}");
    }
    // Without --yes and with nothing on stdin, nothing happens.
    let (ok, said, _) = admin(&["dlq", "redrive", HR, "--all"]);
    assert!(!ok && said.contains("nothing redriven"), "{said}");
    let (ok, said, err) = admin(&["dlq", "redrive", HR, "--all", "--yes"]);
    assert!(ok, "{err}");
    assert!(said.contains("redriven: 3"), "{said}");
    let mut again = pull_all(&bus.client(HR)).await;
    again.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(again, want);

    let (ok, traced, err) = admin(&["trace", &ids[0].to_string()]);
    assert!(ok, "{err}");
    assert!(traced.contains("redrive"), "{traced}");
    assert!(traced.contains(&format!("{OPERATOR} -> {HR}")), "{traced}");
    // An operator's certificate is required.
    let (ok, _, err) = admin(&["--as", HR, "dlq", "list", HR]);
    assert!(!ok && err.contains("403"), "{err}");
}
