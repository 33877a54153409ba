//! Generated registries for the growth and cold-start scenarios, and the dev PKI for a run.
//!
//! A generated registry has `n` members `GOV/mI` and `n` message types `bench.tI`, each with
//! its own schema file: `GOV/mI` produces `bench.tI` and `GOV/m(I+1)` is its provider. Each
//! schema checks a NIK (the custom `nik` format, so the schema work is like a real type's) and
//! has an unbounded free-text `catatan` to pad payloads to any size.

use std::path::{Path, PathBuf};

use anyhow::Context;
use bus::identity::MemberId;
use bus::pki::DevCa;
use serde_json::json;

pub const INSTANCE: &str = "simpul.bench";

/// The members a run needs certificates for; the bus needs none for the others (see
/// [`init_pki`]).
pub fn member(i: usize) -> MemberId {
    MemberId::parse(&format!("GOV/m{i}")).expect("valid generated member id")
}

pub fn type_name(i: usize) -> String {
    format!("bench.t{i}")
}

/// Writes `registry.toml` and `schemas/` for `n` members and types under `dir`.
pub fn registry(dir: &Path, n: usize) -> anyhow::Result<PathBuf> {
    let schemas = dir.join("schemas");
    std::fs::create_dir_all(&schemas)?;
    let mut toml = format!("instance = \"{INSTANCE}\"\nschemas_dir = \"schemas\"\n\n");
    for i in 0..n {
        toml.push_str(&format!(
            "[[member]]\nid = \"{}\"\nname = \"Perangkat daerah {i}\"\n\n",
            member(i)
        ));
    }
    for i in 0..n {
        let name = type_name(i);
        toml.push_str(&format!(
            "[[type]]\nname = \"{name}\"\nkind = \"message\"\nschema = \"{name}.v1\"\n\
             producers = [\"{}\"]\nprovider = \"{}\"\n\n",
            member(i),
            member((i + 1) % n)
        ));
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": format!("urn:simpul:schema:{name}.v1"),
            "type": "object",
            "additionalProperties": false,
            "required": ["nik"],
            "properties": {
                "nik": { "type": "string", "format": "nik" },
                "catatan": { "type": "string" }
            }
        });
        std::fs::write(
            schemas.join(format!("{name}.v1.json")),
            serde_json::to_vec_pretty(&schema)?,
        )?;
    }
    let path = dir.join("registry.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// Creates a dev CA with a server certificate and certificates for `members` only.
///
/// `simpul serve` issues a certificate for every registry member that lacks one when it can
/// sign (the CA key is present). With a 10,000-member registry that would measure key
/// generation, not the bus, so `sign_missing = false` removes the CA key afterwards, which is
/// exactly the "real CA" case where the bus issues nothing.
pub fn init_pki(
    certs: &Path,
    instance: &str,
    members: &[MemberId],
    sign_missing: bool,
) -> anyhow::Result<()> {
    DevCa::init(certs, instance, members, false).context("create the dev PKI")?;
    if !sign_missing {
        std::fs::remove_file(certs.join("ca.key")).context("remove the CA key")?;
    }
    Ok(())
}

/// A client configuration for `member` from a PKI written by [`init_pki`].
pub fn client_tls(certs: &Path, member: &MemberId) -> anyhow::Result<rustls::ClientConfig> {
    let p = bus::pki::member_paths(certs, member);
    Ok(bus::tls::client_config(
        &certs.join("ca.pem"),
        &p.cert,
        &p.key,
    )?)
}
