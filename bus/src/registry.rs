//! The registry: simpul's equivalent of X-Road's global configuration.
//!
//! It names the instance, the members and the message types with who may produce, consume and
//! see what. Following ripgrep's habit, the whole file is validated as pure data before anything
//! is built, and every error is reported at once so an operator fixes them in one pass.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::identity::MemberId;
use crate::schema::{Schema, Schemas};

#[derive(Debug, thiserror::Error)]
#[error("registry {path} has {} error(s):\n  - {}", errors.len(), errors.join("\n  - "))]
pub struct RegistryError {
    pub path: PathBuf,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Fanned out to subscribers and kept in a replayable feed.
    Event,
    /// Addressed to one member (`to`, or the type's provider).
    Message,
    /// Synchronous request/response through the provider.
    Query,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    instance: String,
    #[serde(default = "default_schemas_dir")]
    schemas_dir: PathBuf,
    #[serde(default)]
    trust: Trust,
    #[serde(default, rename = "member")]
    members: Vec<RawMember>,
    #[serde(default, rename = "type")]
    types: Vec<RawType>,
    /// Defaults for every member that sets none of its own.
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    rate: Option<String>,
    burst: Option<u32>,
}

fn default_schemas_dir() -> PathBuf {
    PathBuf::from("schemas")
}

/// The trust anchors of the instance. Empty means the development PKI in `simpul serve
/// --certs` (its `ca.pem` and `crl.pem`); in production, name the agency CA(s) here.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// PEM files of the CAs that issue member certificates, relative to the registry file.
    #[serde(default)]
    pub ca: Vec<PathBuf>,
    /// PEM CRL files, one per issuing CA (a single file may be given as a string), relative
    /// to the registry file; re-read when they change.
    #[serde(default, deserialize_with = "one_or_many")]
    pub crl: Vec<PathBuf>,
    /// OCSP for member certificates: `"require"`, `"prefer"` (the default) or `"off"`.
    #[serde(default)]
    pub ocsp: crate::tls::ocsp::OcspPolicy,
    /// The responder to ask (`http://…`), instead of the one in each certificate's AIA.
    #[serde(default)]
    pub ocsp_responder: Option<String>,
    /// Seconds between asks about the same certificate (default 300).
    #[serde(default)]
    pub ocsp_refresh: Option<u64>,
}

/// A list that may also be written as its one element.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    id: String,
    name: String,
    /// Requests per period, e.g. `"200/s"` or `"6000/min"`.
    rate: Option<String>,
    /// Requests allowed at once above the rate (the bucket's size); defaults to one second's
    /// worth of the rate.
    burst: Option<u32>,
    #[serde(default)]
    delivery: Delivery,
    /// May read the citizen's data-access report (`GET /v1/audit/subjects/{nik}`).
    #[serde(default)]
    subject_report: bool,
    /// Runs the bus: may read `/metrics` (and, later, the console and admin endpoints).
    #[serde(default)]
    operator: bool,
}

/// How a member receives what is addressed to it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// It pulls its inbox over HTTPS (lease, ack, nack).
    #[default]
    Https,
    /// RabbitMQ pushes to its own quorum queue (`simpul serve --amqp`); it consumes natively.
    Amqp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawType {
    name: String,
    kind: Kind,
    schema: String,
    response_schema: Option<String>,
    /// Other versions of the type's schema, accepted when an event names one in `dataschema`.
    #[serde(default)]
    other_schemas: Vec<String>,
    #[serde(default)]
    producers: Vec<String>,
    #[serde(default)]
    consumers: Vec<String>,
    provider: Option<String>,
    /// Events only: `false` when consumers read the feed by cursor and want no inbox copies.
    #[serde(default = "yes")]
    inbox: bool,
    #[serde(default)]
    grants: HashMap<String, Vec<String>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: MemberId,
    pub name: String,
    /// The member's own rate limit, or the registry's default; `None` is unlimited.
    pub rate: Option<RateLimit>,
    pub delivery: Delivery,
    pub subject_report: bool,
    pub operator: bool,
}

/// A token bucket's settings: `per_second` tokens added each second, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    /// Parses `rate` (`N/s`, `N/min`, `N/h`) and `burst` as written in the registry.
    fn parse(rate: Option<&str>, burst: Option<u32>) -> Result<Option<RateLimit>, String> {
        let Some(rate) = rate else {
            return match burst {
                Some(_) => Err("burst is set without a rate".into()),
                None => Ok(None),
            };
        };
        let bad = || format!("rate {rate:?}: write N/s, N/min or N/h with N at least 1");
        let (n, per) = rate.split_once('/').ok_or_else(bad)?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        let secs = match per.trim() {
            "s" => 1.0,
            "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        if n == 0 {
            return Err(bad());
        }
        let per_second = f64::from(n) / secs;
        let burst = match burst {
            Some(0) => return Err("burst must be at least 1".into()),
            Some(b) => b,
            None => (per_second.ceil() as u32).max(1),
        };
        Ok(Some(RateLimit { per_second, burst }))
    }
}

/// Who an ACL admits: named members, or a whole class such as `COM/*` (every business).
#[derive(Debug, Default)]
pub struct Acl {
    members: HashSet<MemberId>,
    classes: Vec<String>,
}

impl Acl {
    pub fn allows(&self, m: &MemberId) -> bool {
        self.members.contains(m) || self.classes.iter().any(|c| c == m.class())
    }

    /// The registry's members the ACL admits, sorted, given each class's members. Its own
    /// members are registered ones (the registry refuses others).
    fn admitted(&self, by_class: &HashMap<&str, Vec<&MemberId>>) -> Vec<MemberId> {
        let mut out: Vec<MemberId> = self.members.iter().cloned().collect();
        for class in &self.classes {
            let ids = by_class.get(class.as_str()).into_iter().flatten();
            out.extend(ids.map(|&id| id.clone()));
        }
        out.sort();
        out.dedup();
        out
    }

    /// What the ACL admits as the registry writes it: classes as `CLASS/*`, then members,
    /// each sorted.
    pub fn entries(&self) -> Vec<String> {
        let mut classes: Vec<String> = self.classes.iter().map(|c| format!("{c}/*")).collect();
        let mut members: Vec<String> = self.members.iter().map(|m| m.to_string()).collect();
        classes.sort();
        members.sort();
        classes.extend(members);
        classes
    }
}

#[derive(Debug)]
pub struct TypeDef {
    pub name: String,
    pub kind: Kind,
    pub schema: Arc<Schema>,
    pub response_schema: Option<Arc<Schema>>,
    /// Other versions of the schema (a v2 served alongside v1): an event chooses one by
    /// naming it in `dataschema`; one that names none is checked against `schema`.
    pub other_schemas: Vec<Arc<Schema>>,
    pub producers: Acl,
    pub consumers: Acl,
    /// Consumers expanded to concrete members, in registry order: an event's inbox fan-out
    /// (empty for feed-only events).
    pub subscribers: Vec<MemberId>,
    pub provider: Option<MemberId>,
    /// Top-level response fields each requester may see (queries only).
    pub grants: HashMap<MemberId, HashSet<String>>,
}

impl TypeDef {
    /// The schema an event is checked against: the one its `dataschema` names (by id or by
    /// `$id`), or the type's own when it names none. `None`: it names one the type does not
    /// accept.
    pub fn schema_for(&self, dataschema: Option<&str>) -> Option<&Arc<Schema>> {
        let Some(ds) = dataschema else {
            return Some(&self.schema);
        };
        self.schemas()
            .find(|s| s.id == ds || s.uri.as_deref() == Some(ds))
    }

    /// Every version of the type's schema, its own first.
    pub fn schemas(&self) -> impl Iterator<Item = &Arc<Schema>> {
        std::iter::once(&self.schema).chain(&self.other_schemas)
    }
}

#[derive(Debug)]
pub struct Registry {
    pub instance: String,
    pub trust: Trust,
    pub schemas: Schemas,
    members: HashMap<MemberId, Member>,
    types: HashMap<String, Arc<TypeDef>>,
}

impl Registry {
    pub fn load(path: &Path) -> Result<Registry, RegistryError> {
        let fail = |errors| RegistryError {
            path: path.to_owned(),
            errors,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(vec![match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "{} does not exist: run from a simpul checkout (it has registry.toml), or \
                     name the registry with --registry FILE or SIMPUL_REGISTRY",
                    path.display()
                ),
                _ => format!("{}: {e}", path.display()),
            }])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Registry::parse(&text, base).map_err(fail)
    }

    /// Parses and validates a registry from its TOML text, as [`Registry::load`] does with a
    /// file's contents: relative paths in it (`schemas_dir`, `[trust]`) are resolved against
    /// `base`. Every error at once.
    pub fn parse(text: &str, base: &Path) -> Result<Registry, Vec<String>> {
        let raw: RawRegistry = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        Registry::build(raw, base)
    }

    fn build(raw: RawRegistry, base: &Path) -> Result<Registry, Vec<String>> {
        let mut errors = Vec::new();
        if raw.instance.is_empty()
            || !raw
                .instance
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        {
            errors.push(format!(
                "instance {:?} must be a non-empty DNS-style name (letters, digits, '.', '-')",
                raw.instance
            ));
        }
        let trust = Trust {
            ca: raw.trust.ca.iter().map(|p| base.join(p)).collect(),
            crl: raw.trust.crl.iter().map(|p| base.join(p)).collect(),
            ..raw.trust.clone()
        };
        if let Some(url) = &trust.ocsp_responder
            && reqwest::Url::parse(url).map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
        {
            errors.push(format!(
                "trust: ocsp_responder {url:?} is not an http:// or https:// URL"
            ));
        }
        if trust.ocsp_refresh == Some(0) {
            errors.push("trust: ocsp_refresh must be at least 1 second".into());
        }
        for file in trust.ca.iter().chain(&trust.crl) {
            if !file.is_file() {
                errors.push(format!("trust: {} does not exist", file.display()));
            }
        }
        let schemas = match Schemas::load_dir(&base.join(&raw.schemas_dir)) {
            Ok(s) => s,
            Err(e) => {
                errors.extend(e);
                Schemas::default()
            }
        };

        let default_rate = RateLimit::parse(raw.limits.rate.as_deref(), raw.limits.burst)
            .unwrap_or_else(|e| {
                errors.push(format!("limits: {e}"));
                None
            });
        let mut members = HashMap::new();
        for m in raw.members {
            let rate = match RateLimit::parse(m.rate.as_deref(), m.burst) {
                Ok(own) => own.or(default_rate),
                Err(e) => {
                    errors.push(format!("member {}: {e}", m.id));
                    None
                }
            };
            match MemberId::parse(&m.id) {
                Ok(id) => {
                    if members
                        .insert(
                            id.clone(),
                            Member {
                                id,
                                name: m.name,
                                rate,
                                delivery: m.delivery,
                                subject_report: m.subject_report,
                                operator: m.operator,
                            },
                        )
                        .is_some()
                    {
                        errors.push(format!("member {} is listed twice", m.id));
                    }
                }
                Err(e) => errors.push(format!("member {:?}: {e}", m.id)),
            }
        }

        // Each class's members: a type's subscribers are found from its consumers'
        // classes and names, not by asking every member for every type (with 10,000 of each,
        // that took a third of the bus's start-up).
        let mut by_class: HashMap<&str, Vec<&MemberId>> = HashMap::new();
        for id in members.keys() {
            by_class.entry(id.class()).or_default().push(id);
        }
        let mut types = HashMap::new();
        let mut seen = HashSet::new();
        for t in raw.types {
            let ctx = format!("type {}", t.name);
            if !seen.insert(t.name.clone()) {
                errors.push(format!("type {} is defined twice", t.name));
            }
            let mut acl = |list: &[String], what: &str| -> Acl {
                let mut acl = Acl::default();
                for entry in list {
                    if let Some(class) = entry.strip_suffix("/*") {
                        if matches!(class, "GOV" | "COM" | "ORG") {
                            acl.classes.push(class.to_owned());
                        } else {
                            errors.push(format!("{ctx}: {what} {entry:?}: unknown class"));
                        }
                        continue;
                    }
                    match MemberId::parse(entry) {
                        Ok(id) if members.contains_key(&id) => {
                            acl.members.insert(id);
                        }
                        Ok(_) => errors.push(format!("{ctx}: {what} {entry} is not a member")),
                        Err(e) => errors.push(format!("{ctx}: {what} {entry:?}: {e}")),
                    }
                }
                acl
            };
            let producers = acl(&t.producers, "producer");
            let consumers = acl(&t.consumers, "consumer");
            let provider = t
                .provider
                .as_deref()
                .and_then(|p| match MemberId::parse(p) {
                    Ok(id) if members.get(&id).is_some_and(|m| m.delivery == Delivery::Amqp) => {
                        // A query's requester waits on the reply, which comes over HTTPS.
                        errors.push(format!(
                            "{ctx}: provider {p} has delivery = \"amqp\"; queries are answered over HTTPS"
                        ));
                        None
                    }
                    Ok(id) if members.contains_key(&id) => Some(id),
                    _ => {
                        errors.push(format!("{ctx}: provider {p} is not a member"));
                        None
                    }
                });
            let mut schema_of = |id: &str| match schemas.get(id) {
                Some(s) => Some(s.clone()),
                None => {
                    errors.push(format!("{ctx}: schema {id} not found in the schemas dir"));
                    None
                }
            };
            let schema = schema_of(&t.schema);
            let response_schema = t.response_schema.as_deref().and_then(&mut schema_of);
            let other_schemas: Vec<Arc<Schema>> = t
                .other_schemas
                .iter()
                .filter_map(|id| schema_of(id))
                .collect();
            match t.kind {
                Kind::Query if t.provider.is_none() || t.response_schema.is_none() => errors.push(
                    format!("{ctx}: a query needs a provider and a response_schema"),
                ),
                Kind::Event | Kind::Message if t.response_schema.is_some() => {
                    errors.push(format!("{ctx}: only queries have a response_schema"))
                }
                Kind::Event if t.provider.is_some() => {
                    errors.push(format!("{ctx}: an event has subscribers, not a provider"))
                }
                _ => {}
            }
            if t.kind != Kind::Event && !t.inbox {
                errors.push(format!("{ctx}: only events can go without inbox copies"));
            }
            if t.kind != Kind::Query && !t.grants.is_empty() {
                errors.push(format!("{ctx}: field grants apply to query responses only"));
            }
            let mut grants = HashMap::new();
            for (who, fields) in &t.grants {
                match MemberId::parse(who) {
                    Ok(id) if producers.allows(&id) => {
                        grants.insert(id, fields.iter().cloned().collect());
                    }
                    _ => errors.push(format!(
                        "{ctx}: grant for {who}, who may not send this query"
                    )),
                }
            }
            let subscribers = match t.inbox {
                true => consumers.admitted(&by_class),
                false => Vec::new(),
            };
            let (Some(schema), true) = (schema, errors.is_empty()) else {
                continue;
            };
            let def = TypeDef {
                name: t.name.clone(),
                kind: t.kind,
                schema,
                response_schema,
                other_schemas,
                producers,
                consumers,
                subscribers,
                provider,
                grants,
            };
            types.insert(t.name, Arc::new(def));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Registry {
            instance: raw.instance,
            trust,
            schemas,
            members,
            types,
        })
    }

    pub fn member(&self, id: &MemberId) -> Option<&Member> {
        self.members.get(id)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn type_def(&self, name: &str) -> Option<&Arc<TypeDef>> {
        self.types.get(name)
    }

    pub fn types(&self) -> impl Iterator<Item = &Arc<TypeDef>> {
        self.types.values()
    }
}
