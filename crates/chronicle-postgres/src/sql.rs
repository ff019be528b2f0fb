//! Every SQL statement, built once per store from its (validated, quoted) schema name.
//! Values always travel as parameters; the only text spliced into SQL is the schema
//! identifier, checked by [`check_schema_name`] to be `[a-z_][a-z0-9_]*`.

use chronicle::{Error, Result};

/// Longest schema name accepted (PostgreSQL's identifier limit is 63 bytes; the notify
/// channel adds a prefix).
pub const SCHEMA_NAME_BYTES_MAX: usize = 48;

/// The columns of an event row, in the order [`crate::read::event_from_row`] reads them.
pub(crate) const EVENT_COLUMNS: &str =
    "position, stream_id, version, event_type, data, metadata, id, correlation_id, causation_id, recorded_at";

/// Checks a schema name: 1 to [`SCHEMA_NAME_BYTES_MAX`] bytes of `a-z`, `0-9`, `_`, not
/// starting with a digit, not starting with `pg_`.
pub(crate) fn check_schema_name(schema: &str) -> Result<()> {
    let valid = !schema.is_empty()
        && schema.len() <= SCHEMA_NAME_BYTES_MAX
        && !schema.starts_with("pg_")
        && schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit();
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidInput {
            message: format!(
                "schema name {schema:?}: use 1 to {SCHEMA_NAME_BYTES_MAX} bytes of a-z, 0-9 and _, not starting with a digit or pg_"
            ),
        })
    }
}

/// The statements of one store.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) ensure_streams: String,
    pub(crate) lock_streams: String,
    pub(crate) recent_events: String,
    pub(crate) update_streams: String,
    pub(crate) insert_events: String,
    pub(crate) stream_state: String,
    pub(crate) mark_deleted: String,
    pub(crate) delete_events: String,
    pub(crate) delete_snapshots: String,
    pub(crate) lock_stream_shared: String,
    pub(crate) save_snapshot: String,
    pub(crate) prune_snapshots: String,
    pub(crate) load_snapshot: String,
    pub(crate) streams: String,
    pub(crate) head: String,
    pub(crate) lock_head: String,
    pub(crate) take_position: String,
    pub(crate) stream_forward: String,
    pub(crate) stream_backward: String,
    pub(crate) all_forward: String,
    pub(crate) all_backward: String,
    pub(crate) consumer_position: String,
    pub(crate) consumer_ack: String,
    pub(crate) consumer_delete: String,
    pub(crate) schema: String,
    pub(crate) channel: String,
}

/// A page query in `key` order (`position`, or `version` within one stream, which its
/// unique index answers in order): at most `$limit` rows, and only rows whose preceding
/// rows hold at most `$bytes` bytes of data and metadata — so a page is at most `$bytes`
/// plus one event, and always has its first event whatever its size. The last column
/// (`upto`, the running total) tells the reader whether it was cut: `upto > $bytes` on the
/// last row. One window function (running sum, `ROWS` frame, no peers to look for) over
/// rows already in index order. `filter` uses `$1`..; `limit` and `bytes` name the two
/// parameters after it.
pub(crate) fn page(schema: &str, filter: &str, key: &str, descending: bool, limit: usize, bytes: usize) -> String {
    let order = if descending { "DESC" } else { "ASC" };
    format!(
        "SELECT {EVENT_COLUMNS}, upto FROM (\
           SELECT p.*, \
             CAST(sum(octet_length(p.data)::bigint + octet_length(p.metadata)) OVER (ORDER BY p.{key} {order} ROWS UNBOUNDED PRECEDING) AS bigint) AS upto, \
             octet_length(p.data)::bigint + octet_length(p.metadata) AS own \
           FROM (SELECT {EVENT_COLUMNS} FROM \"{schema}\".events WHERE {filter} ORDER BY {key} {order} LIMIT ${limit}) p\
         ) q WHERE q.upto - q.own <= ${bytes} ORDER BY {key} {order}"
    )
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        Sql {
            ensure_streams: format!(
                "INSERT INTO {s}.streams (stream_id, partition_hash) SELECT id, hash FROM unnest($1::bytea[], $2::bigint[]) AS u(id, hash) ORDER BY id ON CONFLICT (stream_id) DO NOTHING"
            ),
            lock_streams: format!(
                "SELECT stream_id, last_version, deleted FROM {s}.streams WHERE stream_id = ANY($1::bytea[]) ORDER BY stream_id FOR UPDATE"
            ),
            recent_events: format!(
                "SELECT version, id, position FROM {s}.events WHERE stream_id = $1 AND version >= $2 AND version <= $3 ORDER BY version"
            ),
            update_streams: format!(
                "UPDATE {s}.streams AS s SET last_version = u.last FROM unnest($1::bytea[], $2::bigint[]) AS u(id, last) WHERE s.stream_id = u.id"
            ),
            // The position counter is one row: its row lock, taken here and held to COMMIT,
            // orders commits (docs/postgres.md, "Gap-free positions").
            insert_events: format!(
                "WITH head AS (\
                   UPDATE {s}.log_head SET next_position = next_position + $1 WHERE id = 0 \
                   RETURNING next_position - $1 AS first, (extract(epoch from clock_timestamp()) * 1000000)::bigint AS ts\
                 ), ins AS (\
                   INSERT INTO {s}.events ({EVENT_COLUMNS}) \
                   SELECT head.first + u.ord - 1, u.stream_id, u.version, u.event_type, u.data, u.metadata, u.id, u.correlation_id, u.causation_id, head.ts \
                   FROM head, unnest($2::bytea[], $3::bigint[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bytea[], $8::bytea[], $9::bytea[]) \
                     WITH ORDINALITY AS u(stream_id, version, event_type, data, metadata, id, correlation_id, causation_id, ord)\
                 ) SELECT first, ts, pg_notify($10, (first + $1)::text)::text AS notified FROM head"
            ),
            stream_state: format!("SELECT last_version, deleted FROM {s}.streams WHERE stream_id = $1"),
            mark_deleted: format!("UPDATE {s}.streams SET deleted = true, last_version = NULL WHERE stream_id = $1"),
            delete_events: format!("DELETE FROM {s}.events WHERE stream_id = $1"),
            delete_snapshots: format!("DELETE FROM {s}.snapshots WHERE stream_id = $1"),
            lock_stream_shared: format!("SELECT last_version, deleted FROM {s}.streams WHERE stream_id = $1 FOR SHARE"),
            save_snapshot: format!(
                "INSERT INTO {s}.snapshots (stream_id, version, data) VALUES ($1, $2, $3) \
                 ON CONFLICT (stream_id, version) DO UPDATE SET data = EXCLUDED.data"
            ),
            prune_snapshots: format!(
                "DELETE FROM {s}.snapshots WHERE stream_id = $1 AND version NOT IN \
                 (SELECT version FROM {s}.snapshots WHERE stream_id = $1 ORDER BY version DESC LIMIT $2)"
            ),
            load_snapshot: format!(
                "SELECT st.deleted, sn.version, sn.data FROM (SELECT $1::bytea AS id) q \
                 LEFT JOIN {s}.streams st ON st.stream_id = q.id \
                 LEFT JOIN LATERAL (SELECT version, data FROM {s}.snapshots WHERE stream_id = q.id ORDER BY version DESC LIMIT 1) sn ON true"
            ),
            streams: format!(
                "SELECT stream_id FROM {s}.streams WHERE NOT deleted AND last_version IS NOT NULL ORDER BY stream_id"
            ),
            head: format!("SELECT next_position FROM {s}.log_head WHERE id = 0"),
            lock_head: format!("SELECT next_position FROM {s}.log_head WHERE id = 0 FOR UPDATE"),
            take_position: format!(
                "UPDATE {s}.log_head SET next_position = next_position + 1 WHERE id = 0 \
                 RETURNING pg_notify($1, (next_position)::text)::text"
            ),
            stream_forward: page(schema, "stream_id = $1 AND version >= $2", "version", false, 3, 4),
            stream_backward: page(schema, "stream_id = $1 AND version <= $2", "version", true, 3, 4),
            all_forward: page(schema, "position >= $1", "position", false, 2, 3),
            all_backward: page(schema, "position <= $1", "position", true, 2, 3),
            consumer_position: format!("SELECT position FROM {s}.consumers WHERE name = $1"),
            consumer_ack: format!(
                "INSERT INTO {s}.consumers (name, position) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET position = greatest({s}.consumers.position, EXCLUDED.position)"
            ),
            consumer_delete: format!("DELETE FROM {s}.consumers WHERE name = $1"),
            schema: schema.to_owned(),
            channel: format!("chronicle_{schema}"),
        }
    }
}
