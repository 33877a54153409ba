//! PostgreSQL as the store of record for several nodes (`simpul serve --store postgres://…`).
//!
//! Every node talks to the same tables; PostgreSQL's row locks, not any node's memory, decide
//! who holds what:
//! - a lease is one statement, `SELECT … FOR UPDATE SKIP LOCKED` then `UPDATE … RETURNING`,
//!   that also dead-letters what ran out of attempts; an expired lease needs no reaper, its row
//!   is simply visible again. Only the database's clock is used;
//! - feed cursors never skip: a transaction takes its feed type's advisory lock before it
//!   numbers its feed rows and holds it to its commit, so within a type numbers are given in
//!   commit order and a reader can never see a number whose predecessor is still to commit;
//! - nodes wake each other with `LISTEN/NOTIFY` ([`notify`]); a lost notification only delays
//!   a waiter, which also looks at the store on a short period.
//!
//! tokio-postgres (with deadpool for the pool) rather than sqlx: statements are plain SQL
//! checked by the conformance suite, not by a compile-time database; it pipelines on one
//! connection, and its `Connection` hands `LISTEN` notifications over as a stream.

mod admin;
mod audit;
mod log;
mod notify;
mod outbox;
mod queue;
mod schema;

use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::NoTls;

use serde_json::value::RawValue;

use super::{DeadLetter, Leadership, Notifier, Signal, Store, StoreError};
use crate::identity::MemberId;

/// How a node reaches its PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://USER@HOST:PORT/DB` (any libpq-style URL tokio-postgres reads).
    pub url: String,
    /// Connections this node keeps open.
    pub pool: usize,
    /// How long a request waits for a connection, or a connection to open, before the store
    /// reports itself unavailable (503 with Retry-After) instead of stalling.
    pub timeout: Duration,
    /// Settled messages are purged this long after they were accepted.
    pub retention: Duration,
    /// How often this node looks for messages past retention.
    pub purge_every: Duration,
    /// Members a transport serves (`delivery = "amqp"` with `--amqp`): their deliveries start
    /// in the outbox instead of an inbox to lease from.
    pub relayed: Vec<MemberId>,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            pool: 16,
            timeout: Duration::from_secs(2),
            retention: Duration::from_secs(30 * 24 * 3600),
            purge_every: Duration::from_secs(60),
            relayed: Vec::new(),
        }
    }
}

pub struct PgStore {
    pool: Pool,
    config: tokio_postgres::Config,
    relayed: Vec<String>,
    timeout: Duration,
    outgoing: mpsc::Sender<Signal>,
    incoming: Mutex<Option<mpsc::Receiver<Signal>>>,
}

/// The text of a PostgreSQL error worth showing an operator: the server's own message when
/// there is one (tokio-postgres's `Display` says only "db error").
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

// Rows as the store's types: states and dead-letter reasons are words in SQL, so an operator
// reading the tables needs no key.

fn dead_word(d: DeadLetter) -> &'static str {
    match d {
        DeadLetter::Nacked => "nacked",
        DeadLetter::OutOfAttempts => "out_of_attempts",
        DeadLetter::Withdrawn => "withdrawn",
    }
}

fn dead_from(word: Option<&str>) -> Option<DeadLetter> {
    match word? {
        "nacked" => Some(DeadLetter::Nacked),
        "withdrawn" => Some(DeadLetter::Withdrawn),
        _ => Some(DeadLetter::OutOfAttempts),
    }
}

fn member(s: &str) -> Result<MemberId, StoreError> {
    MemberId::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn raw(s: String) -> Result<Box<RawValue>, StoreError> {
    RawValue::from_string(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: {e}"))
}

fn pg_error(e: tokio_postgres::Error) -> StoreError {
    unavailable(describe(&e))
}

impl PgStore {
    /// Connects, migrates the schema, and starts this node's signal listener and purger.
    pub async fn connect(opts: PgOptions) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config = opts
            .url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("--store {}: {e}", redact(&opts.url))))?;
        config.connect_timeout(opts.timeout);
        if config.get_application_name().is_none() {
            config.application_name("simpul");
        }
        let (mut client, connection) = config.connect(NoTls).await.map_err(pg_error)?;
        let driver = tokio::spawn(connection);
        schema::prepare(&mut client).await?;
        let channel: String = client
            .query_one("SELECT 'simpul:' || current_schema()", &[])
            .await
            .map_err(pg_error)?
            .get(0);
        drop(client);
        let _ = driver.await;

        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(opts.pool)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(opts.timeout))
            .create_timeout(Some(opts.timeout))
            .recycle_timeout(Some(opts.timeout))
            .build()
            .map_err(unavailable)?;
        let (outgoing, incoming) = notify::start(config.clone(), pool.clone(), channel);
        tokio::spawn(queue::purge(pool.clone(), opts.retention, opts.purge_every));
        Ok(PgStore {
            relayed: opts.relayed.iter().map(|m| m.to_string()).collect(),
            config: config.clone(),
            pool,
            timeout: opts.timeout,
            outgoing,
            incoming: Mutex::new(Some(incoming)),
        })
    }

    /// Waits until this node holds the session advisory lock `key` on a connection of its own:
    /// the lock lives as long as that session, and a node that dies (or loses its database)
    /// loses it with the session. `whose` names the holder in errors.
    async fn lead_with(&self, key: i64, whose: &str) -> Result<Leadership, StoreError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(pg_error)?;
        let mut driver = tokio::spawn(connection);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut driver => return Err(unavailable(format!("{whose} session ended"))),
            }
            // Advisory locks belong to the database, not the schema: keyed by the schema too,
            // so buses in other schemas of the same database never hold each other's lock.
            let held: bool = client
                .query_one(
                    "SELECT pg_try_advisory_lock(
                       ('x' || substr(md5(current_schema() || ':' || $1::bigint::text), 1, 16))
                         ::bit(64)::bigint)",
                    &[&key],
                )
                .await
                .map_err(pg_error)?
                .get(0);
            if held {
                break;
            }
        }
        Ok(Leadership {
            lost: Box::pin(async move {
                let _client = client; // the session, and with it the lock
                let _ = driver.await;
            }),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg_error(e),
            deadpool_postgres::PoolError::Closed => unavailable("the store is closed"),
            other => unavailable(other),
        })
    }
}

/// A store URL with its password hidden, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Notifier for PgStore {
    fn publish(&self, signal: Signal) {
        // Full means the database is slow or gone: dropping a wake-up only delays a waiter.
        let _ = self.outgoing.try_send(signal);
    }

    fn subscribe(&self) -> Option<mpsc::Receiver<Signal>> {
        self.incoming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn health(&self) -> Result<(), String> {
        let check = async {
            let c = self.client().await?;
            c.simple_query("SELECT 1").await.map_err(pg_error)?;
            Ok::<_, StoreError>(())
        };
        match tokio::time::timeout(self.timeout, check).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "PostgreSQL did not answer within {:?}",
                self.timeout
            )),
        }
    }

    async fn close(&self) {
        // Later calls get `PoolError::Closed`: "the store is closed".
        self.pool.close();
    }
}
