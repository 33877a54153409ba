//! RabbitMQ as the transport (`simpul serve --amqp amqps://HOST:PORT/VHOST`), through lapin.
//!
//! PostgreSQL stays the store of record: an accept writes the deliveries for members with
//! `delivery = "amqp"` to the outbox in its own commit, and [`relay`] publishes them with
//! confirms. The broker is made to match the registry ([`sync`]): a quorum queue per such
//! member, and a user per member named by its certificate, allowed to read only its own
//! queues. [`dead`] records what the queues dead-letter. Correctness never rests on lapin's
//! auto-recovery: each part reopens its own connection, and the relay publishes again
//! whatever was not confirmed.

pub mod cloudevents;
pub mod connect;
pub mod dead;
pub mod management;
pub mod relay;
pub mod sync;
pub mod topology;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::identity::MemberId;
use crate::store::{Outbox, StoreError};
use management::Management;

#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("{0}")]
    Config(String),
    #[error("TLS for the broker: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("RabbitMQ: {0}")]
    Broker(String),
    #[error("RabbitMQ: {0}")]
    Lapin(#[from] lapin::Error),
    #[error("RabbitMQ management API: {0}")]
    Management(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Corrupt(String),
}

/// How the bus reaches its broker.
#[derive(Debug, Clone)]
pub struct AmqpOptions {
    /// `amqps://HOST:PORT/VHOST`.
    pub url: String,
    /// The management API, `http://ADMIN:PASSWORD@HOST:PORT`.
    pub management: String,
    /// The CA that signed the broker's certificate.
    pub ca: PathBuf,
    /// The bus's own certificate and key: its identity towards the broker (EXTERNAL).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Where the broker reads the CRL it checks member certificates against; the bus writes
    /// its current CRL there whenever it reloads one.
    pub crl_copy: Option<PathBuf>,
}

/// Whether the transport works, for `/readyz` (which stays ready, naming the degradation:
/// accepts go on into the outbox while the broker is away).
#[derive(Default)]
pub struct Health(Mutex<Option<(String, Instant)>>);

impl Health {
    fn up(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn down(&self, why: &AmqpError) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let since = state.as_ref().map_or_else(Instant::now, |(_, t)| *t);
        *state = Some((why.to_string(), since));
    }

    /// `Err` names what is wrong and for how long.
    pub fn check(&self) -> Result<(), String> {
        match &*self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some((why, since)) => Err(format!(
                "AMQP transport degraded for {} s ({why}); accepted messages wait in the outbox",
                since.elapsed().as_secs()
            )),
        }
    }
}

/// The transport as one node runs it.
pub struct Transport {
    pub opts: AmqpOptions,
    pub instance: String,
    /// Members with `delivery = "amqp"`.
    pub members: Vec<MemberId>,
    pub max_attempts: u32,
}

impl Transport {
    /// Makes the broker match the registry: users and permissions, then queues. Returns one
    /// line per change (`simpul amqp sync` prints them).
    pub async fn sync(&self) -> Result<Vec<String>, AmqpError> {
        let uri = connect::parse_url(&self.opts.url)?;
        let tls = connect::tls(&self.opts)?;
        let api = Management::new(&self.opts.management)?;
        let want = sync::Desired {
            instance: &self.instance,
            vhost: &uri.vhost,
            members: &self.members,
            max_attempts: self.max_attempts,
        };
        let mut changes = sync::users(&api, &want).await?;
        let conn = connect::open(&uri, &tls, "simpul sync").await?;
        let ch = conn.create_channel().await?;
        changes.extend(sync::topology(&api, &ch, &want).await?);
        let _ = conn.close(200, "synced".into()).await;
        Ok(changes)
    }

    /// Starts this node's part: syncing (retried until the broker answers), then the relay
    /// and the dead-letter consumer, and closing members' connections when the CRL changes.
    /// Configuration errors are reported at once; an absent broker only degrades.
    pub fn start(
        self,
        outbox: Arc<dyn Outbox>,
        wake: Vec<Arc<Notify>>,
        crl: Option<(PathBuf, watch::Receiver<u64>)>,
    ) -> Result<Arc<Health>, AmqpError> {
        let uri = connect::parse_url(&self.opts.url)?;
        let tls = connect::tls(&self.opts)?;
        let api = Management::new(&self.opts.management)?;
        let health = Arc::new(Health::default());
        let h = health.clone();
        let vhost = uri.vhost.clone();
        let members = self.members.clone();
        let instance = self.instance.clone();
        let crl_copy = self.opts.crl_copy.clone();
        let (relay, dead) = (
            relay::Relay {
                outbox: outbox.clone(),
                uri: uri.clone(),
                tls: tls.clone(),
                wake,
                health: health.clone(),
            },
            dead::DeadLetters {
                outbox: outbox.clone(),
                uri,
                tls,
                members: members.clone(),
            },
        );
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(200);
            loop {
                match self.sync().await {
                    Ok(changes) => {
                        for c in changes {
                            tracing::info!("RabbitMQ: {c}");
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot sync RabbitMQ with the registry yet");
                        h.down(&e);
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(10));
                    }
                }
            }
            tokio::spawn(dead.run());
            relay.run().await;
        });
        tokio::spawn(report_backlog(outbox));
        if let Some((file, reloads)) = crl {
            tokio::spawn(on_revocation(
                api, vhost, instance, members, file, crl_copy, reloads,
            ));
        }
        Ok(health)
    }
}

/// The outbox backlog as a gauge every 5 s, and a line every minute while deliveries wait.
async fn report_backlog(outbox: Arc<dyn Outbox>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut said: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        match outbox.backlog().await {
            Ok(b) => {
                let age = b.oldest.and_then(|t| t.elapsed().ok()).unwrap_or_default();
                crate::telemetry::outbox("amqp", b.count, age);
                if b.count == 0 || said.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
                    continue;
                }
                said = Some(tokio::time::Instant::now());
                let age = age.as_secs();
                tracing::warn!(
                    backlog = b.count,
                    oldest_secs = age,
                    "AMQP outbox backlog: {} deliveries, the oldest accepted {age} s ago",
                    b.count
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the AMQP outbox backlog"),
        }
    }
}

/// When the CRL changes: hand it to the broker (which checks new connections against it),
/// and close the AMQP members' open connections, so each reconnects through that check and
/// a revoked certificate's connection is gone within seconds.
async fn on_revocation(
    api: Management,
    vhost: String,
    instance: String,
    members: Vec<MemberId>,
    crl: PathBuf,
    copy: Option<PathBuf>,
    mut reloads: watch::Receiver<u64>,
) {
    reloads.borrow_and_update();
    while reloads.changed().await.is_ok() {
        if let Some(to) = &copy {
            let tmp = to.with_extension("tmp");
            let copied = std::fs::copy(&crl, &tmp).and_then(|_| std::fs::rename(&tmp, to));
            if let Err(e) = copied {
                tracing::error!(error = %e, to = %to.display(), "cannot hand the CRL to RabbitMQ");
            }
        }
        for m in &members {
            match api
                .close_connections(&vhost, &m.to_spiffe_uri(&instance))
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(member = %m, closed = n, "CRL changed: closed AMQP connections")
                }
                Err(e) => {
                    tracing::warn!(member = %m, error = %e, "CRL changed: cannot close AMQP connections")
                }
            }
        }
    }
}
