//! The citizen's data-access report: every access to data about one person, for the member
//! that serves citizens, and never the person's identifier in the audit tables.

mod common;

use common::*;
use serde_json::Value;

async fn report(bus: &Bus, member: &str, nik: &str) -> bus::client::Answer {
    bus.client(member)
        .request(
            reqwest::Method::GET,
            &format!("/v1/audit/subjects/{nik}"),
            None,
            None,
        )
        .await
        .unwrap()
}

/// (actor, action, type) of each access in a report, in order.
fn accesses(a: &bus::client::Answer) -> Vec<(String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    a.body["accesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (s(&x["actor"]), s(&x["action"]), s(&x["type"])))
        .collect()
}

fn row(actor: &str, action: &str, type_: &str) -> (String, String, String) {
    (actor.into(), action.into(), type_.into())
}

/// Every audit and index row of the store as text, as someone reading the database would.
async fn audit_tables(bus: &Bus) -> String {
    let tables = ["audit", "audit_subjects", "audit_checkpoints"];
    match &bus.store {
        None => {
            let c = rusqlite::Connection::open(bus.data().join("simpul.db")).unwrap();
            let mut out = String::new();
            for t in tables {
                let mut stmt = c.prepare(&format!("SELECT * FROM {t}")).unwrap();
                let n = stmt.column_count();
                let mut rows = stmt.query([]).unwrap();
                while let Some(r) = rows.next().unwrap() {
                    for i in 0..n {
                        let v: rusqlite::types::Value = r.get(i).unwrap();
                        out.push_str(&format!("{v:?}|"));
                        if let rusqlite::types::Value::Blob(b) = v {
                            out.push_str(&String::from_utf8_lossy(&b));
                        }
                    }
                    out.push('\n');
                }
            }
            out
        }
        Some(url) => {
            let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut out = String::new();
            for t in tables {
                for r in c
                    .query(&format!("SELECT t::text FROM {t} t"), &[])
                    .await
                    .unwrap()
                {
                    out.push_str(r.get::<_, &str>(0));
                    out.push('\n');
                }
            }
            out
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_lists_exactly_the_accesses_that_happened() {
    let mut bus = Bus::start(&[]);
    let (dukcapil, hr, dpmptsp) = (bus.client(DUKCAPIL), bus.client(HR), bus.client(DPMPTSP));
    let death_type = "siak.penduduk.meninggal";

    // G2G: Dukcapil reports a death; HR takes it from its inbox, DPMPTSP reads the feed.
    let ev = death(NIK);
    assert_status(&dukcapil.send(&ev).await.unwrap(), 202);
    assert_eq!(leased_ids(&pull_now(&hr).await), [id_of(&ev)]);
    assert_status(&hr.ack(id_of(&ev)).await.unwrap(), 200);
    let feed = dpmptsp.feed(death_type, 0, 10).await.unwrap();
    assert_eq!(feed.body["events"].as_array().map(Vec::len), Some(1));
    assert_status(&dukcapil.status(id_of(&ev)).await.unwrap(), 200);

    // A query about another person: HR verifies NIK2 with Dukcapil.
    let provider = tokio::spawn(provide_once(dukcapil.clone(), verify_response()));
    assert_status(&hr.send(&verify_request()).await.unwrap(), 200);
    provider.await.unwrap();

    let portal = report(&bus, PORTAL, NIK).await;
    assert_status(&portal, 200);
    assert_eq!(
        accesses(&portal),
        [
            row(DUKCAPIL, "accept", death_type),
            row(HR, "lease", death_type),
            row(HR, "ack", death_type),
            row(DPMPTSP, "feed_read", death_type),
            row(DUKCAPIL, "status_read", death_type),
        ]
    );
    assert_eq!(
        portal.body["accesses"][0]["counterpart"],
        format!("{HR},{DPMPTSP}")
    );
    assert!(
        !portal.body.to_string().contains(NIK),
        "the answer masks the NIK"
    );

    let verify_type = "siak.penduduk.verify";
    assert_eq!(
        accesses(&report(&bus, PORTAL, NIK2).await),
        [
            row(HR, "query", verify_type),
            row(DUKCAPIL, "lease", verify_type),
            row(DUKCAPIL, "reply", verify_type),
        ]
    );
    // A person no one exchanged data about: nothing.
    assert!(accesses(&report(&bus, PORTAL, "3273012208850002").await).is_empty());

    // Only members granted subject_report; a malformed NIK is named.
    let hr_asks = report(&bus, HR, NIK).await;
    assert_status(&hr_asks, 403);
    let bad = report(&bus, PORTAL, "1234").await;
    assert_status(&bad, 400);
    assert_eq!(bad.pointers(), ["/nik"]);

    // The reports themselves are audited; no raw NIK anywhere in the audit tables.
    assert!(bus.terminate());
    let tables = audit_tables(&bus).await;
    assert_eq!(tables.matches("subject_report").count(), 3, "{tables}");
    assert!(
        tables.contains("subject report: forbidden"),
        "HR's attempt is audited"
    );
    for nik in [NIK, NIK2] {
        assert!(
            !tables.contains(nik),
            "raw NIK in the audit tables:\n{tables}"
        );
    }
}
