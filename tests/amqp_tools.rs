//! What an operator and an agency's developer use around the AMQP transport: the refusal
//! without PostgreSQL, `simpul amqp sync`, and the README's Python consumer, run as written.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn amqp_without_postgres_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .env_remove("SIMPUL_STORE")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--amqp",
            "amqps://localhost:5671/simpul",
        ])
        .args(["--amqp-management", "http://a:b@127.0.0.1:15672"])
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--certs")
        .arg(dir.path().join("certs"))
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--amqp needs --store postgres://"), "{err}");
}

/// Runs `simpul amqp sync` for `bus` with `registry`, returning its output.
fn sync(bus: &Bus, broker: &amqp::Broker, vhost: &str, registry: &std::path::Path) -> String {
    let out = Command::new(bin())
        .args(["amqp", "sync", "--registry"])
        .arg(registry)
        .arg("--certs")
        .arg(bus.certs())
        .args(["--amqp", &format!("{}/{vhost}", broker.base)])
        .args(["--amqp-management", &broker.management])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn amqp_sync_prints_what_it_changes_and_a_removed_member_loses_its_access() {
    let broker = amqp::shared();
    let vhost = broker.fresh_vhost();
    let bus = Bus::relaying(broker, &vhost, &[HR, PORTAL], &[]).await;
    assert_eq!(
        sync(&bus, broker, &vhost, &bus.registry).trim(),
        "RabbitMQ already matches the registry"
    );
    let portal = broker
        .connect_as(&vhost, &bus.certs(), PORTAL)
        .await
        .unwrap();

    // The portal goes back to HTTPS: its rights on this vhost and its connections go.
    let text = std::fs::read_to_string(&bus.registry).unwrap();
    let without = text.replace(
        &format!("id = \"{PORTAL}\"\ndelivery = \"amqp\"\n"),
        &format!("id = \"{PORTAL}\"\n"),
    );
    assert_ne!(text, without);
    let registry = bus.dir.path().join("without-portal.toml");
    std::fs::write(&registry, without).unwrap();
    let out = sync(&bus, broker, &vhost, &registry);
    let portal_user = "spiffe://simpul.dev/GOV/portal";
    assert!(
        out.contains(&format!("revoked {portal_user} on {vhost}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("closed 1 connection(s) of {portal_user}")),
        "{out}"
    );
    assert!(!out.contains("GOV/bkpsdm/hr"), "HR is untouched: {out}");
    let closed = wait_until(Duration::from_secs(5), || async {
        !portal.status().connected()
    })
    .await;
    assert!(closed, "the removed member's connection stayed open");
    assert!(
        broker
            .connect_as(&vhost, &bus.certs(), PORTAL)
            .await
            .is_err()
    );
}

/// The first ```python block after the "RabbitMQ" heading of the README.
fn python_consumer() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## RabbitMQ: members that consume over AMQP")
        .nth(1)
        .expect("RabbitMQ section");
    let block = section.split("```python\n").nth(1).expect("python block");
    block.split("```").next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_python_consumer_receives_and_deduplicates() {
    let broker = amqp::shared();
    let vhost = broker.fresh_vhost();
    let bus = Bus::relaying(broker, &vhost, &[HR], &[]).await;
    let events: Vec<Value> = [NIK, NIK2, NIK].iter().map(|n| death(n)).collect();
    let dukcapil = bus.client(DUKCAPIL);
    for ev in &events {
        assert_status(&dukcapil.send(ev).await.unwrap(), 202);
    }
    let (host, port) = broker
        .base
        .trim_start_matches("amqps://")
        .split_once(':')
        .unwrap();
    let paths = bus::pki::member_paths(&bus.certs(), &bus::identity::MemberId::parse(HR).unwrap());
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(python_consumer())
        .env("SIMPUL_CA", bus.certs().join("ca.pem"))
        .env("MEMBER_CERT", &paths.cert)
        .env("MEMBER_KEY", &paths.key)
        .env("MEMBER_ID", HR)
        .env("AMQP_HOST", host)
        .env("AMQP_PORT", port)
        .env("AMQP_VHOST", &vhost)
        .env("IDLE", "3")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: HashSet<String> = got
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect();
    let want: HashSet<String> = events.iter().map(|e| id_of(e).to_string()).collect();
    assert_eq!(ids, want, "{stdout}");
    assert_eq!(got.len(), 3, "each once: {stdout}");
    for g in &got {
        assert_eq!(g["type"], "siak.penduduk.meninggal");
        assert_eq!(g["source"], DUKCAPIL);
        assert!(g["data"]["nik"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_the_broker_cannot_route_waits_in_the_outbox_until_its_queue_is_back() {
    let broker = amqp::shared();
    let vhost = broker.fresh_vhost();
    let bus = Bus::relaying(broker, &vhost, &[HR], &[]).await;
    // An operator deletes the member's queue by mistake.
    let mut api = reqwest::Url::parse(&broker.management).unwrap();
    let (user, password) = (
        api.username().to_owned(),
        api.password().unwrap().to_owned(),
    );
    api.set_username("").unwrap();
    api.set_password(None).unwrap();
    let queue = format!("{api}api/queues/{vhost}/simpul.inbox.GOV%2Fbkpsdm%2Fhr");
    let deleted = reqwest::Client::new()
        .delete(&queue)
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());

    // Published `mandatory`, returned unroutable: not delivered, kept.
    let ev = death(NIK2);
    assert_status(&bus.client(DUKCAPIL).send(&ev).await.unwrap(), 202);
    assert!(
        bus.wait_for_log("kept in the outbox").await,
        "the relay never saw the return"
    );
    let st = bus.client(DUKCAPIL).status(id_of(&ev)).await.unwrap().body;
    let hr = st["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["recipient"] == HR)
        .unwrap();
    assert_eq!(hr["state"], "pending", "{st:#}");

    // The queue comes back: the relay delivers what waited.
    sync(&bus, broker, &vhost, &bus.registry);
    let conn = broker.connect_as(&vhost, &bus.certs(), HR).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut c = ch
        .basic_consume(
            "simpul.inbox.GOV/bkpsdm/hr".into(),
            "".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let d = tokio::time::timeout(
        Duration::from_secs(20),
        futures_util::StreamExt::next(&mut c),
    )
    .await
    .expect("delivered once the queue is back")
    .unwrap()
    .unwrap();
    assert_eq!(
        d.properties.message_id().as_ref().unwrap().as_str(),
        id_of(&ev).to_string()
    );
}
