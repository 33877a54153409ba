//! Command-line definitions and dispatch.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bus::api::ApiConfig;
use bus::formats::Format;
use bus::identity::MemberId;
use bus::registry::Registry;
use bus::server::{ConnOptions, ServeOptions, serve};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "simpul",
    version,
    about = "Interoperability bus for Indonesian local government"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// `text` for people, `json` (one object per line) for a log collector.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SIMPUL_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bus (embedded store; creates the dev PKI and data dir on first run).
    Serve(Box<ServeArgs>),
    /// Development CA: init, issue, revoke.
    Certs {
        #[command(subcommand)]
        command: crate::certs::CertsCommand,
    },
    /// Registry tools.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Validate a payload (or a column of IDs) exactly as the bus would, offline.
    Check(CheckArgs),
    /// RabbitMQ: make the broker match the registry (users, permissions, queues).
    Amqp {
        #[command(subcommand)]
        command: AmqpCommand,
    },
    /// The audit log: verify its chain and signatures offline, or export it for an auditor.
    Audit {
        #[command(subcommand)]
        command: crate::audit::AuditCommand,
    },
    /// Operators: dead letters and their redrive, and the trace of a message, through the API.
    Admin(Box<crate::admin::AdminArgs>),
    /// Receipts: verify that the bus signed an event, offline.
    Receipt {
        #[command(subcommand)]
        command: crate::receipt::ReceiptCommand,
    },
    /// Start a bus, the agency adapters and their simulators in one process, run the G2G, G2B,
    /// G2C and G2E flows over mTLS and print who sent what to whom.
    Demo(DemoArgs),
    /// Agency adapters as their own processes: run one from its configuration, or check one.
    Adapter {
        #[command(subcommand)]
        command: crate::adapter::AdapterCommand,
    },
    /// An agency system's simulator as its own process, serving its native interface over
    /// HTTP (SIAK's web service, SIPANSE's API, a terminal pushing to e-absen), until SIGTERM.
    Simulate {
        #[command(subcommand)]
        command: crate::adapter::SimulateCommand,
    },
}

#[derive(Subcommand)]
enum AmqpCommand {
    /// Declare what the registry needs and remove what it no longer has; prints each change.
    Sync(crate::amqp::SyncArgs),
}

#[derive(Args)]
struct DemoArgs {
    /// The registry (default: ./registry.toml if there is one, else the built-in example
    /// registry and schemas)
    #[arg(long, env = "SIMPUL_REGISTRY")]
    registry: Option<PathBuf>,
    /// Keep the demo's certificates, bus store and simulator databases here (default: a
    /// temporary directory, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, default_value = "registry.toml", env = "SIMPUL_REGISTRY")]
    registry: PathBuf,
    #[arg(long, default_value = "certs", env = "SIMPUL_CERTS")]
    certs: PathBuf,
    #[arg(long, default_value = "data", env = "SIMPUL_DATA")]
    data: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8443", env = "SIMPUL_LISTEN")]
    listen: SocketAddr,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// Seconds a query waits for its provider before answering 504.
    #[arg(long, default_value_t = 30)]
    query_timeout: u64,
    /// Deliveries of one message before it goes to the dead letters.
    #[arg(long, default_value_t = 5)]
    max_attempts: u32,
    /// Default lease in seconds when a consumer does not ask for one.
    #[arg(long, default_value_t = 30)]
    lease: u64,
    /// Longest long poll (`wait`) in seconds; keep it under the idle timeout of any proxy
    /// between consumers and the bus.
    #[arg(long, default_value_t = 30)]
    max_wait: u64,
    /// Open connections at most.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds a client has to finish its TLS handshake.
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
    /// Requests writing to the store at once before the bus answers 503.
    #[arg(long, default_value_t = 4096)]
    max_inflight: usize,
    /// Milliseconds a write waits on a locked store before answering 503.
    #[arg(long, default_value_t = 2000)]
    store_busy_timeout_ms: u64,
    /// Bytes of request bodies (decompressed) held in memory at once; over it, 503.
    #[arg(long, default_value_t = 256 << 20)]
    max_buffered: usize,
    /// Seconds for a request's headers to arrive (HTTP/1.1).
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds for a whole request body to arrive; then 408.
    #[arg(long, default_value_t = 30)]
    body_timeout: u64,
    /// Seconds a connection may sit without a request before it is closed.
    #[arg(long, default_value_t = 60)]
    idle_timeout: u64,
    /// Seconds after which a connection is closed gracefully (clients reconnect).
    #[arg(long, default_value_t = 600)]
    max_connection_age: u64,
    /// Seconds between h2 keep-alive pings (an unanswered ping closes the connection).
    #[arg(long, default_value_t = 30)]
    h2_ping: u64,
    /// Long polls one member may have waiting at once; over it, 429.
    #[arg(long, default_value_t = 8)]
    max_long_polls: usize,
    /// Queries one member may have waiting for a reply at once; over it, 429.
    #[arg(long, default_value_t = 64)]
    max_queries: usize,
    /// Seconds past its nextUpdate that a CRL is still trusted.
    #[arg(long, default_value_t = 0)]
    crl_grace: u64,
    /// Keep state in PostgreSQL (postgres://USER@HOST:PORT/DB), shared by every node that
    /// names it; without it, the embedded store in --data.
    #[arg(long, env = "SIMPUL_STORE")]
    store: Option<String>,
    /// Days a settled message stays (with its status) in a PostgreSQL store before it is purged.
    #[arg(long, default_value_t = 30)]
    retention: u64,
    #[command(flatten)]
    amqp: crate::amqp::AmqpArgs,
    /// Seconds between signed checkpoints of the audit chain (sooner after 10,000 records).
    #[arg(long, default_value_t = 60)]
    audit_checkpoint: u64,
    /// Also serve /metrics in plain HTTP on this loopback address (e.g. 127.0.0.1:9464), for
    /// a Prometheus on the same machine; over mTLS it is served to operators.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Validate a registry file and its schemas, reporting every error at once.
    Check { file: PathBuf },
}

#[derive(Args)]
struct CheckArgs {
    /// Message type whose schema to check against.
    #[arg(required_unless_present = "format", conflicts_with = "format")]
    type_: Option<String>,
    /// JSON file with the payload (or a whole CloudEvent); `-` or nothing for stdin.
    file: Option<PathBuf>,
    /// Check one value per stdin line against a format (nik, no-kk, nip, nib, npwp, kbli, kode-wilayah).
    #[arg(long)]
    format: Option<String>,
    /// Check a query's response payload instead of its request.
    #[arg(long)]
    response: bool,
    /// Check a whole CloudEvent as sent by this member (its producer rights too).
    #[arg(long = "as", value_name = "MEMBER")]
    as_member: Option<String>,
    #[arg(long, default_value = "registry.toml", env = "SIMPUL_REGISTRY")]
    registry: PathBuf,
}

impl Cli {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Serve(a) => run_serve(*a),
            Command::Certs { command } => crate::certs::run(command),
            Command::Registry {
                command: RegistryCommand::Check { file },
            } => {
                let reg = Registry::load(&file)?;
                for crl in &reg.trust.crl {
                    bus::tls::crl::load_checked(crl)?;
                }
                let ocsp_decides = reg.trust.ocsp == bus::tls::ocsp::OcspPolicy::Require;
                if !reg.trust.crl.is_empty() && !ocsp_decides {
                    for ca in bus::tls::crl::uncovered(&reg.trust.ca, &reg.trust.crl)? {
                        println!(
                            "warning: no configured CRL is issued by the CA {ca}: member \
                             certificates it issues will be refused"
                        );
                    }
                }
                println!(
                    "{}: ok ({} members, {} types, {} schemas)",
                    file.display(),
                    reg.members().count(),
                    reg.types().count(),
                    reg.schemas.iter().count()
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Check(a) => run_check(a),
            Command::Amqp {
                command: AmqpCommand::Sync(a),
            } => crate::amqp::sync(a),
            Command::Audit { command } => crate::audit::run(command),
            Command::Receipt { command } => crate::receipt::run(command),
            Command::Admin(a) => crate::admin::run(*a),
            Command::Adapter { command } => crate::adapter::run(command),
            Command::Simulate { command } => crate::adapter::simulate(command),
            Command::Demo(a) => {
                let rt = tokio::runtime::Runtime::new()?;
                let trace = adapters::trace::Trace::printing();
                let here = PathBuf::from("registry.toml");
                let registry = a.registry.or_else(|| here.exists().then_some(here));
                let dir = a.dir.as_deref();
                rt.block_on(adapters::demo::run_in(registry.as_deref(), dir, trace))?;
                println!("\ndemo finished: the four flows ran end to end");
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

fn run_serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let secs = Duration::from_secs;
    let opts = ServeOptions {
        registry: a.registry,
        certs: a.certs,
        data: a.data,
        listen: a.listen,
        api: ApiConfig {
            max_body: a.max_body,
            query_timeout: secs(a.query_timeout),
            max_attempts: a.max_attempts.max(1),
            default_lease: secs(a.lease.clamp(1, 3600)),
            max_wait: secs(a.max_wait.clamp(1, 300)),
            max_inflight: a.max_inflight.max(1),
            max_buffered: a.max_buffered.max(a.max_body),
            body_timeout: secs(a.body_timeout.max(1)),
            max_long_polls: a.max_long_polls.max(1),
            max_queries: a.max_queries.max(1),
        },
        conn: ConnOptions {
            header_timeout: secs(a.header_timeout.max(1)),
            idle_timeout: secs(a.idle_timeout.max(1)),
            max_age: secs(a.max_connection_age.max(1)),
            h2_ping: secs(a.h2_ping.max(1)),
        },
        handshake_timeout: secs(a.handshake_timeout.max(1)),
        max_connections: a.max_connections.max(1),
        store_busy_timeout: Duration::from_millis(a.store_busy_timeout_ms),
        store: a.store.filter(|s| !s.is_empty()),
        retention: secs(a.retention.max(1) * 24 * 3600),
        crl_grace: secs(a.crl_grace),
        amqp: a.amqp.options()?,
        audit_checkpoint: bus::core::audit::CheckpointPolicy {
            every: secs(a.audit_checkpoint.max(1)),
            ..Default::default()
        },
        metrics_listen: a.metrics_listen,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(serve(opts, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
}

fn run_check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    if let Some(name) = a.format {
        let format = Format::from_name(&name).with_context(|| {
            let names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
            format!("unknown format {name:?}; known: {}", names.join(", "))
        })?;
        let ok = bus::check::check_format_lines(
            format,
            std::io::stdin().lock(),
            std::io::stdout().lock(),
        )?;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let type_ = a.type_.context("a message type is required")?;
    let registry = Registry::load(&a.registry)?;
    let sender = a.as_member.as_deref().map(MemberId::parse).transpose()?;
    if let Some(m) = &sender
        && registry.member(m).is_none()
    {
        bail!("{m} is not a member in {}", a.registry.display());
    }
    let mut text = Vec::new();
    match a.file.as_deref() {
        None => std::io::stdin().read_to_end(&mut text)?,
        Some(p) if p == Path::new("-") => std::io::stdin().read_to_end(&mut text)?,
        Some(p) => {
            text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            text.len()
        }
    };
    let result = serde_json::from_slice(&text)
        .map_err(|e| bus::error::ApiError::Malformed {
            detail: format!("not valid JSON: {e}"),
            errors: Vec::new(),
        })
        .and_then(|doc| {
            bus::check::check_payload(&registry, &type_, doc, a.response, sender.as_ref())
        });
    match result {
        Ok(warnings) => {
            println!(
                "{}",
                serde_json::json!({ "valid": true, "type": type_, "warnings": warnings })
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{}", serde_json::to_string_pretty(&e.problem())?);
            Ok(ExitCode::from(1))
        }
    }
}
