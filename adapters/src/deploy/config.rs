//! An adapter's configuration file (TOML), read and checked as a whole before anything starts:
//! every error is reported at once, each named by its key, as the registry's are.
//!
//! ```toml
//! agency = "eabsen"                     # siak, sipanse, eabsen, portal or hr
//! bus = ["https://bus-1:8443", "https://bus-2:8443"]   # one address, or the nodes of one bus
//! state_dir = "state"                   # the outbox and the id key: back it up
//! health = "127.0.0.1:9470"             # GET /healthz, loopback only
//!
//! [certs]                               # the agency's member certificate
//! cert = "certs/members/GOV_bkpsdm_eabsen.pem"
//! key = "certs/members/GOV_bkpsdm_eabsen.key"
//! ca = "certs/ca.pem"
//!
//! [eabsen]                              # the agency's native side
//! listen = "0.0.0.0:8081"               # where the office's terminals push (plain HTTP, LAN)
//! ```
//!
//! SIAK and SIPANSE name their system's address and the agency's account there
//! (`[siak] url = "https://…/dukcapil/get_json/DISKOMINFO"`, `user_id`, `password` or
//! `password_file`, `ip_user`),
//! or, for a trial, `simulator = "siak.db"` to run the simulator inside the adapter.
//!
//! Relative paths are taken from the configuration file's directory.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::agency::Account;
use time::UtcOffset;

/// The agencies `simpul adapter run` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AgencyKind {
    Siak,
    Sipanse,
    Eabsen,
    Portal,
    Hr,
}

#[derive(Debug, thiserror::Error)]
#[error("{} has {} error(s):\n  - {}", path.display(), errors.len(), errors.join("\n  - "))]
pub struct ConfigError {
    pub path: PathBuf,
    pub errors: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    agency: AgencyKind,
    bus: OneOrMany,
    state_dir: PathBuf,
    #[serde(default = "default_health")]
    health: String,
    certs: RawCerts,
    siak: Option<RawNative>,
    sipanse: Option<RawNative>,
    eabsen: Option<RawEabsen>,
    portal: Option<RawPortal>,
}

/// The portal: where its application files requests (loopback only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPortal {
    listen: String,
}

fn default_health() -> String {
    "127.0.0.1:9470".into()
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCerts {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

/// SIAK and SIPANSE: the agency system's address and the agency's account there, or (for a
/// demo) the simulator's database, run inside the adapter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNative {
    simulator: Option<PathBuf>,
    url: Option<String>,
    user_id: Option<String>,
    password: Option<String>,
    /// A file holding the password (readable by the adapter's user only), instead of
    /// `password`: the configuration can then be shared and kept in version control.
    password_file: Option<PathBuf>,
    /// SIAK only: the address Dukcapil has on its allow-list for the agency.
    ip_user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEabsen {
    listen: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default, rename = "device")]
    devices: Vec<RawDevice>,
    #[serde(default)]
    pegawai: Vec<RawPegawai>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    sn: String,
    unit: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPegawai {
    pin: String,
    nip: String,
    unit: String,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub agency: AgencyKind,
    pub bus: Vec<String>,
    pub state_dir: PathBuf,
    pub health: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub native: Native,
}

#[derive(Debug, Clone)]
pub enum Native {
    /// An agency system's simulator, in its database file, run inside the adapter.
    Simulator(PathBuf),
    /// The agency system over the network (SIAK's web service, SIPANSE's API).
    Remote(Remote),
    Eabsen(EabsenSide),
    /// The portal application's intake address.
    Portal(SocketAddr),
    /// HR keeps what it receives in its state directory: no other side.
    None,
}

/// An agency system's address and the agency's account there.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    pub account: Account,
    /// SIAK only: the address on Dukcapil's allow-list (`IP_USER`).
    pub ip_user: String,
}

#[derive(Debug, Clone)]
pub struct EabsenSide {
    pub listen: SocketAddr,
    pub offset: UtcOffset,
    /// Serial number → unit.
    pub devices: Vec<(String, String)>,
    /// PIN → NIP and unit.
    pub pegawai: Vec<(String, String, String)>,
}

impl Config {
    /// Reads and checks `path`: `Err` names every problem.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |errors| ConfigError {
            path: path.to_owned(),
            errors,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(vec![e.to_string()]))?;
        let raw: Raw = toml::from_str(&text).map_err(|e| fail(vec![e.to_string()]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        check(raw, base).map_err(fail)
    }
}

fn check(raw: Raw, base: &Path) -> Result<Config, Vec<String>> {
    let mut errors = Vec::new();
    let at = |p: &Path| base.join(p);
    let bus = match raw.bus {
        OneOrMany::One(b) => vec![b],
        OneOrMany::Many(b) => b,
    };
    if bus.is_empty() {
        errors.push("bus: name at least one address".into());
    }
    for (i, b) in bus.iter().enumerate() {
        let host = b.strip_prefix("https://").unwrap_or_default();
        if host.is_empty() || host.starts_with('/') {
            errors.push(format!("bus[{i}]: {b:?} is not an https:// address"));
        }
    }
    let health = loopback("health", &raw.health, &mut errors);
    let (cert, key, ca) = (at(&raw.certs.cert), at(&raw.certs.key), at(&raw.certs.ca));
    for (name, p) in [
        ("certs.cert", &cert),
        ("certs.key", &key),
        ("certs.ca", &ca),
    ] {
        match std::fs::read_to_string(p) {
            Ok(pem) if pem.contains("-----BEGIN ") => {}
            Ok(_) => errors.push(format!("{name}: {} is not PEM", p.display())),
            Err(e) => errors.push(format!("{name}: {}: {e}", p.display())),
        }
    }
    // Created at start if missing; a file in its place is an error now, not then.
    let state_dir = at(&raw.state_dir);
    if state_dir.exists() && !state_dir.is_dir() {
        errors.push(format!(
            "state_dir: {} is not a directory",
            state_dir.display()
        ));
    }
    let name = |k: AgencyKind| format!("{k:?}").to_lowercase();
    let present = [
        (AgencyKind::Siak, raw.siak.is_some()),
        (AgencyKind::Sipanse, raw.sipanse.is_some()),
        (AgencyKind::Eabsen, raw.eabsen.is_some()),
        (AgencyKind::Portal, raw.portal.is_some()),
    ];
    for (k, there) in present {
        if there && k != raw.agency {
            let (k, agency) = (name(k), name(raw.agency));
            errors.push(format!("[{k}]: this configuration is for {agency}"));
        }
    }
    let needs_section = raw.agency != AgencyKind::Hr;
    if needs_section && !present.iter().any(|(k, there)| *there && *k == raw.agency) {
        let agency = name(raw.agency);
        errors.push(format!("[{agency}]: missing: the agency system's side"));
    }
    let native = match raw.agency {
        AgencyKind::Siak => raw.siak.and_then(|n| native("siak", n, base, &mut errors)),
        AgencyKind::Sipanse => raw
            .sipanse
            .and_then(|n| native("sipanse", n, base, &mut errors)),
        AgencyKind::Eabsen => raw
            .eabsen
            .and_then(|e| eabsen(e, &mut errors).map(Native::Eabsen)),
        AgencyKind::Portal => raw
            .portal
            .and_then(|p| loopback("portal.listen", &p.listen, &mut errors).map(Native::Portal)),
        AgencyKind::Hr => Some(Native::None),
    };
    match (errors.is_empty(), health, native) {
        (true, Some(health), Some(native)) => Ok(Config {
            agency: raw.agency,
            bus,
            state_dir,
            health,
            cert,
            key,
            ca,
            native,
        }),
        _ => Err(errors),
    }
}

/// The `[siak]` or `[sipanse]` section: a simulator, or an address with an account.
fn native(key: &str, raw: RawNative, base: &Path, errors: &mut Vec<String>) -> Option<Native> {
    let before = errors.len();
    if key != "siak" && raw.ip_user.is_some() {
        errors.push(format!(
            "{key}.ip_user: only SIAK's web service asks for it"
        ));
    }
    match (raw.simulator, raw.url) {
        (Some(db), None) => {
            if raw.user_id.is_some() || raw.password.is_some() || raw.password_file.is_some() {
                errors.push(format!(
                    "{key}: user_id and password go with url, not with simulator"
                ));
            }
            (errors.len() == before).then(|| Native::Simulator(base.join(db)))
        }
        (None, Some(url)) => {
            let host = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .unwrap_or_default();
            if host.is_empty() || host.starts_with('/') {
                errors.push(format!("{key}.url: {url:?} is not an http(s):// address"));
            }
            let password = match (raw.password, raw.password_file) {
                (Some(_), Some(_)) => {
                    errors.push(format!(
                        "{key}: name either password or password_file, not both"
                    ));
                    None
                }
                (None, Some(file)) => match std::fs::read_to_string(base.join(&file)) {
                    Ok(text) => Some(text.trim_end_matches(['\r', '\n']).to_owned()),
                    Err(e) => {
                        errors.push(format!("{key}.password_file: {}: {e}", file.display()));
                        None
                    }
                },
                (p, None) => p,
            };
            let mut needed = |field: &str, v: Option<String>| {
                let v = v.filter(|v| !v.is_empty());
                if v.is_none() {
                    errors.push(format!(
                        "{key}.{field}: missing: the agency's account at {url}"
                    ));
                }
                v.unwrap_or_default()
            };
            let user_id = needed("user_id", raw.user_id);
            let password = needed("password", password);
            let ip_user = raw.ip_user.unwrap_or_else(|| "127.0.0.1".into());
            (errors.len() == before).then_some(Native::Remote(Remote {
                url,
                account: Account { user_id, password },
                ip_user,
            }))
        }
        (Some(_), Some(_)) => {
            errors.push(format!("{key}: name either url or simulator, not both"));
            None
        }
        (None, None) => {
            errors.push(format!(
                "{key}: name the system's url (with user_id and password), or a simulator"
            ));
            None
        }
    }
}

fn eabsen(raw: RawEabsen, errors: &mut Vec<String>) -> Option<EabsenSide> {
    let before = errors.len();
    let listen = raw
        .listen
        .parse::<SocketAddr>()
        .map_err(|e| errors.push(format!("eabsen.listen: {:?}: {e}", raw.listen)))
        .ok();
    let zone = raw.timezone.as_deref().unwrap_or("+07:00");
    let format = time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]");
    let offset = UtcOffset::parse(zone, &format)
        .map_err(|_| errors.push(format!("eabsen.timezone: {zone:?} is not like +07:00")))
        .ok();
    if raw.devices.is_empty() {
        errors
            .push("eabsen.device: admit at least one terminal ([[eabsen.device]] sn, unit)".into());
    }
    let mut serials = HashSet::new();
    for (i, d) in raw.devices.iter().enumerate() {
        if d.sn.trim().is_empty() || !d.sn.chars().all(|c| c.is_ascii_alphanumeric()) {
            errors.push(format!(
                "eabsen.device[{i}].sn: {:?} is not a serial number",
                d.sn
            ));
        } else if !serials.insert(d.sn.as_str()) {
            errors.push(format!("eabsen.device[{i}].sn: {} is admitted twice", d.sn));
        }
        if d.unit.trim().is_empty() {
            errors.push(format!("eabsen.device[{i}].unit: empty"));
        }
    }
    let mut pins = HashSet::new();
    for (i, p) in raw.pegawai.iter().enumerate() {
        match crate::eabsen::attlog::normalize_pin(&p.pin) {
            Some(pin) if !pins.insert(pin.clone()) => {
                errors.push(format!("eabsen.pegawai[{i}].pin: {pin} is mapped twice"))
            }
            Some(_) => {}
            None => errors.push(format!("eabsen.pegawai[{i}].pin: {:?} is not a PIN", p.pin)),
        }
        if let Err(why) = bus::formats::Format::Nip.check(&p.nip) {
            let why = bus::formats::mask_digit_runs(&why.join(", "));
            errors.push(format!("eabsen.pegawai[{i}].nip: not a valid NIP ({why})"));
        }
        if p.unit.trim().is_empty() {
            errors.push(format!("eabsen.pegawai[{i}].unit: empty"));
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(EabsenSide {
        listen: listen?,
        offset: offset?,
        devices: raw.devices.into_iter().map(|d| (d.sn, d.unit)).collect(),
        pegawai: raw
            .pegawai
            .into_iter()
            .map(|p| (p.pin, p.nip, p.unit))
            .collect(),
    })
}

/// A loopback address (an endpoint for this host only), or the error naming `key`.
fn loopback(key: &str, value: &str, errors: &mut Vec<String>) -> Option<SocketAddr> {
    match value.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_loopback() => Some(a),
        Ok(a) => {
            errors.push(format!(
                "{key}: {a} is not a loopback address (for this host only)"
            ));
            None
        }
        Err(e) => {
            errors.push(format!("{key}: {value:?}: {e}"));
            None
        }
    }
}
