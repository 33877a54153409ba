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
//! | what it does with a message from its inbox (reply, ack, nack) | `impl runner::InboxHandler for SiakAdapter` |
//! | how an entry of its system's change log maps, if it keeps one | `impl runner::ChangeLog for SiakAdapter` |
//! | the link to the bus: mTLS client, durable outbox, trace | [`link::Link`] |
//! | a line in [`AGENCIES`] | |
//!
//! The loops around them (poll, handle, publish, flush, back off, stop) are [`runner`]'s.
//!
//! The simulators (`siak::simulator`, `sipanse::simulator`, `eabsen::simulator`) stand in for
//! agency systems we cannot reach. They are kept apart from the adapters: an adapter only sees
//! the native-client trait, never the simulator's database.

pub mod agency;
pub mod demo;
pub mod deploy;
pub mod eabsen;
pub mod hr;
pub mod idkey;
pub mod link;
pub mod normal;
pub mod outbox;
pub mod portal;
pub mod runner;
pub mod siak;
pub mod sipanse;
pub mod trace;

pub use agency::{AdapterError, Agency, Declared, MappingError};
pub use idkey::IdKey;

/// Every agency the adapters speak for: the registry check, the demo's health output and the
/// mapping tests iterate this one list.
pub const AGENCIES: [Declared; 5] = [
    Declared::of::<siak::SiakAdapter>(),
    Declared::of::<sipanse::SipanseAdapter>(),
    Declared::of::<eabsen::EabsenAdapter>(),
    Declared::of::<portal::Portal>(),
    Declared::of::<hr::HrReader>(),
];
