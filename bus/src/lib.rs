//! simpul's bus: the envelope, registry, schemas, identity and TLS, routing, the store, the
//! HTTP API and a client for members. The `simpul` binary is a thin CLI over this crate.

pub mod api;
pub mod audit;
pub mod check;
pub mod client;
pub mod core;
pub mod envelope;
pub mod error;
pub mod formats;
pub mod identity;
pub mod pki;
pub mod problem;
pub mod registry;
pub mod schema;
pub mod server;
pub mod store;
pub mod subjects;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod trust;
