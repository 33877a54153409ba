//! `simpul audit verify|export`: the audit chain read back, offline, by anyone holding the bus's
//! certificates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use bus::audit::verify::verify_export;
use bus::core::audit::{export, verify_store};
use bus::store::{AuditRead, PgOptions, PgStore, SqliteAudit};
use bus::trust::KeySet;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the whole chain and every checkpoint's signature. Exit 0 when intact, 1 naming the
    /// first bad record.
    Verify(VerifyArgs),
    /// Write the records of a time range, and the checkpoints over them, as JSON lines.
    Export(ExportArgs),
}

/// Whose audit: the embedded store (read-only, so a bus may be running on it) or PostgreSQL.
#[derive(Args)]
pub struct Source {
    #[arg(long, default_value = "data", env = "SIMPUL_DATA")]
    data: PathBuf,
    /// A PostgreSQL store (postgres://USER@HOST:PORT/DB) instead of --data.
    #[arg(long, env = "SIMPUL_STORE")]
    store: Option<String>,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    source: Source,
    /// The bus's certificate directory: its server certificate and every earlier one kept in
    /// receipt-keys/.
    #[arg(long, default_value = "certs", env = "SIMPUL_CERTS")]
    certs: PathBuf,
    /// Verify with these keys instead: a JWK set (as GET /v1/receipts/keys serves it) or PEM
    /// certificates.
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Verify an export file instead of a store.
    #[arg(long)]
    file: Option<PathBuf>,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    source: Source,
    /// Start of the range: RFC 3339 (2026-11-30T08:00:00+07:00) or a date (2026-11-30, UTC).
    #[arg(long)]
    from: String,
    /// End of the range, inclusive; a date means the end of that day.
    #[arg(long)]
    to: String,
    /// Write here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        match cmd {
            AuditCommand::Verify(a) => verify(a).await,
            AuditCommand::Export(a) => run_export(a).await,
        }
    })
}

async fn open(s: &Source) -> anyhow::Result<Box<dyn AuditRead>> {
    Ok(match &s.store {
        Some(url) => Box::new(PgStore::connect(PgOptions::new(url.clone())).await?),
        None => {
            let path = s.data.join("simpul.db");
            if !path.exists() {
                bail!(
                    "{}: no store here (give --data DIR or --store URL)",
                    path.display()
                );
            }
            Box::new(SqliteAudit::open(&path)?)
        }
    })
}

async fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let keys = match &a.keys {
        Some(f) => KeySet::load(f)?,
        None => KeySet::archive(&a.certs)?,
    };
    if keys.keys.is_empty() {
        bail!("no certificate to verify with (give --certs DIR or --keys FILE)");
    }
    let result = match &a.file {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| f.display().to_string())?;
            verify_export(&text, &keys)
        }
        None => {
            let store = open(&a.source).await?;
            let bar = indicatif::ProgressBar::new(0);
            let result = verify_store(&*store, &keys, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .await?;
            bar.finish_and_clear();
            let unsealed = store.unsealed_count().await?;
            if unsealed > 0 {
                println!("{unsealed} record(s) not yet sealed: the bus seals them when it runs");
            }
            result
        }
    };
    match result {
        Ok(v) => {
            println!(
                "audit chain intact: {} records, {} checkpoints, {} after the last checkpoint",
                v.records, v.checkpoints, v.unsigned
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            println!("audit chain broken at record {}: {}", b.pos, b.why);
            Ok(ExitCode::from(1))
        }
    }
}

/// Microseconds since the epoch of an RFC 3339 time, or of a date's start (or end).
fn instant(s: &str, end_of_day: bool) -> anyhow::Result<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1000) as i64);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s, &fmt)
        .with_context(|| format!("{s:?}: give an RFC 3339 time or a date (YYYY-MM-DD)"))?;
    let t = match end_of_day {
        false => d.midnight().assume_utc(),
        true => d.next_day().unwrap_or(d).midnight().assume_utc() - time::Duration::MICROSECOND,
    };
    Ok((t.unix_timestamp_nanos() / 1000) as i64)
}

async fn run_export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let (from, to) = (instant(&a.from, false)?, instant(&a.to, true)?);
    let store = open(&a.source).await?;
    let n = match &a.out {
        Some(path) => {
            let f = std::fs::File::create(path).with_context(|| path.display().to_string())?;
            let mut w = std::io::BufWriter::new(f);
            let n = export(&*store, from, to, &mut w).await?;
            std::io::Write::flush(&mut w)?;
            n
        }
        None => export(&*store, from, to, &mut std::io::stdout().lock()).await?,
    };
    eprintln!("exported {n} record(s)");
    Ok(ExitCode::SUCCESS)
}
