//! Connections obey lifetimes after the handshake: header and body timeouts, idle timeout,
//! maximum age, and the end of the identity they were opened with (revocation, expiry).

mod common;

use std::time::{Duration, Instant};

use common::raw::RawConn;
use common::*;

const SOON: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed() {
    let bus = Bus::start(&["--idle-timeout", "1"]);
    let mut c = RawConn::open(&bus, DUKCAPIL).await;
    assert!(c.get("/healthz").await.unwrap().starts_with("HTTP/1.1 200"));
    assert!(c.closed_within(SOON).await, "idle connection left open");
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_must_arrive_in_time() {
    let bus = Bus::start(&["--header-timeout", "1"]);
    let mut c = RawConn::open(&bus, DUKCAPIL).await;
    c.write(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
        .await;
    assert!(
        c.closed_within(SOON).await,
        "half a request head held the connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_must_arrive_in_time() {
    let bus = Bus::start(&["--body-timeout", "1"]);
    let mut c = RawConn::open(&bus, DUKCAPIL).await;
    c.write(
        b"POST /v1/messages HTTP/1.1\r\nhost: localhost\r\n\
          content-type: application/cloudevents+json\r\ncontent-length: 100\r\n\r\n{\"spec",
    )
    .await;
    let started = Instant::now();
    let resp = c.response(SOON).await.expect("an answer, not silence");
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(resp.contains("application/problem+json"), "{resp}");
    assert!(resp.contains("urn:simpul:problem:body-timeout"), "{resp}");
    assert!(started.elapsed() < SOON);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_connection_is_closed_after_its_last_answer() {
    let bus = Bus::start(&["--max-connection-age", "1"]);
    // The connection's age runs from its accept, so the clock starts before opening it: a slow
    // handshake on a loaded machine must not make the connection look younger than it is.
    let started = Instant::now();
    let mut c = RawConn::open(&bus, DUKCAPIL).await;
    let mut answered = 0;
    // Requests keep coming, so the connection is never idle; it still ends, and every
    // request sent before that got its whole answer.
    while let Some(resp) = c.get("/healthz").await {
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        answered += 1;
        assert!(
            started.elapsed() < SOON,
            "connection outlived its maximum age"
        );
    }
    assert!(answered >= 1);
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_closes_the_members_open_connections() {
    let bus = Bus::start(&[]);
    let mut portal = RawConn::open(&bus, PORTAL).await;
    let mut dukcapil = RawConn::open(&bus, DUKCAPIL).await;
    assert!(portal.get("/healthz").await.is_some());
    bus.certs_command(&["revoke", PORTAL]);
    let started = Instant::now();
    assert!(
        portal.closed_within(SOON).await,
        "a revoked member kept its open connection"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Another member's connection is untouched.
    assert!(dukcapil.get("/healthz").await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiring_certificate_ends_its_connection() {
    let bus = Bus::start(&[]);
    let ca = bus::pki::DevCa::load(&bus.certs()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let soon = bus::pki::Validity {
        not_before: now - time::Duration::minutes(5),
        not_after: now + time::Duration::seconds(3),
    };
    let paths = ca
        .issue(
            "simpul.dev",
            &bus::identity::MemberId::parse(PORTAL).unwrap(),
            soon,
        )
        .unwrap();
    let mut c = RawConn::open_with(&bus, &paths.cert, &paths.key).await;
    assert!(c.get("/healthz").await.is_some());
    assert!(
        c.closed_within(Duration::from_secs(8)).await,
        "connection outlived its certificate"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_peers_are_pinged_and_dropped_when_they_do_not_answer() {
    const PING: u8 = 0x6;
    let bus = Bus::start(&["--h2-ping", "1", "--idle-timeout", "60"]);
    let mut c = RawConn::open_h2(&bus, DUKCAPIL).await;
    // Connection preface and an empty SETTINGS frame; then never answer anything.
    c.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await;
    assert!(c.h2_frame(PING, SOON).await, "no keep-alive ping");
    assert!(
        c.closed_within(SOON).await,
        "an unanswered ping left the connection open"
    );
}

/// The header timeout is for a request head that has begun to arrive; a keep-alive connection
/// waiting for its next request is governed by the idle timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_connection_lives_until_its_idle_timeout() {
    let bus = Bus::start(&["--header-timeout", "1", "--idle-timeout", "60"]);
    let mut c = RawConn::open(&bus, DUKCAPIL).await;
    assert!(c.get("/healthz").await.is_some());
    assert!(!c.closed_within(Duration::from_secs(3)).await);
    assert!(c.get("/healthz").await.is_some());
}
