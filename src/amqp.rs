//! The command line's RabbitMQ options, shared by `simpul serve` and `simpul amqp sync`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use bus::registry::Registry;
use bus::transport::amqp::{AmqpOptions, Transport};
use clap::Args;

#[derive(Args, Clone)]
pub struct AmqpArgs {
    /// RabbitMQ as the transport for members with delivery = "amqp":
    /// amqps://HOST:PORT/VHOST. Needs --store postgres://….
    #[arg(long, env = "SIMPUL_AMQP")]
    pub amqp: Option<String>,
    /// The broker's management API, as an administrator: http://USER:PASSWORD@HOST:PORT.
    #[arg(long, env = "SIMPUL_AMQP_MANAGEMENT")]
    pub amqp_management: Option<String>,
    /// The CA that signed the broker's certificate (default: the bus's CA in --certs).
    #[arg(long)]
    pub amqp_ca: Option<PathBuf>,
    /// The file the broker reads its CRL from (its crl_cache dir); the bus keeps it current.
    #[arg(long, env = "SIMPUL_AMQP_CRL")]
    pub amqp_crl: Option<PathBuf>,
}

impl AmqpArgs {
    /// The transport's options, when --amqp is given; certificate paths left empty are the
    /// bus's own.
    pub fn options(&self) -> anyhow::Result<Option<AmqpOptions>> {
        let Some(url) = self.amqp.clone().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let Some(management) = self.amqp_management.clone() else {
            bail!(
                "--amqp needs --amqp-management http://USER:PASSWORD@HOST:PORT (users and permissions are kept there)"
            );
        };
        Ok(Some(AmqpOptions {
            url,
            management,
            ca: self.amqp_ca.clone().unwrap_or_default(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            crl_copy: self.amqp_crl.clone(),
        }))
    }
}

#[derive(Args)]
pub struct SyncArgs {
    #[arg(long, default_value = "registry.toml", env = "SIMPUL_REGISTRY")]
    registry: PathBuf,
    #[arg(long, default_value = "certs", env = "SIMPUL_CERTS")]
    certs: PathBuf,
    /// Deliveries of one message before it goes to the dead letters (as `serve`).
    #[arg(long, default_value_t = 5)]
    max_attempts: u32,
    #[command(flatten)]
    amqp: AmqpArgs,
}

/// `simpul amqp sync`: makes the broker match the registry and prints each change.
pub fn sync(a: SyncArgs) -> anyhow::Result<ExitCode> {
    let Some(mut opts) = a.amqp.options()? else {
        bail!("give the broker with --amqp amqps://HOST:PORT/VHOST (or SIMPUL_AMQP)");
    };
    let registry = Registry::load(&a.registry)?;
    let certs = |p: &mut PathBuf, name: &str| {
        if p.as_os_str().is_empty() {
            *p = a.certs.join(name);
        }
    };
    certs(&mut opts.ca, bus::pki::CA_CERT);
    certs(&mut opts.cert, bus::pki::SERVER_CERT);
    certs(&mut opts.key, bus::pki::SERVER_KEY);
    let mut members: Vec<_> = registry
        .members()
        .filter(|m| m.delivery == bus::registry::Delivery::Amqp)
        .map(|m| m.id.clone())
        .collect();
    members.sort();
    let transport = Transport {
        opts,
        instance: registry.instance.clone(),
        members,
        max_attempts: a.max_attempts.max(1),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let changes = rt
        .block_on(transport.sync())
        .context("syncing RabbitMQ with the registry")?;
    if changes.is_empty() {
        println!("RabbitMQ already matches the registry");
    }
    for c in changes {
        println!("{c}");
    }
    Ok(ExitCode::SUCCESS)
}
