//! Agency adapters: one module per agency system, each next to a simulator of that system.
//!
//! Every adapter has the same shape, so a fourth agency is a copy of the pattern:
//!
//! | part | where (SIAK as the example) |
//! |---|---|
//! | configuration | `siak::SiakConfig` |
//! | a native client: a trait the real system (or its simulator) implements | `siak::SiakSystem` |
//! | mapping in (native → canonical) and out (canonical → native) | `siak::mapping` |
//! | the types it produces and consumes, checked against the registry by a test | `impl Agency for SiakAdapter` |
//! | the link to the bus: mTLS client, durable outbox, trace | [`link::Link`] |
//!
//! The simulators (`siak::simulator`, `sipanse::simulator`, `eabsen::simulator`) stand in for
//! agency systems we cannot reach. They are kept apart from the adapters: an adapter only sees
//! the native-client trait, never the simulator's database.

pub mod agency;
pub mod demo;
pub mod eabsen;
pub mod hr;
pub mod idkey;
pub mod link;
pub mod normal;
pub mod outbox;
pub mod portal;
pub mod siak;
pub mod sipanse;
pub mod trace;

pub use agency::{AdapterError, Agency, MappingError};
pub use idkey::IdKey;
