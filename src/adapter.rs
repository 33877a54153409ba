//! `simpul adapter run|check`: an agency's adapter as its own long-running process;
//! `simpul simulate`: an agency system's simulator as one.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use adapters::deploy::config::{AgencyKind, Config};
use adapters::deploy::simulate::Simulated;
use anyhow::bail;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum AdapterCommand {
    /// Run one agency's adapter next to its system until SIGTERM or Ctrl-C (then it finishes
    /// what it holds and forwards its outbox).
    Run {
        #[arg(value_enum)]
        agency: AgencyKind,
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a configuration as a whole, without connecting; every error at once.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
}

pub fn run(command: AdapterCommand) -> anyhow::Result<ExitCode> {
    match command {
        AdapterCommand::Check { config } => {
            let cfg = Config::load(&config)?;
            println!(
                "{}: ok ({:?} adapter, {} bus node(s), state in {})",
                config.display(),
                cfg.agency,
                cfg.bus.len(),
                cfg.state_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        AdapterCommand::Run { agency, config } => {
            let cfg = Config::load(&config)?;
            if cfg.agency != agency {
                bail!(
                    "{} configures the {:?} adapter, not {agency:?}",
                    config.display(),
                    cfg.agency
                );
            }
            until_signal(|stop| adapters::deploy::run(cfg, stop))
        }
    }
}

#[derive(Subcommand)]
pub enum SimulateCommand {
    /// SIAK/SPCP at Dukcapil: its JSON web service (`/dukcapil/get_json/<INSTANSI>/CALL_NIK`
    /// …), seeded with synthetic residents, and the clerk's desk under `/simulator/`.
    Siak {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value = "siak-simulator.db")]
        db: PathBuf,
        #[command(flatten)]
        account: Account,
    },
    /// SIPANSE at DPMPTSP: its HTTP API (`/api/v1/permohonan` …) and the licensing officer's
    /// desk under `/simulator/`.
    Sipanse {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value = "sipanse-simulator.db")]
        db: PathBuf,
        #[command(flatten)]
        account: Account,
    },
    /// A fingerprint terminal pushing to the e-absen adapter over the ZKTeco ADMS protocol;
    /// its reader (`POST /simulator/scan`) and its ATTLOG export (`GET /attlog`) on `--listen`.
    Eabsen {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value = "eabsen-terminal.db")]
        db: PathBuf,
        /// The terminal's serial number (admitted in the adapter's configuration).
        #[arg(long)]
        sn: String,
        /// The adapter's terminal endpoint, e.g. http://127.0.0.1:8081
        #[arg(long)]
        push: String,
    },
}

/// The account the simulated system accepts.
#[derive(clap::Args)]
pub struct Account {
    #[arg(long, default_value = "simpul")]
    user_id: String,
    #[arg(long, env = "SIMPUL_SIMULATOR_PASSWORD", default_value = "simulator")]
    password: String,
}

pub fn simulate(command: SimulateCommand) -> anyhow::Result<ExitCode> {
    let (what, listen) = match command {
        SimulateCommand::Siak {
            listen,
            db,
            account,
        } => (
            Simulated::Siak {
                db,
                user_id: account.user_id,
                password: account.password,
            },
            listen,
        ),
        SimulateCommand::Sipanse {
            listen,
            db,
            account,
        } => (
            Simulated::Sipanse {
                db,
                user_id: account.user_id,
                password: account.password,
            },
            listen,
        ),
        SimulateCommand::Eabsen {
            listen,
            db,
            sn,
            push,
        } => (Simulated::Eabsen { db, sn, push }, listen),
    };
    until_signal(|stop| adapters::deploy::simulate::run(what, listen, stop))
}

/// Runs `task` until it returns, telling it to stop on SIGTERM or Ctrl-C.
fn until_signal<F, E>(
    task: impl FnOnce(tokio::sync::watch::Receiver<bool>) -> F,
) -> anyhow::Result<ExitCode>
where
    F: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::cli::shutdown_signal().await;
            let _ = stop.send(true);
        });
        task(rx).await
    })?;
    Ok(ExitCode::SUCCESS)
}
