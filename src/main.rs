//! The `simpul` command line: a thin shell over the `bus` library.

mod amqp;
mod cli;

use std::io::IsTerminal;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(log_filter())
        .init();
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("simpul: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// `SIMPUL_LOG` (default `info`), except that the database and broker clients never log
/// below `info`: at `debug` tokio-postgres prints every statement's parameters and lapin
/// every frame, envelopes with personal IDs among them.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("SIMPUL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for cap in ["tokio_postgres=info", "lapin=info", "amq_protocol=info"] {
        if let Ok(cap) = cap.parse() {
            filter = filter.add_directive(cap);
        }
    }
    filter
}
