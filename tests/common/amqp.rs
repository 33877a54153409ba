//! The RabbitMQ the tests run against: the one `scripts/services` started (its exports in the
//! environment, or started on demand), or a private one a test may restart and kill. Each bus
//! gets a vhost of its own, so tests never see each other's queues.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use bus::identity::MemberId;
use bus::transport::amqp::connect;
use lapin::Connection;

/// A broker, as `scripts/services` describes it.
pub struct Broker {
    /// `amqps://localhost:PORT` (no vhost).
    pub base: String,
    pub management: String,
    /// The PKI whose CA the broker trusts (a bus copies it, then issues its members).
    pub pki: PathBuf,
    /// Where the broker reads the CRL of that CA.
    pub crl: PathBuf,
    /// Set for a private broker: its services dir.
    private: Option<tempfile::TempDir>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/services")
}

fn run(dir: Option<&Path>, args: &[&str]) -> String {
    let mut cmd = Command::new(script());
    if let Some(d) = dir {
        cmd.env("SIMPUL_SERVICES_DIR", d);
    }
    let out = cmd.args(args).output().expect("run scripts/services");
    assert!(
        out.status.success(),
        "scripts/services {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn parse(exports: &str, private: Option<tempfile::TempDir>) -> Broker {
    let get = |name: &str| {
        exports
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("scripts/services printed no {name}"))
            .to_owned()
    };
    let url = get("SIMPUL_AMQP");
    Broker {
        base: url
            .rsplit_once('/')
            .expect("amqps://HOST:PORT/VHOST")
            .0
            .to_owned(),
        management: get("SIMPUL_AMQP_MANAGEMENT"),
        pki: get("SIMPUL_AMQP_CERTS").into(),
        crl: get("SIMPUL_AMQP_CRL").into(),
        private,
    }
}

/// The shared broker.
pub fn shared() -> &'static Broker {
    static B: OnceLock<Broker> = OnceLock::new();
    B.get_or_init(|| {
        let from_env = [
            "SIMPUL_AMQP",
            "SIMPUL_AMQP_MANAGEMENT",
            "SIMPUL_AMQP_CERTS",
            "SIMPUL_AMQP_CRL",
        ]
        .iter()
        .map(|n| std::env::var(n).map(|v| format!("export {n}={v}\n")))
        .collect::<Result<String, _>>();
        match from_env {
            Ok(exports) => parse(&exports, None),
            Err(_) => parse(&run(None, &["start", "rabbitmq"]), None),
        }
    })
}

impl Broker {
    /// A broker of this test's own (a cold start takes several seconds), stopped with it.
    pub fn private() -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let exports = run(Some(dir.path()), &["start", "rabbitmq"]);
        parse(&exports, Some(dir))
    }

    /// Stops a private broker: gracefully, or with SIGKILL.
    pub fn stop(&self, immediate: bool) {
        let dir = self
            .private
            .as_ref()
            .expect("only a private broker is stopped")
            .path();
        let mut args = vec!["stop"];
        if immediate {
            args.push("--immediate");
        }
        args.push("rabbitmq");
        run(Some(dir), &args);
    }

    /// Starts a stopped private broker again, on the same ports and data.
    pub fn start(&self) {
        let dir = self
            .private
            .as_ref()
            .expect("only a private broker is started")
            .path();
        run(Some(dir), &["start", "rabbitmq"]);
    }

    /// A vhost name no other test uses (the bus creates it).
    pub fn fresh_vhost(&self) -> String {
        format!("t-{}", uuid::Uuid::now_v7().simple())
    }

    /// Opens an AMQP connection as `member`, with its certificate from `certs` (EXTERNAL).
    pub async fn connect_as(
        &self,
        vhost: &str,
        certs: &Path,
        member: &str,
    ) -> Result<Connection, bus::transport::amqp::AmqpError> {
        let paths = bus::pki::member_paths(certs, &MemberId::parse(member).unwrap());
        let mut tls = bus::tls::client_config(&certs.join("ca.pem"), &paths.cert, &paths.key)?;
        tls.alpn_protocols.clear();
        let uri = connect::parse_url(&format!("{}/{vhost}", self.base))?;
        connect::open(&uri, &Arc::new(tls), "test consumer").await
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(dir) = &self.private {
            let _ = Command::new(script())
                .env("SIMPUL_SERVICES_DIR", dir.path())
                .args(["stop", "--immediate", "rabbitmq"])
                .output();
        }
    }
}
