//! The adapter's local outbox across a bus outage: records are accepted while the bus is
//! down and arrive exactly once, in order, when it is back.

mod common;

use adapters::eabsen::simulator::PEGAWAI;
use adapters::eabsen::{EabsenAdapter, EabsenConfig};
use adapters::link::Link;
use adapters::trace::Trace;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn records_taken_while_the_bus_is_down_arrive_once_in_order() {
    let mut bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eabsen.db");
    let link = Link::open(&bus.base, &bus.certs(), EABSEN, &file, Trace::quiet()).unwrap();
    let ea = EabsenAdapter::new(EabsenConfig::default(), link).unwrap();
    for (pin, nip, unit, _) in PEGAWAI {
        ea.set_pegawai(pin, nip, unit).unwrap();
    }
    let h = ea.link.outbox.health().unwrap();
    assert_eq!((h.backlog, h.last_forward_at.as_deref()), (0, None));

    bus.kill9();
    // The office keeps working: 40 punches, deliberately not in time order, and a check-in.
    let mut export = String::new();
    let mut expected = Vec::new();
    for i in 0..40u32 {
        let (pin, nip, _, _) = PEGAWAI[(i % 4) as usize];
        let minute = (i * 7) % 60;
        let hour = 7 + (i % 3);
        export.push_str(&format!(
            "{pin:>9}\t2026-11-23 {hour:02}:{minute:02}:{:02}\t1\t0\t1\t0\r\n",
            i % 60
        ));
        expected.push(format!(
            "{nip} 2026-11-23T{hour:02}:{minute:02}:{:02}+07:00",
            i % 60
        ));
    }
    let r = ea.import_attlog(&export).unwrap();
    assert_eq!((r.queued, r.errors.len()), (40, 0));
    assert!(
        ea.check_in(
            &json!({ "nip": PEGAWAI[0].1, "waktu": "2026-11-23T12:00:00+07:00",
                           "lat": -6.9, "lon": 107.6, "foto_sha256": "0f".repeat(32) })
        )
        .unwrap()
    );
    expected.push(format!("{} 2026-11-23T12:00:00+07:00", PEGAWAI[0].1));
    assert!(ea.link.flush().await.is_err(), "the bus is down");
    let h = ea.link.outbox.health().unwrap();
    assert_eq!(h.backlog, 41);
    assert!(
        h.oldest_pending_at.is_some() && h.last_forward_at.is_none(),
        "{h:?}"
    );

    // The adapter restarts too (same outbox file) and the bus comes back on a new address.
    drop(ea);
    bus.restart();
    let link = Link::open(&bus.base, &bus.certs(), EABSEN, &file, Trace::quiet()).unwrap();
    let ea = EabsenAdapter::new(EabsenConfig::default(), link).unwrap();
    assert_eq!(ea.link.outbox.health().unwrap().backlog, 41);
    let f = ea.link.flush().await.unwrap();
    assert_eq!((f.accepted, f.duplicates, f.rejected), (41, 0, 0));
    assert_eq!(f.batches, 1, "one batch envelope for the whole backlog");
    assert!(
        f.wire_bytes * 3 < f.raw_bytes,
        "the batch went gzip-compressed: {} of {} bytes",
        f.wire_bytes,
        f.raw_bytes
    );
    let h = ea.link.outbox.health().unwrap();
    assert_eq!(h.backlog, 0);
    assert!(h.last_forward_at.is_some());
    // Nothing is sent twice: a second flush has nothing to do, a re-import queues nothing.
    assert_eq!(ea.link.flush().await.unwrap().batches, 0);
    assert_eq!(ea.import_attlog(&export).unwrap().queued, 0);

    let a = bus
        .client(HR)
        .feed("eabsen.kehadiran.tercatat", 0, 1000)
        .await
        .unwrap();
    let got: Vec<String> = a.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"]["data"]["nip"].as_str().unwrap(),
                e["event"]["data"]["waktu"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        got, expected,
        "every record once, in the order it was taken"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_record_is_set_aside_with_the_reason_and_the_rest_still_go() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let link = Link::open(
        &bus.base,
        &bus.certs(),
        EABSEN,
        &dir.path().join("o.db"),
        Trace::quiet(),
    )
    .unwrap();
    let good = |n: u32| {
        json!({ "specversion": "1.0", "id": uuid::Uuid::now_v7().to_string(),
                "type": "eabsen.kehadiran.tercatat",
                "data": { "nip": "197803122005011002", "waktu": format!("2026-11-23T07:00:0{n}+07:00"), "sumber": "mesin" } })
    };
    let mut bad = good(9);
    bad["data"]["nip"] = json!("197813122005011002"); // month 13
    for ev in [good(1), bad.clone(), good(2)] {
        assert!(link.queue(&ev).unwrap());
    }
    let f = link.flush().await.unwrap();
    assert_eq!((f.accepted, f.rejected), (2, 1));
    let rejected = link.outbox.rejected().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, bad["id"].as_str().unwrap());
    assert!(rejected[0].1.contains("/data/nip"), "{}", rejected[0].1);
    assert!(
        !rejected[0].1.contains("197813122005011002"),
        "the reason is masked"
    );
    let h = link.outbox.health().unwrap();
    assert_eq!((h.backlog, h.rejected), (0, 1));
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_batches_are_accepted_and_limited_by_their_decompressed_size() {
    let bus = Bus::start(&["--max-body", "20000"]);
    let c = bus.client(EABSEN);
    let ev = |s: u32| {
        json!({ "specversion": "1.0", "id": uuid::Uuid::now_v7().to_string(),
                "type": "eabsen.kehadiran.tercatat",
                "data": { "nip": "197803122005011002",
                          "waktu": format!("2026-11-23T07:{:02}:{:02}+07:00", s / 60, s % 60),
                          "sumber": "mesin" } })
    };
    let small: Vec<_> = (0..10).map(ev).collect();
    let a = c
        .send_batch_gzip(gzip(&serde_json::to_vec(&small).unwrap()))
        .await
        .unwrap();
    assert_status(&a, 202);
    assert_eq!(a.body["results"].as_array().unwrap().len(), 10);
    let feed = c.feed("eabsen.kehadiran.tercatat", 0, 100).await.unwrap();
    assert_eq!(feed.body["events"].as_array().unwrap().len(), 10);
    // 200 events are far over 20000 bytes as JSON but far under it compressed: refused whole.
    let big: Vec<_> = (100..300).map(ev).collect();
    let raw = serde_json::to_vec(&big).unwrap();
    let packed = gzip(&raw);
    assert!(raw.len() > 20000 && packed.len() < 20000);
    let a = c.send_batch_gzip(packed).await.unwrap();
    assert_status(&a, 413);
    let feed = c.feed("eabsen.kehadiran.tercatat", 0, 1000).await.unwrap();
    assert_eq!(
        feed.body["events"].as_array().unwrap().len(),
        10,
        "nothing stored half-way"
    );
    // A corrupt gzip stream is the sender's malformed request, not a size problem.
    let mut corrupt = gzip(&serde_json::to_vec(&small).unwrap());
    corrupt.truncate(corrupt.len() / 2);
    let a = c.send_batch_gzip(corrupt).await.unwrap();
    assert_status(&a, 400);
    assert_eq!(a.problem(), Some("malformed"));
}
