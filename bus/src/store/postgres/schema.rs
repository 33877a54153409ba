//! The PostgreSQL tables, versioned. Migrations run at start, one node at a time (under an
//! advisory lock), each in its own transaction; a node refuses a schema newer than it knows.

use tokio_postgres::Client;

use crate::store::SchemaError;

/// Each entry takes the schema from the version before it to its own number.
const MIGRATIONS: &[&str] = &[
    // 1: messages keyed by (sender, id); a delivery row per recipient; feeds.
    "
CREATE TABLE messages(
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender text NOT NULL,
    id uuid NOT NULL,
    type text NOT NULL,
    hash bytea NOT NULL,
    envelope text NOT NULL,
    warnings text NOT NULL,
    accepted_at timestamptz NOT NULL DEFAULT now(),
    reply text,
    -- Ids belong to their sender: the idempotency key.
    UNIQUE(sender, id)
);
CREATE INDEX messages_by_age ON messages(accepted_at);
-- visible_at: when a pending message may be leased, or when a lease runs out (then it may be
-- leased again). lease_token changes with every lease. The database's clock is the only one.
CREATE TABLE deliveries(
    recipient text NOT NULL,
    msg_seq bigint NOT NULL REFERENCES messages(seq) ON DELETE CASCADE,
    msg_id uuid NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'leased', 'acked', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    visible_at timestamptz NOT NULL DEFAULT now(),
    lease_token uuid,
    reason text,
    dead text CHECK (dead IN ('nacked', 'out_of_attempts', 'withdrawn')),
    -- The recipient's place in the message's recipient list: status lists them in order.
    ord integer NOT NULL,
    -- Status reads a message's deliveries by msg_seq; leases go through inbox_open.
    PRIMARY KEY(msg_seq, recipient)
);
-- Only open deliveries are indexed for leasing: settled rows cost a lease nothing.
CREATE INDEX inbox_open ON deliveries(recipient, msg_seq) WHERE state IN ('pending', 'leased');
CREATE INDEX deliveries_by_id ON deliveries(recipient, msg_id);
CREATE TABLE feed(
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type text NOT NULL,
    msg_seq bigint NOT NULL REFERENCES messages(seq) ON DELETE CASCADE
);
CREATE INDEX feed_by_type ON feed(type, seq);
CREATE INDEX feed_by_message ON feed(msg_seq);
",
    // 2: deliveries to members served by RabbitMQ start in the outbox ('outbox'), and are
    // 'published' once the broker confirms them; the relay reads the outbox in order.
    "
ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_state_check
    CHECK (state IN ('pending', 'leased', 'acked', 'dead', 'outbox', 'published'));
CREATE INDEX outbox_open ON deliveries(msg_seq) WHERE state = 'outbox';
",
    // 3: the audit log and its signed checkpoints.
    super::audit::TABLES,
    // 4: the subject index of the citizen report.
    super::audit::SUBJECTS,
    // 5: an operator lists and redrives one recipient's dead letters, oldest first.
    "CREATE INDEX dead_letters ON deliveries(recipient, msg_seq) WHERE state = 'dead';",
];

/// The schema this binary writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Key of the advisory lock that makes nodes starting together migrate one after another.
const MIGRATION_LOCK: i64 = 0x5349_4d50_554c_0001;

fn pg(e: tokio_postgres::Error) -> SchemaError {
    SchemaError::Postgres(super::describe(&e))
}

/// Creates the schema named first in the connection's `search_path` when it does not exist
/// (`?options=-csearch_path%3Dsimpul` in the URL), so several buses can share one database.
async fn create(c: &Client) -> Result<(), SchemaError> {
    let current: Option<String> = c
        .query_one("SELECT current_schema()", &[])
        .await
        .map_err(pg)?
        .get(0);
    if current.is_some() {
        return Ok(());
    }
    let path: String = c
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .map_err(pg)?
        .get(0);
    let first = path
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    if first.is_empty() || first == "$user" {
        return Err(SchemaError::Postgres(format!(
            "no schema to create the tables in (search_path is {path:?})"
        )));
    }
    let quoted = first.replace('"', "\"\"");
    c.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{quoted}\""))
        .await
        .map_err(pg)
}

/// Creates the schema of the connection's `search_path` if needed and brings it to
/// [`VERSION`], one node at a time: `CREATE SCHEMA IF NOT EXISTS` is not safe against a node
/// starting at the same moment, so it runs under the lock too.
pub async fn prepare(c: &mut Client) -> Result<(), SchemaError> {
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    let result = match create(c).await {
        Ok(()) => migrate(c).await,
        Err(e) => Err(e),
    };
    c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    result
}

async fn migrate(c: &mut Client) -> Result<(), SchemaError> {
    c.batch_execute("CREATE TABLE IF NOT EXISTS simpul_schema(version bigint NOT NULL)")
        .await
        .map_err(pg)?;
    let found: i64 = c
        .query_opt("SELECT version FROM simpul_schema", &[])
        .await
        .map_err(pg)?
        .map_or(0, |r| r.get(0));
    if found > VERSION {
        return Err(SchemaError::Newer {
            found,
            known: VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let to = i as i64 + 1;
        let tx = c.transaction().await.map_err(pg)?;
        tx.batch_execute(sql).await.map_err(pg)?;
        tx.execute("DELETE FROM simpul_schema", &[])
            .await
            .map_err(pg)?;
        tx.execute("INSERT INTO simpul_schema(version) VALUES ($1)", &[&to])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        tracing::info!(version = to, "PostgreSQL schema migrated");
    }
    Ok(())
}
