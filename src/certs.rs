//! `simpul certs`: the development CA (init, issue, revoke, CRL, server renewal), the expiry
//! list, and importing a real CA's PKCS#12.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bus::identity::MemberId;
use bus::pki::{DevCa, Validity};
use bus::registry::Registry;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Create a CA, a server certificate and one certificate per registry member.
    Init {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        #[arg(long, default_value = "registry.toml")]
        registry: PathBuf,
        /// Replace an existing CA (every issued certificate stops working).
        #[arg(long)]
        force: bool,
    },
    /// Issue (or re-issue) a member certificate.
    Issue {
        member: String,
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        #[arg(long, default_value = "registry.toml")]
        registry: PathBuf,
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Sign the member's own CSR (PEM) instead of making a key: the private key never
        /// leaves the member. Only the certificate is written.
        #[arg(long)]
        csr: Option<PathBuf>,
    },
    /// Install a member certificate and key delivered as PKCS#12 (.p12/.pfx): checked against
    /// the registry and the trusted CA(s), then written where the bus and the adapters look.
    /// The password comes from --password-file or SIMPUL_P12_PASSWORD (empty if neither).
    Import {
        #[arg(long)]
        p12: PathBuf,
        #[arg(long)]
        password_file: Option<PathBuf>,
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        #[arg(long, default_value = "registry.toml")]
        registry: PathBuf,
        /// Replace the member's certificate and key if there already are some.
        #[arg(long)]
        force: bool,
    },
    /// Write a member's certificate and key as PKCS#12 (.p12), for a browser or a client that
    /// wants one file. The password comes from --password-file or SIMPUL_P12_PASSWORD and
    /// must not be empty; the file is written 0600.
    Export {
        member: String,
        #[arg(long)]
        p12: PathBuf,
        #[arg(long)]
        password_file: Option<PathBuf>,
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
    /// Revoke a member's current certificate and rewrite the CRL.
    Revoke {
        member: String,
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
    /// A new server certificate and key from the development CA; a running bus rotates to them
    /// (and signs receipts with the new key) on SIGHUP or within a second.
    ServerRenew {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        #[arg(long, default_value = "registry.toml")]
        registry: PathBuf,
    },
    /// Every registry member's certificate in --dir, with its expiry; those within 30 days
    /// (or past it, or missing) are flagged.
    List {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        #[arg(long, default_value = "registry.toml")]
        registry: PathBuf,
    },
    /// Re-sign the development CRL with a new nextUpdate (the same revocations).
    CrlRefresh {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Hours until the CRL's nextUpdate.
        #[arg(long, default_value_t = 168)]
        hours: u64,
    },
}

fn member_ids(registry: &Path) -> anyhow::Result<(String, Vec<MemberId>)> {
    let reg = Registry::load(registry)?;
    let mut ids: Vec<MemberId> = reg.members().map(|m| m.id.clone()).collect();
    ids.sort();
    Ok((reg.instance.clone(), ids))
}

pub fn run(c: CertsCommand) -> anyhow::Result<ExitCode> {
    match c {
        CertsCommand::Init {
            dir,
            registry,
            force,
        } => {
            let (instance, members) = member_ids(&registry)?;
            DevCa::init(&dir, &instance, &members, force)?;
            println!(
                "development PKI for {instance} written to {} ({} members)",
                dir.display(),
                members.len()
            );
        }
        CertsCommand::Issue {
            member,
            dir,
            registry,
            days,
            csr,
        } => {
            let (instance, members) = member_ids(&registry)?;
            let id = MemberId::parse(&member)?;
            if !members.contains(&id) {
                bail!("{id} is not a member in {}", registry.display());
            }
            let ca = DevCa::load(&dir)?;
            match csr {
                None => {
                    let paths = ca.issue(&instance, &id, Validity::days(days))?;
                    println!("{}\n{}", paths.cert.display(), paths.key.display());
                }
                Some(path) => {
                    let pem = std::fs::read_to_string(&path)
                        .with_context(|| path.display().to_string())?;
                    let source = bus::pki::KeySource::Csr {
                        pem: &pem,
                        path: &path,
                    };
                    let paths = ca.issue_with(&instance, &id, Validity::days(days), source)?;
                    println!("{}", paths.cert.display());
                }
            }
        }
        CertsCommand::Import {
            p12,
            password_file,
            dir,
            registry,
            force,
        } => {
            let reg = Registry::load(&registry)?;
            let members: Vec<MemberId> = reg.members().map(|m| m.id.clone()).collect();
            let password = p12_password(password_file)?;
            let ca_files = match reg.trust.ca.is_empty() {
                true => vec![dir.join(bus::pki::CA_CERT)],
                false => reg.trust.ca.clone(),
            };
            let done = bus::pki::P12Import {
                file: &p12,
                password: &password,
                instance: &reg.instance,
                members: &members,
                ca_files: &ca_files,
                dir: &dir,
                force,
            }
            .run()?;
            println!(
                "imported {}: {} (with {} intermediate(s)), {}; valid until {}",
                done.member,
                done.paths.cert.display(),
                done.intermediates,
                done.paths.key.display(),
                done.not_after
            );
        }
        CertsCommand::Export {
            member,
            p12,
            password_file,
            dir,
        } => {
            let id = MemberId::parse(&member)?;
            let password = p12_password(password_file)?;
            bus::pki::export_p12(&bus::pki::member_paths(&dir, &id), &password, &p12)?;
            println!("{}", p12.display());
        }
        CertsCommand::ServerRenew { dir, registry } => {
            let (instance, _) = member_ids(&registry)?;
            DevCa::load(&dir)?.renew_server(&instance)?;
            println!("{}", dir.join(bus::pki::SERVER_CERT).display());
        }
        CertsCommand::List { dir, registry } => {
            let (_, members) = member_ids(&registry)?;
            let now = time::OffsetDateTime::now_utc();
            let soon = now + bus::core::presence::EXPIRY_WARNING;
            for m in members {
                let path = bus::pki::member_paths(&dir, &m).cert;
                let Ok(certs) = bus::tls::load_certs(&path) else {
                    println!("{m}\tno certificate at {}", path.display());
                    continue;
                };
                let (_, cert) = x509_parser::parse_x509_certificate(&certs[0])
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                let not_after = cert.validity().not_after.to_datetime();
                let days = (not_after - now).whole_days();
                let flag = match not_after {
                    t if t <= now => "\tEXPIRED",
                    t if t <= soon => "\tEXPIRES WITHIN 30 DAYS",
                    _ => "",
                };
                println!("{m}\t{}\t{days} days{flag}", not_after.date());
            }
        }
        CertsCommand::CrlRefresh { dir, hours } => {
            DevCa::load(&dir)?.refresh_crl_for(Duration::from_secs(hours * 3600))?;
            println!(
                "CRL re-signed at {}, next update in {hours} h",
                dir.join("crl.pem").display()
            );
        }
        CertsCommand::Revoke { member, dir } => {
            let id = MemberId::parse(&member)?;
            DevCa::load(&dir)?.revoke(&id)?;
            println!(
                "revoked {id}; CRL rewritten at {}",
                dir.join("crl.pem").display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A PKCS#12 password: from a file (its first line) or `SIMPUL_P12_PASSWORD`, never from the
/// command line, where other users could read it.
fn p12_password(file: Option<PathBuf>) -> anyhow::Result<String> {
    Ok(match file {
        Some(f) => std::fs::read_to_string(&f)
            .with_context(|| f.display().to_string())?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        None => std::env::var("SIMPUL_P12_PASSWORD").unwrap_or_default(),
    })
}
