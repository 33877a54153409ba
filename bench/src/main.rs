//! `simpul-bench`: measures the bus against a no-op mTLS echo server on the same machine.
//!
//! `simpul-bench run --scenario NAME` prints one JSON line per result on stdout; see
//! BENCHMARKS.md for what each scenario does and the commands behind the published figures.
//! `bus` and `echo` are the server processes that `run` starts (this binary re-executed).

mod children;
mod conn;
mod generate;
mod load;
mod payload;
mod peer;
mod plot;
mod recheck;
mod report;
mod scaleout;
mod scenarios;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::conn::Proto;

#[derive(Parser)]
#[command(
    name = "simpul-bench",
    about = "Benchmark simpul against its mTLS echo ceiling"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario and its echo ceiling; one JSON line per result on stdout.
    Run(Box<RunArgs>),
    /// Draw the PNG of throughput and p99 against offered load from `sweep` JSON lines.
    Plot {
        /// Files with JSON lines from `run --scenario sweep`.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[arg(long, default_value = "bench/results/throughput.png")]
        output: PathBuf,
        #[arg(
            long,
            default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
        )]
        font: PathBuf,
    },
    /// Time one re-check of a member certificate (chain, CRL, membership): what checking the
    /// peer on every request would add to each request.
    Recheck {
        #[arg(long, default_value_t = 20_000)]
        iterations: u32,
    },
    /// (internal) The bus under test, as `simpul serve` with its default limits.
    #[command(hide = true)]
    Bus {
        #[arg(long)]
        registry: PathBuf,
        #[arg(long)]
        certs: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 1 << 20)]
        max_body: usize,
        /// A PostgreSQL store (`--store` of `simpul serve`).
        #[arg(long)]
        store: Option<String>,
        /// RabbitMQ as the transport (`--amqp` of `simpul serve`), with its management API.
        #[arg(long, requires = "amqp_management")]
        amqp: Option<String>,
        #[arg(long)]
        amqp_management: Option<String>,
    },
    /// (internal) The no-op mTLS echo server: the ceiling.
    #[command(hide = true)]
    Echo {
        #[arg(long)]
        certs: PathBuf,
        #[arg(long)]
        instance: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// accept | sweep | e2e | query | batch | growth | payload | backlog | coldstart | scaleout |
    /// peer | amqp-e2e
    #[arg(long)]
    scenario: String,
    /// Measured seconds per load run (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Concurrent streams per connection with `--proto h2`.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    #[arg(long, value_enum, default_value_t = Proto::H1)]
    proto: Proto,
    /// Fixed offered rate (requests/s) instead of the maximum, for accept and e2e.
    #[arg(long)]
    rate: Option<f64>,
    /// Offered rates for `sweep` and `query`.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    rates: Vec<f64>,
    /// Body size in bytes of one event.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Events per batch envelope (`batch`).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Consumer (e2e) or provider (query) loops, one h2 connection each.
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// Registry sizes (members = types) for `growth`.
    #[arg(long, value_delimiter = ',', default_value = "10,10000")]
    members: Vec<usize>,
    /// Payload sizes in bytes for `payload`.
    #[arg(long, value_delimiter = ',', default_value = "256,1024,16384,262144")]
    sizes: Vec<usize>,
    /// Messages to queue before measuring (`backlog`).
    #[arg(long, default_value_t = 1_000_000)]
    backlog: u64,
    /// Types (one schema each) in the `coldstart` registry.
    #[arg(long, default_value_t = 100)]
    schemas: usize,
    /// The bus's `--max-body`.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// PostgreSQL for `scaleout` (postgres://…; default: `SIMPUL_STORE`, as
    /// `scripts/services start` prints it). Each run gets a schema of its own.
    #[arg(long, env = "SIMPUL_STORE")]
    store: Option<String>,
    /// Node counts for `scaleout`.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    nodes: Vec<usize>,
    /// The broker for `peer` and `amqp-e2e`: amqps://HOST:PORT (as `scripts/services start`
    /// prints it in SIMPUL_AMQP; its vhost is ignored, each run makes its own).
    #[arg(long, env = "SIMPUL_AMQP")]
    amqp: Option<String>,
    #[arg(long, env = "SIMPUL_AMQP_MANAGEMENT")]
    amqp_management: Option<String>,
    /// The PKI whose CA the broker trusts (SIMPUL_AMQP_CERTS).
    #[arg(long, env = "SIMPUL_AMQP_CERTS")]
    amqp_certs: Option<PathBuf>,
    /// Publishes in flight per channel for `peer` (the best is reported).
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    windows: Vec<usize>,
    /// `accept` only: scrape /metrics as the operator every this many seconds during the run.
    #[arg(long)]
    scrape: Option<f64>,
    /// Channels (each on its own connection) for `peer`.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    channels: Vec<usize>,
    /// Registry for accept/sweep/e2e/query/batch/backlog (default: the repository's).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../registry.toml"))]
    registry: PathBuf,
}

impl RunArgs {
    fn opts(&self) -> scenarios::Opts {
        scenarios::Opts {
            registry: self.registry.clone(),
            duration: Duration::from_secs_f64(self.duration),
            warmup: Duration::from_secs_f64(self.warmup),
            connections: self.connections.max(1),
            streams: self.streams.max(1),
            proto: self.proto,
            rate: self.rate,
            rates: self.rates.clone(),
            size: self.size,
            batch: self.batch.max(1),
            consumers: self.consumers,
            members: self.members.clone(),
            sizes: self.sizes.clone(),
            backlog: self.backlog,
            schemas: self.schemas.max(1),
            max_body: self.max_body,
            store: self.store.clone(),
            nodes: self.nodes.clone(),
            amqp: self.amqp.clone(),
            amqp_management: self.amqp_management.clone(),
            amqp_certs: self.amqp_certs.clone(),
            windows: self.windows.clone(),
            scrape: self.scrape.map(std::time::Duration::from_secs_f64),
            channels: self.channels.clone(),
        }
    }
}

/// mimalloc, as in `simpul`: the bus measured here must allocate as the shipped one does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIMPUL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match Cli::parse().command {
        Command::Run(args) => {
            let rt = tokio::runtime::Runtime::new()?;
            let lines = rt.block_on(scenarios::run(&args.scenario, &args.opts()))?;
            for l in lines {
                l.print();
            }
            Ok(())
        }
        Command::Plot {
            inputs,
            output,
            font,
        } => plot::draw(&inputs, &output, &font),
        Command::Bus {
            registry,
            certs,
            data,
            max_body,
            store,
            amqp,
            amqp_management,
        } => children::bus(
            registry,
            certs,
            data,
            max_body,
            store,
            amqp.zip(amqp_management),
        ),
        Command::Echo { certs, instance } => children::echo(&certs, &instance),
        Command::Recheck { iterations } => recheck::run(iterations),
    }
}
