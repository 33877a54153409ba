//! `simpul adapter check|run`: an agency's adapter deployed as its own process from one
//! configuration file, checked as a whole first; its health endpoint, its terminals' push
//! endpoint, and a graceful stop that forwards the outbox.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::process::Running;
use common::*;

const SN: &str = "CKJD201960001";

fn config(bus: &Bus, dir: &Path, nip: &str, health: &str) -> std::path::PathBuf {
    let members = bus.certs().join("members");
    let text = format!(
        r#"agency = "eabsen"
bus = ["https://127.0.0.1:1", "{bus}"]
state_dir = "state"
health = "{health}"

[certs]
cert = "{members}/GOV_bkpsdm_eabsen.pem"
key = "{members}/GOV_bkpsdm_eabsen.key"
ca = "{ca}"

[eabsen]
listen = "127.0.0.1:0"

[[eabsen.device]]
sn = "{SN}"
unit = "DISKOMINFO"

[[eabsen.pegawai]]
pin = "1"
nip = "{nip}"
unit = "DISKOMINFO"
"#,
        bus = bus.base,
        members = members.display(),
        ca = bus.certs().join("ca.pem").display(),
    );
    let path = dir.join("eabsen.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn simpul(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).output().unwrap()
}

#[test]
fn a_configuration_is_checked_as_a_whole_before_anything_starts() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let good = config(&bus, dir.path(), "197803122005011002", "127.0.0.1:0");
    let out = simpul(&["adapter", "check", "--config", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));

    let text = std::fs::read_to_string(&good)
        .unwrap()
        .replace("127.0.0.1:0\"\n\n[certs]", "0.0.0.0:9470\"\n\n[certs]")
        .replace("GOV_bkpsdm_eabsen.key", "nobody.key")
        .replace("197803122005011002", "197813122005011002")
        .replace(
            "unit = \"DISKOMINFO\"\n\n[[eabsen.pegawai]]",
            "unit = \"\"\n\n[[eabsen.pegawai]]",
        );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let out = simpul(&["adapter", "check", "--config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "4 error(s)",
        "health: 0.0.0.0:9470 is not a loopback address",
        "certs.key:",
        "eabsen.device[0].unit: empty",
        "eabsen.pegawai[0].nip: not a valid NIP",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        !err.contains("197813122005011002"),
        "a NIP in clear:\n{err}"
    );
    // The configuration names its agency: it is not run as another.
    let out = simpul(&["adapter", "run", "siak", "--config", good.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("configures the Eabsen adapter"));
}

/// The agency system's side: an address with the agency's whole account, or a simulator, and
/// never the password in what is printed.
#[test]
fn an_agency_systems_address_and_account_are_checked_too() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let check = |agency: &str, member: &str, native: &str| {
        let c = bus.certs();
        let text = format!(
            "agency = \"{agency}\"\nbus = \"{}\"\nstate_dir = \"s\"\n\n[certs]\n\
             cert = \"{c}/members/{member}.pem\"\nkey = \"{c}/members/{member}.key\"\nca = \"{c}/ca.pem\"\n\n{native}",
            bus.base,
            c = c.display()
        );
        let path = dir.path().join(format!("{agency}.toml"));
        std::fs::write(&path, text).unwrap();
        simpul(&["adapter", "check", "--config", path.to_str().unwrap()])
    };
    let out = check(
        "siak",
        "GOV_dukcapil",
        "[siak]\nurl = \"ftp://dukcapil\"\nuser_id = \"diskominfo\"\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for want in [
        "2 error(s)",
        "siak.url: \"ftp://dukcapil\" is not an http(s):// address",
        "siak.password: missing",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    let out = check(
        "sipanse",
        "GOV_dpmptsp",
        "[sipanse]\nurl = \"http://sipanse\"\nsimulator = \"s.db\"\nip_user = \"10.0.0.1\"\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "sipanse.ip_user: only SIAK's web service asks for it",
        "sipanse: name either url or simulator, not both",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // The password may live in a file of its own (a missing one is named).
    let out = check(
        "siak",
        "GOV_dukcapil",
        "[siak]\nurl = \"https://dukcapil\"\nuser_id = \"u\"\npassword_file = \"nowhere.txt\"\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("siak.password_file: nowhere.txt:"), "{err}");
    std::fs::write(dir.path().join("siak.password"), "Rahasia-7\n").unwrap();
    let out = check(
        "siak",
        "GOV_dukcapil",
        "[siak]\nurl = \"https://dukcapil\"\nuser_id = \"u\"\npassword_file = \"siak.password\"\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check(
        "sipanse",
        "GOV_dpmptsp",
        "[sipanse]\nurl = \"https://sipanse.kota.go.id\"\nuser_id = \"u\"\npassword = \"Rahasia-7\"\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = format!("{out:?}");
    assert!(!said.contains("Rahasia-7"), "{said}");
}

/// The example configurations are valid where the development PKI is (`certs/` beside
/// `adapters/`, as in a checkout after `simpul serve`'s first run).
#[test]
fn the_example_configurations_check() {
    let bus = Bus::start(&[]);
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(bus.certs(), root.path().join("certs")).unwrap();
    let examples = root.path().join("adapters/examples");
    std::fs::create_dir_all(&examples).unwrap();
    for agency in ["siak", "sipanse", "eabsen", "portal", "hr"] {
        let name = format!("{agency}.toml");
        let to = examples.join(&name);
        std::fs::copy(repo().join("adapters/examples").join(&name), &to).unwrap();
        let out = simpul(&["adapter", "check", "--config", to.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Reads the adapter's stdout until it has printed both addresses.
fn addresses(child: &mut Child) -> (String, String) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut health, mut lan) = (None, None);
    while health.is_none() || lan.is_none() {
        let line = lines
            .next()
            .expect("the adapter ended before listening")
            .unwrap();
        if let Some(a) = line.strip_prefix("health on ") {
            health = Some(a.trim_end_matches("/healthz").to_owned());
        } else if let Some(a) = line.strip_prefix("terminals on ") {
            lan = Some(a.trim_end_matches('/').to_owned());
        }
    }
    (health.unwrap(), lan.unwrap())
}

async fn health_of(http: &reqwest::Client, base: &str) -> serde_json::Value {
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_adapter_runs_from_its_configuration_and_stops_gracefully() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&bus, dir.path(), "197803122005011002", "127.0.0.1:0");
    let mut child = Command::new(bin())
        .args(["adapter", "run", "eabsen", "--config"])
        .arg(&cfg)
        .env("SIMPUL_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (health, lan) = addresses(&mut child);
    let http = reqwest::Client::new();

    let punch = "1\t2026-12-07 07:01:02\t0\t1\t0\t0\t0\n";
    let r = http
        .post(format!("{lan}/iclock/cdata?SN={SN}&table=ATTLOG&Stamp=1"))
        .body(punch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "OK: 1");
    // The first node named is down: the adapter moves to the second and forwards.
    let forwarded = wait_until(Duration::from_secs(30), || async {
        let h = health_of(&http, &health).await;
        h["outbox"]["backlog"] == 0 && h["outbox"]["last_forward_at"].is_string()
    })
    .await;
    assert!(forwarded, "the punch was not forwarded");
    let h = health_of(&http, &health).await;
    assert_eq!(h["member"], EABSEN);
    assert_eq!(h["bus"], bus.base);
    assert!(h["last_error"]["error"].is_string(), "{h}");
    let (_, feed) = bus
        .get_text(HR, "/v1/feeds/eabsen.kehadiran.tercatat?after=0")
        .await;
    assert!(feed.contains("197803122005011002"), "{feed}");

    // SIGTERM: it stops by itself, with nothing left behind.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stderr).contains("adapter stopped"));
}

/// The portal, SIAK and HR as three processes beside the bus: a citizen's request filed at
/// the portal is registered in SIAK and its status comes back; a death SIAK's clerk records
/// reaches HR.
#[tokio::test(flavor = "multi_thread")]
async fn portal_siak_and_hr_run_as_their_own_processes() {
    let bus = Bus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("siak-simulator.db");
    let siak_native = format!("[siak]\nsimulator = \"{}\"\n", sim.display());
    let _siak = Running::adapter(
        &bus,
        dir.path(),
        "siak",
        DUKCAPIL,
        &siak_native,
        &["health"],
    );
    let portal = Running::adapter(
        &bus,
        dir.path(),
        "portal",
        PORTAL,
        "[portal]\nlisten = \"127.0.0.1:0\"\n",
        &["health", "portal application"],
    );
    let _hr = Running::adapter(&bus, dir.path(), "hr", HR, "", &["health"]);
    let http = reqwest::Client::new();
    let intake = &portal.addrs["portal application"];

    let r = http
        .post(format!("{intake}/permohonan"))
        .json(
            &serde_json::json!({ "nik": NIK, "layanan": "mobil_dukling", "kode_desa": "3204052001",
                                    "lokasi": "Balai Desa", "tanggal": "2026-12-14" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let received = wait_until(Duration::from_secs(30), || async {
        let s: serde_json::Value = http
            .get(format!("{intake}/permohonan/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        s["status"] == "diterima"
    })
    .await;
    assert!(received, "the request's status did not come back");
    // A request the bus refuses is never sent, and the portal application learns why.
    let r = http
        .post(format!("{intake}/permohonan"))
        .json(
            &serde_json::json!({ "nik": NIK, "layanan": "mobil_dukling", "lokasi": "Balai Desa" }),
        )
        .send()
        .await
        .unwrap();
    let bad = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("{intake}/permohonan/{bad}");
    let now = || async {
        http.get(&url)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let refused = wait_until(Duration::from_secs(30), || async {
        now().await["status"] == "tidak_terkirim"
    })
    .await;
    let answer = now().await;
    assert!(refused, "{answer}");
    let fields = answer["masalah"]["errors"].to_string();
    assert!(
        fields.contains("/data/kode_desa") && fields.contains("/data/tanggal"),
        "{answer}"
    );

    // SIAK's clerk records a death in SIAK (the simulator's database, shared with its process).
    let clerk = adapters::siak::simulator::SiakSimulator::open(&sim).unwrap();
    clerk
        .catat_kematian(NIK, "20-11-2026", "RSUD", "AKTA-9")
        .unwrap();
    let hr_db = dir.path().join("hr").join("GOV_bkpsdm_hr.db");
    let reached_hr = wait_until(Duration::from_secs(30), || async {
        let c = rusqlite::Connection::open(&hr_db).unwrap();
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM diterima WHERE type = 'siak.penduduk.meninggal'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        n == 1
    })
    .await;
    assert!(reached_hr, "the death did not reach HR");
}
