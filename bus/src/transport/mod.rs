//! Transports that carry accepted messages beyond the HTTPS inboxes. PostgreSQL stays the
//! store of record: a transport only ever reads the outbox the accept wrote.

pub mod amqp;
