//! `simpul adapter run|check`: an agency's adapter as its own long-running process.

use std::path::PathBuf;
use std::process::ExitCode;

use adapters::deploy::config::{AgencyKind, Config};
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
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let (stop, rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    crate::cli::shutdown_signal().await;
                    let _ = stop.send(true);
                });
                adapters::deploy::run(cfg, rx).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
