//! Personal identifiers never appear in clear in the bus's logs or error answers.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn no_raw_nik_in_logs_or_problems() {
    let mut bus = Bus::start(&[]);
    let dukcapil = bus.client(DUKCAPIL);
    let invalid_nik = "3204053102900003";
    let mut answers = Vec::new();
    // Valid, invalid, numeric, and misplaced NIKs, through success and error paths.
    answers.push(dukcapil.send(&death(NIK)).await.unwrap());
    answers.push(dukcapil.send(&death(invalid_nik)).await.unwrap());
    let mut numeric = death(NIK);
    numeric["data"]["nik"] = json!(3204054501900003u64);
    answers.push(dukcapil.send(&numeric).await.unwrap());
    let mut misplaced = death(NIK);
    misplaced["data"]["nama"] = json!(12);
    misplaced["data"]["tempat_meninggal"] = json!(NIK2);
    misplaced["data"]["kode_wilayah"] = json!(NIK2);
    answers.push(dukcapil.send(&misplaced).await.unwrap());
    let mut bad_env = death(NIK2);
    bad_env["id"] = json!(NIK2);
    answers.push(dukcapil.send(&bad_env).await.unwrap());
    let hr = bus.client(HR);
    let got = pull_now(&hr).await;
    let id = leased_ids(&got)[0];
    answers.push(
        hr.nack(id, &format!("NIK {NIK} tidak dikenal"))
            .await
            .unwrap(),
    );
    answers.push(bus.client(DUKCAPIL).status(id).await.unwrap());

    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(statuses, [202, 422, 422, 422, 400, 200, 200]);
    for a in &answers[1..] {
        let text = a.body.to_string();
        for nik in [NIK, NIK2, invalid_nik] {
            assert!(!text.contains(nik), "raw NIK in answer: {text}");
        }
    }
    let reason = answers[6].body["deliveries"][0]["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("3204********0003"),
        "masked NIK expected in {reason}"
    );

    let logs = bus.logs();
    assert!(
        logs.contains("DEBUG") || logs.contains("INFO"),
        "no logs captured"
    );
    for nik in [NIK, NIK2, invalid_nik] {
        assert!(!logs.contains(nik), "raw NIK in logs");
    }
}
