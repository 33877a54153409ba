//! The OpenAPI description: valid OpenAPI 3.1 (openapi-spec-validator), naming every route
//! and each registered type's schema; Swagger UI served from the binary; and schemathesis
//! (PyPI) run against a live bus as a producer and as an operator, over every operation,
//! with no server error, no answer that contradicts the description and no problem that is
//! not problem+json.

mod common;

use std::process::Command;

use common::*;

const OPERATOR: &str = "GOV/diskominfo";

async fn document(bus: &Bus) -> (serde_json::Value, tempfile::NamedTempFile) {
    let (code, text) = bus.get_text(DUKCAPIL, "/v1/openapi.json").await;
    assert_eq!(code, 200, "{text}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &text).unwrap();
    (serde_json::from_str(&text).unwrap(), file)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_description_is_valid_openapi_3_1_and_names_every_route() {
    let bus = Bus::start(&[]);
    let (doc, file) = document(&bus).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let check = Command::new("python3")
        .args([
            "-c",
            "import json, sys; from openapi_spec_validator import validate; \
             validate(json.load(open(sys.argv[1])))",
        ])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/v1/messages",
        "/v1/messages/{id}",
        "/v1/queries/{id}/reply",
        "/v1/inbox",
        "/v1/inbox/ack",
        "/v1/inbox/{id}/ack",
        "/v1/inbox/{id}/nack",
        "/v1/feeds/{type}",
        "/v1/schemas",
        "/v1/schemas/{id}",
        "/v1/receipts/keys",
        "/v1/audit/subjects/{id}",
        "/v1/admin/dead-letters/{recipient}",
        "/v1/admin/dead-letters/{recipient}/redrive",
        "/v1/admin/messages/{id}/trace",
        "/v1/admin/overview",
        "/console",
        "/console/{asset}",
        "/v1/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(route), "{route} is not described");
    }
    assert_eq!(paths.len(), 22, "a route without its description");
    // Each registered type is a typed event, its data the type's own schema.
    let schemas = &doc["components"]["schemas"];
    let death = &schemas["CloudEvent.siak.penduduk.meninggal"];
    let data_ref = death["allOf"][1]["properties"]["data"]["$ref"]
        .as_str()
        .unwrap();
    let data = &schemas[data_ref.rsplit('/').next().unwrap()];
    assert_eq!(data["properties"]["nik"]["format"], "nik");
    assert!(schemas["siak.penduduk.verify.response.v1"].is_object());
    let problem = &doc["components"]["responses"]["ProblemResponse"]["content"];
    assert!(problem["application/problem+json"].is_object());
    assert!(
        doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("`schema-validation` (422)")
    );

    // Swagger UI, from the binary: no asset comes from anywhere else.
    let (code, html) = bus.get_text(DUKCAPIL, "/docs/").await;
    assert_eq!(code, 200);
    assert!(html.contains("swagger-ui-bundle.js"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    let (code, js) = bus.get_text(DUKCAPIL, "/docs/swagger-ui-bundle.js").await;
    assert_eq!(code, 200);
    assert!(js.len() > 100_000);
    let (_, init) = bus.get_text(DUKCAPIL, "/docs/swagger-initializer.js").await;
    assert!(init.contains("/v1/openapi.json"), "{init}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_as_a_producer_or_an_operator() {
    // Long polls end after a second, so boundary values of `wait` keep the run short.
    let bus = Bus::start(&["--max-wait", "1"]);
    let (doc, file) = document(&bus).await;
    assert_eq!(
        doc["paths"]["/v1/inbox"]["get"]["parameters"][1]["schema"]["maximum"],
        1
    );
    for member in [DUKCAPIL, OPERATOR] {
        let paths = bus::pki::member_paths(
            &bus.certs(),
            &bus::identity::MemberId::parse(member).unwrap(),
        );
        let out = Command::new("schemathesis")
            .current_dir(file.path().parent().unwrap()) // its cache goes there, not in the repo
            .arg("run")
            .arg(file.path())
            .args(["--url", &bus.base, "--request-cert"])
            .arg(&paths.cert)
            .arg("--request-cert-key")
            .arg(&paths.key)
            .arg("--tls-verify")
            .arg(bus.certs().join("ca.pem"))
            // Every check but one: a schema cannot hold every rule (NIK checksums, the ACL,
            // a date before today), so a request valid by the schema may rightly be refused.
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
            ])
            .args([
                "--max-examples",
                "30",
                "--no-color",
                "--generation-deterministic",
            ])
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .output()
            .expect("schemathesis (scripts/test installs it from PyPI)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "as {member}:\n{text}");
        assert!(text.contains("Tested: 22"), "as {member}:\n{text}");
        assert!(!text.contains("failures"), "as {member}:\n{text}");
    }
    assert!(!bus.logged().contains("internal"), "{}", bus.logged());
}
