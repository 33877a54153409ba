//! The audit on PostgreSQL: each operation inserts its records in its own transaction (most
//! in the operation's single statement); the one node holding the sealing lock chains them.

use tokio_postgres::GenericClient;
use tokio_postgres::Row;

use super::{PgStore, pg_error};
use crate::audit::{Action, Checkpoint, Entry, Head, Record};
use crate::store::{AuditRead, AuditTrail, Leadership, StoreError};

/// Key of the session lock the sealing node holds.
const SEAL_LOCK: i64 = 0x5349_4d50_554c_0003;

pub(super) const TABLES: &str = "
CREATE TABLE audit(
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at bigint NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    type text,
    msg_id uuid,
    counterpart text,
    digest text,
    detail text,
    -- Set by the sealer: the place in the chain, the hash before it and its own.
    pos bigint UNIQUE,
    prev bytea,
    hash bytea
);
CREATE INDEX audit_unsealed ON audit(seq) WHERE pos IS NULL;
CREATE TABLE audit_checkpoints(
    count bigint PRIMARY KEY,
    head bytea NOT NULL,
    at bigint NOT NULL,
    jws text NOT NULL
);
";

pub(super) const SUBJECTS: &str = "
-- The citizen report: persons (HMACs of their identifiers, never the identifiers) and the
-- messages about them; feed_cursor links an event to the feed reads that returned it.
CREATE TABLE audit_subjects(
    subject bytea NOT NULL,
    sender text NOT NULL,
    msg_id uuid NOT NULL,
    type text NOT NULL,
    msg_seq bigint,
    feed_cursor bigint
);
CREATE INDEX audit_subjects_by_subject ON audit_subjects(subject);
CREATE INDEX audit_subjects_by_message ON audit_subjects(msg_seq);
CREATE INDEX audit_by_message ON audit(msg_id) WHERE msg_id IS NOT NULL;
CREATE INDEX audit_feed_reads ON audit(type) WHERE action = 'feed_read';
";

/// Indexes the message (`sender`, `id`) under each of `subjects`, in the caller's transaction.
pub(super) async fn index_subjects(
    c: &impl GenericClient,
    subjects: &[[u8; 32]],
    (sender, id, type_): (&str, uuid::Uuid, &str),
) -> Result<(), StoreError> {
    if subjects.is_empty() {
        return Ok(());
    }
    let subjects: Vec<&[u8]> = subjects.iter().map(|s| &s[..]).collect();
    c.execute(
        "INSERT INTO audit_subjects(subject, sender, msg_id, type)
         SELECT s, $2, $3, $4 FROM unnest($1::bytea[]) AS s",
        &[&subjects, &sender, &id, &type_],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Inserts `entries` in the caller's transaction, in one statement.
pub(super) async fn record(c: &impl GenericClient, entries: &[Entry]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&Entry) -> Option<String>| entries.iter().map(f).collect::<Vec<_>>();
    let at: Vec<i64> = entries.iter().map(|e| e.at).collect();
    let actor = col(|e| Some(e.actor.clone()));
    let action = col(|e| Some(e.action.as_str().to_owned()));
    let ids: Vec<Option<uuid::Uuid>> = entries.iter().map(|e| e.id).collect();
    c.execute(
        "INSERT INTO audit(at, actor, action, type, msg_id, counterpart, digest, detail)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::uuid[],
                              $6::text[], $7::text[], $8::text[])",
        &[
            &at,
            &actor,
            &action,
            &col(|e| e.type_.clone()),
            &ids,
            &col(|e| e.counterpart.clone()),
            &col(|e| e.digest.clone()),
            &col(|e| e.detail.clone()),
        ],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

pub(super) const COLUMNS: &str = "at, actor, action, type, msg_id, counterpart, digest, detail";

pub(super) fn entry(r: &Row) -> Result<Entry, StoreError> {
    let corrupt = || StoreError::Corrupt("audit: unknown action".into());
    Ok(Entry {
        at: r.get(0),
        actor: r.get(1),
        action: Action::parse(r.get(2)).ok_or_else(corrupt)?,
        type_: r.get(3),
        id: r.get(4),
        counterpart: r.get(5),
        digest: r.get(6),
        detail: r.get(7),
    })
}

fn hash32(v: Option<&[u8]>) -> Result<[u8; 32], StoreError> {
    v.and_then(|v| v.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt("audit: bad hash".into()))
}

#[async_trait::async_trait]
impl AuditRead for PgStore {
    async fn audit_head(&self) -> Result<Head, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT (SELECT pos FROM audit WHERE pos IS NOT NULL ORDER BY pos DESC LIMIT 1),
                        (SELECT hash FROM audit WHERE pos IS NOT NULL ORDER BY pos DESC LIMIT 1),
                        (SELECT count FROM audit_checkpoints ORDER BY count DESC LIMIT 1),
                        (SELECT at FROM audit_checkpoints ORDER BY count DESC LIMIT 1)",
                &[],
            )
            .await
            .map_err(pg_error)?;
        let count: Option<i64> = row.get(0);
        Ok(Head {
            count: count.unwrap_or(0),
            hash: match count {
                Some(_) => hash32(row.get(1))?,
                None => [0; 32],
            },
            checkpoint_count: row.get::<_, Option<i64>>(2).unwrap_or(0),
            checkpoint_at: row.get::<_, Option<i64>>(3).unwrap_or(0),
        })
    }

    async fn audit_records(&self, after: i64, limit: usize) -> Result<Vec<Record>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {COLUMNS}, pos, prev, hash FROM audit WHERE pos > $1
                     ORDER BY pos LIMIT $2"
                ),
                &[&after, &(limit as i64)],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|r| {
                Ok(Record {
                    entry: entry(r)?,
                    pos: r.get(8),
                    prev: hash32(r.get(9))?,
                    hash: hash32(r.get(10))?,
                })
            })
            .collect()
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT count, head, at, jws FROM audit_checkpoints ORDER BY count",
                &[],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    count: r.get(0),
                    head: hash32(r.get(1))?,
                    at: r.get(2),
                    jws: r.get(3),
                })
            })
            .collect()
    }

    async fn unsealed_count(&self) -> Result<i64, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one("SELECT count(*) FROM audit WHERE pos IS NULL", &[])
            .await
            .map_err(pg_error)?;
        Ok(row.get(0))
    }
}

#[async_trait::async_trait]
impl AuditTrail for PgStore {
    async fn record(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let c = self.client().await?;
        record(&**c, &entries).await
    }

    async fn subject_records(&self, subject: [u8; 32]) -> Result<Vec<Entry>, StoreError> {
        let c = self.client().await?;
        let links = c
            .query(
                "SELECT DISTINCT sender, msg_id, type, feed_cursor FROM audit_subjects
                 WHERE subject = $1",
                &[&&subject[..]],
            )
            .await
            .map_err(pg_error)?;
        let (mut linked, mut read) = (Vec::new(), Vec::new());
        for l in &links {
            let (sender, id): (&str, uuid::Uuid) = (l.get(0), l.get(1));
            let rows = c
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM audit
                         WHERE msg_id = $1 AND (actor = $2 OR counterpart = $2)"
                    ),
                    &[&id, &sender],
                )
                .await
                .map_err(pg_error)?;
            for r in &rows {
                linked.push(entry(r)?);
            }
            if let Some(cursor) = l.get::<_, Option<i64>>(3) {
                let rows = c
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM audit WHERE action = 'feed_read' AND type = $1"
                        ),
                        &[&l.get::<_, &str>(2)],
                    )
                    .await
                    .map_err(pg_error)?;
                for r in &rows {
                    read.push((entry(r)?, cursor));
                }
            }
        }
        Ok(crate::store::entries::subject_report(linked, read))
    }

    async fn lead_sealing(&self) -> Result<Leadership, StoreError> {
        self.lead_with(SEAL_LOCK, "the audit sealer's").await
    }

    async fn unsealed(&self, limit: usize) -> Result<Vec<(i64, Entry)>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {COLUMNS}, seq FROM audit WHERE pos IS NULL ORDER BY seq LIMIT $1"
                ),
                &[&(limit as i64)],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(|r| Ok((r.get(8), entry(r)?))).collect()
    }

    async fn seal(
        &self,
        sealed: Vec<(i64, Record)>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg_error)?;
        let rows: Vec<i64> = sealed.iter().map(|(row, _)| *row).collect();
        let pos: Vec<i64> = sealed.iter().map(|(_, r)| r.pos).collect();
        let prev: Vec<&[u8]> = sealed.iter().map(|(_, r)| &r.prev[..]).collect();
        let hash: Vec<&[u8]> = sealed.iter().map(|(_, r)| &r.hash[..]).collect();
        tx.execute(
            "UPDATE audit a SET pos = u.pos, prev = u.prev, hash = u.hash
             FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[])
               AS u(seq, pos, prev, hash)
             WHERE a.seq = u.seq AND a.pos IS NULL",
            &[&rows, &pos, &prev, &hash],
        )
        .await
        .map_err(pg_error)?;
        if let Some(cp) = checkpoint {
            tx.execute(
                "INSERT INTO audit_checkpoints(count, head, at, jws) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (count) DO NOTHING",
                &[&cp.count, &&cp.head[..], &cp.at, &cp.jws],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)
    }
}
