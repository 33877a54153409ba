//! The `simpul` command line: a thin shell over the `bus` library.

mod adapter;
mod admin;
mod amqp;
mod audit;
mod certs;
mod cli;
mod receipt;

use std::io::IsTerminal;

use clap::Parser;

/// mimalloc rather than glibc's malloc: a batch of 100 events allocates and frees many
/// short-lived buffers across two worker threads, and glibc's arenas spent ~15% of the bus's CPU
/// on it (`perf`, batch-100). A/B in BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(log_filter());
    match cli.log_format {
        cli::LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        cli::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("simpul: {}", describe(&e));
            std::process::ExitCode::from(2)
        }
    }
}

/// The error and its causes, each said once: many of our errors already include their
/// cause's text, and `{:#}` would repeat it.
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
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
