//! Starting the AMQP transport with a node: which members it serves, its options completed
//! from the bus's own PKI, and its health on `/readyz`.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::{ServeError, ServeOptions};
use crate::api::AppState;
use crate::identity::MemberId;
use crate::registry::{Delivery, Registry};
use crate::store::PgStore;
use crate::transport::amqp::{AmqpError, AmqpOptions, Transport, connect, management};

/// The members the transport serves: those with `delivery = "amqp"`, when it is on. Without
/// it they pull over HTTPS like everyone else, which is said once at start.
pub fn relayed(registry: &Registry, amqp: bool) -> Vec<MemberId> {
    let mut members: Vec<MemberId> = registry
        .members()
        .filter(|m| m.delivery == Delivery::Amqp)
        .map(|m| m.id.clone())
        .collect();
    members.sort();
    if !amqp && !members.is_empty() {
        tracing::warn!(
            count = members.len(),
            "members with delivery = \"amqp\" pull over HTTPS: the bus runs without --amqp"
        );
        members.clear();
    }
    members
}

/// A transport checked and ready to start: its configuration errors surface before serving.
pub struct Prepared {
    transport: Transport,
    outbox: Arc<PgStore>,
}

/// Completes the options from the bus's PKI (its server certificate is its identity towards
/// the broker; its CA, unless told otherwise, signed the broker's) and checks them.
pub fn prepare(
    opts: &ServeOptions,
    amqp: &AmqpOptions,
    registry: &Registry,
    members: Vec<MemberId>,
    outbox: Arc<PgStore>,
) -> Result<Prepared, ServeError> {
    let or = |p: &PathBuf, default: &str| {
        if p.as_os_str().is_empty() {
            opts.certs.join(default)
        } else {
            p.clone()
        }
    };
    let mut amqp = amqp.clone();
    amqp.ca = or(&amqp.ca, crate::pki::CA_CERT);
    amqp.cert = or(&amqp.cert, crate::pki::SERVER_CERT);
    amqp.key = or(&amqp.key, crate::pki::SERVER_KEY);
    connect::parse_url(&amqp.url)?;
    connect::tls(&amqp)?;
    management::Management::new(&amqp.management)?;
    Ok(Prepared {
        transport: Transport {
            opts: amqp,
            instance: registry.instance.clone(),
            members,
            max_attempts: opts.api.max_attempts,
        },
        outbox,
    })
}

impl Prepared {
    /// Starts the relay, the dead-letter consumer and the revocation watch; the transport's
    /// health joins `/readyz` as a degradation, not a failure.
    pub fn start(
        self,
        state: &Arc<AppState>,
        crl: Option<(PathBuf, watch::Receiver<u64>)>,
    ) -> Result<(), AmqpError> {
        let wake = self
            .transport
            .members
            .iter()
            .map(|m| state.node.wakeups.inbox(m))
            .collect();
        let health = self.transport.start(self.outbox, wake, crl)?;
        state.add_degradation(Arc::new(move || health.check()));
        Ok(())
    }
}
