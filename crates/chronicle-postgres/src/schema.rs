//! Versioned schema migrations, applied at connect.
//!
//! `schema_version` holds one row: the number of migrations applied. Connecting takes a
//! transaction-level advisory lock derived from the schema name, creates the schema and
//! the version table if missing, applies the migrations after the stored version in one
//! transaction, and commits: concurrent connects apply each migration exactly once, a
//! failed migration leaves the schema as it was. A stored version above
//! [`SCHEMA_VERSION`] (a newer chronicle-postgres migrated this schema) is refused with a
//! clear [`Error::Backend`] before anything is touched.

use chronicle::{Error, Result};
use tokio_postgres::Client;

use crate::error::db;

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Each migration, in order; `{s}` is the quoted schema name. Never edit a released one:
/// add the next.
const MIGRATIONS: &[&str] = &[
    // 1: streams, events, the position counter, snapshots.
    "CREATE TABLE {s}.streams (
        stream_id bytea PRIMARY KEY,
        last_version bigint,
        deleted boolean NOT NULL DEFAULT false
    );
    CREATE TABLE {s}.events (
        position bigint PRIMARY KEY,
        stream_id bytea NOT NULL,
        version bigint NOT NULL,
        event_type bytea NOT NULL,
        data bytea NOT NULL,
        metadata bytea NOT NULL,
        id bytea NOT NULL CHECK (octet_length(id) = 16),
        correlation_id bytea CHECK (octet_length(correlation_id) = 16),
        causation_id bytea CHECK (octet_length(causation_id) = 16),
        recorded_at bigint NOT NULL,
        UNIQUE (stream_id, version)
    );
    CREATE TABLE {s}.log_head (
        id integer PRIMARY KEY CHECK (id = 0),
        next_position bigint NOT NULL CHECK (next_position >= 0)
    );
    INSERT INTO {s}.log_head (id, next_position) VALUES (0, 0);
    CREATE TABLE {s}.snapshots (
        stream_id bytea NOT NULL,
        version bigint NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (stream_id, version)
    );",
    // 2: durable consumers' checkpoints.
    "CREATE TABLE {s}.consumers (
        name text PRIMARY KEY,
        position bigint NOT NULL
    );",
    // 3: each stream's partition hash (chronicle::Filter::partition_hash, FNV-1a 64, its
    // bits as a bigint) for partitioned filters. New rows get it from the client; the
    // function fills existing rows here (and lets tests compare the two).
    "CREATE FUNCTION {s}.stream_hash(id bytea) RETURNS bigint LANGUAGE plpgsql IMMUTABLE STRICT AS $fn$
    DECLARE
        h numeric := 14695981039346656037;
        low integer;
    BEGIN
        FOR i IN 0 .. octet_length(id) - 1 LOOP
            low := mod(h, 256)::integer;
            h := h - low + (low # get_byte(id, i));
            h := mod(h * 1099511628211, 18446744073709551616);
        END LOOP;
        IF h >= 9223372036854775808 THEN
            h := h - 18446744073709551616;
        END IF;
        RETURN h::bigint;
    END
    $fn$;
    ALTER TABLE {s}.streams ADD COLUMN partition_hash bigint;
    UPDATE {s}.streams SET partition_hash = {s}.stream_hash(stream_id);
    ALTER TABLE {s}.streams ALTER COLUMN partition_hash SET NOT NULL;",
];

/// An advisory-lock key: FNV-1a 64 of `purpose` and `name`, as a bigint.
pub(crate) fn advisory_key(purpose: &str, name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in purpose.as_bytes().iter().chain(name.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// The advisory-lock key of a schema's migrations.
fn lock_key(schema: &str) -> i64 {
    advisory_key("chronicle-migrate:", schema)
}

/// Brings `schema` to [`SCHEMA_VERSION`]; returns the version found before.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<i32> {
    let s = format!("\"{schema}\"");
    let tx = client.transaction().await.map_err(db("begin migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema)]).await.map_err(db("migration lock"))?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.schema_version (
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            version integer NOT NULL
         );"
    ))
    .await
    .map_err(db("create schema"))?;
    let row = tx
        .query_opt(&format!("SELECT version FROM {s}.schema_version"), &[])
        .await
        .map_err(db("read schema version"))?;
    let found: i32 = match row {
        Some(row) => row.try_get(0).map_err(db("read schema version"))?,
        None => 0,
    };
    if found > SCHEMA_VERSION {
        return Err(Error::backend(
            format!(
                "schema {schema:?} is at version {found}, newer than this chronicle-postgres (version {SCHEMA_VERSION}): \
                 upgrade chronicle-postgres; nothing was changed"
            ),
            None,
        ));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        tx.batch_execute(&migration.replace("{s}", &s))
            .await
            .map_err(db(&format!("schema migration {}", index + 1)))?;
    }
    if found < SCHEMA_VERSION {
        tx.execute(
            &format!(
                "INSERT INTO {s}.schema_version (only_row, version) VALUES (true, $1) \
                 ON CONFLICT (only_row) DO UPDATE SET version = EXCLUDED.version"
            ),
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(db("record schema version"))?;
    }
    tx.commit().await.map_err(db("commit migration"))?;
    Ok(found)
}
