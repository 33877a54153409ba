//! `simpul receipt verify`: checks a receipt against an event, offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use bus::trust::{KeySet, canonical, jws};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum ReceiptCommand {
    /// Verify that the bus signed exactly this event (or reply). Exit 0 when it did, 1 when
    /// the receipt does not match it.
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The receipt (a compact JWS), or a file holding it.
    #[arg(long)]
    receipt: String,
    /// The event as stored (as its recipient received it, or as sent with the `source` and
    /// `time` of the 202), or the query's reply `data`; JSON.
    #[arg(long)]
    event: PathBuf,
    /// The bus's receipt keys: a JWK set (saved from GET /v1/receipts/keys) or PEM
    /// certificates. Default: the certificates in --certs.
    #[arg(long)]
    keys: Option<PathBuf>,
    #[arg(long, default_value = "certs", env = "SIMPUL_CERTS")]
    certs: PathBuf,
}

pub fn run(ReceiptCommand::Verify(a): ReceiptCommand) -> anyhow::Result<ExitCode> {
    let receipt = match std::fs::read_to_string(&a.receipt) {
        Ok(text) => text.trim().to_owned(),
        Err(_) => a.receipt.trim().to_owned(),
    };
    let keys = match &a.keys {
        Some(f) => KeySet::load(f)?,
        None => KeySet::archive(&a.certs)?,
    };
    if keys.keys.is_empty() {
        bail!("no certificate to verify with (give --keys FILE or --certs DIR)");
    }
    let text = std::fs::read_to_string(&a.event).with_context(|| a.event.display().to_string())?;
    let event: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", a.event.display()))?;
    let verdict = jws::parse(&receipt)
        .and_then(|p| p.verify(&keys.keys, Some(&canonical(&event))).map(|()| p));
    match verdict {
        Ok(parsed) => {
            let h = &parsed.header;
            let at = time::OffsetDateTime::from_unix_timestamp(h.iat)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| h.iat.to_string());
            println!("receipt valid: {} signed by key {} at {at}", h.alg, h.kid);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("receipt refused: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
