//! The engines under comparison behind one small interface: chronicle, SQLite (the SQL
//! event-store schema), fjall and redb (events under (stream, version) keys plus a
//! global-position key space).
//!
//! Every engine appends with optimistic concurrency: an append names the stream's expected
//! last version (`None`: the stream must not exist) and fails without writing if it differs.
//! Every engine stores the same fields: stream id, version, position, event type, data,
//! metadata, timestamp and a 128-bit id.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Res<T> = Result<T, BoxError>;

/// Event type of every benchmark event.
pub const EVENT_TYPE: &str = "OrderPlaced";

/// What every engine must offer the workloads.
pub trait Engine: Send + Sync {
    /// Appends `count` events (the engine's payload) to `stream` as one atomic, checked
    /// append, if the stream's last version is `expected`.
    fn append(&self, stream: &str, expected: Option<u64>, count: usize) -> Res<()>;
    /// Bulk load: event number `version` of each of `streams`, in one transaction.
    fn load(&self, version: u64, streams: &[String]) -> Res<()>;
    /// Makes everything written so far durable.
    fn flush(&self) -> Res<()>;
    /// Reads every event in global order, all fields; returns (events, digest).
    fn replay(&self) -> Res<(u64, u64)>;
    /// The same replay through the engine's zero-copy visitor API, if it has one.
    fn replay_borrowed(&self) -> Option<Res<(u64, u64)>> {
        None
    }
    /// Reads one whole stream in version order, all fields; returns its event count.
    fn read_stream(&self, stream: &str) -> Res<usize>;
    /// The same read through the engine's zero-copy visitor API, if it has one.
    fn read_stream_borrowed(&self, _stream: &str) -> Option<Res<usize>> {
        None
    }
    /// The stream's last version (the query answered right after open in W6).
    fn probe(&self, stream: &str) -> Res<Option<u64>>;
    fn close(self: Box<Self>) -> Res<()>;
}

/// Opens (creating) engine `name` in `dir`. `durable`: every append is on disk when it
/// returns (fdatasync); otherwise each engine's own non-durable setting.
pub fn open(name: &str, dir: &Path, durable: bool, data: &Bytes) -> Res<Box<dyn Engine>> {
    std::fs::create_dir_all(dir)?;
    Ok(match name {
        "chronicle" => Box::new(ChronicleEngine::open(dir, durable, data)?),
        "sqlite" => Box::new(SqliteEngine::open(dir, durable, data)?),
        "fjall" => Box::new(FjallEngine::open(dir, durable, data)?),
        "redb" => Box::new(RedbEngine::open(dir, durable, data)?),
        "postgres" => Box::new(PostgresEngine::open(dir, durable, data)?),
        other => return Err(format!("unknown engine {other}").into()),
    })
}

fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn conflict(stream: &str, expected: Option<u64>, actual: Option<u64>) -> BoxError {
    format!("wrong expected version on {stream}: expected {expected:?}, actual {actual:?}").into()
}

/// Folds an event's fields into a digest so the optimiser cannot skip reading them.
fn digest(acc: u64, version: u64, position: u64, id: u128, texts: usize, metadata: &[u8], data: &[u8]) -> u64 {
    let first = data.first().copied().unwrap_or(0) as u64;
    acc.wrapping_mul(31)
        .wrapping_add(version ^ position ^ (id as u64) ^ texts as u64)
        .wrapping_add(metadata.len() as u64 + data.len() as u64 + first)
}

// ---------------------------------------------------------------------------------------
// chronicle

struct ChronicleEngine {
    store: chronicle::Store,
    data: Bytes,
}

/// chronicle under `Durability::Buffered` with `Options::coalesce_writes(window)`.
pub fn open_chronicle_coalesced(dir: &Path, window: std::time::Duration, data: &Bytes) -> Res<Box<dyn Engine>> {
    use chronicle::{Durability, Options};
    std::fs::create_dir_all(dir)?;
    let options = Options::default().durability(Durability::Buffered).coalesce_writes(window);
    let store = chronicle::Store::open_with(dir, options)?;
    Ok(Box::new(ChronicleEngine { store, data: data.clone() }))
}

impl ChronicleEngine {
    fn open(dir: &Path, durable: bool, data: &Bytes) -> Res<Self> {
        use chronicle::{Durability, Options};
        let durability = if durable { Durability::Sync } else { Durability::Buffered };
        let store = chronicle::Store::open_with(dir, Options::default().durability(durability))?;
        Ok(ChronicleEngine { store, data: data.clone() })
    }

    fn expected(expected: Option<u64>) -> chronicle::ExpectedVersion {
        expected.map_or(chronicle::ExpectedVersion::NoStream, chronicle::ExpectedVersion::Exact)
    }
}

impl Engine for ChronicleEngine {
    fn append(&self, stream: &str, expected: Option<u64>, count: usize) -> Res<()> {
        let events = (0..count).map(|_| chronicle::NewEvent::new(EVENT_TYPE, self.data.clone()));
        self.store.append(stream, Self::expected(expected), events)?;
        Ok(())
    }

    fn load(&self, version: u64, streams: &[String]) -> Res<()> {
        let expected = Self::expected(version.checked_sub(1));
        let parts = streams.iter().map(|stream| {
            chronicle::StreamAppend::new(
                stream.as_str(),
                expected,
                [chronicle::NewEvent::new(EVENT_TYPE, self.data.clone())],
            )
        });
        self.store.append_multi(parts)?;
        Ok(())
    }

    fn flush(&self) -> Res<()> {
        Ok(self.store.sync()?)
    }

    fn replay(&self) -> Res<(u64, u64)> {
        let mut count = 0;
        let mut acc = 0;
        for event in self.store.read_all(0)? {
            let e = event?;
            let texts = e.stream_id.len() + e.event_type.len();
            acc = digest(acc, e.version, e.position, e.id, texts, &e.metadata, &e.data);
            count += 1;
        }
        Ok((count, acc))
    }

    fn replay_borrowed(&self) -> Option<Res<(u64, u64)>> {
        let mut count = 0;
        let mut acc = 0;
        let visited = self.store.read_all_with(0, |e| {
            let texts = e.stream_id.len() + e.event_type.len();
            acc = digest(acc, e.version, e.position, e.id, texts, e.metadata, e.data);
            count += 1;
            std::ops::ControlFlow::Continue(())
        });
        Some(visited.map(|()| (count, acc)).map_err(Into::into))
    }

    fn read_stream(&self, stream: &str) -> Res<usize> {
        let mut count = 0;
        let mut acc = 0;
        for event in self.store.read_stream(stream, 0)? {
            let e = event?;
            let texts = e.stream_id.len() + e.event_type.len();
            acc = digest(acc, e.version, e.position, e.id, texts, &e.metadata, &e.data);
            count += 1;
        }
        std::hint::black_box(acc);
        Ok(count)
    }

    fn read_stream_borrowed(&self, stream: &str) -> Option<Res<usize>> {
        let mut count = 0;
        let mut acc = 0;
        let visited = self.store.read_stream_with(stream, 0, |e| {
            let texts = e.stream_id.len() + e.event_type.len();
            acc = digest(acc, e.version, e.position, e.id, texts, e.metadata, e.data);
            count += 1;
            std::ops::ControlFlow::Continue(())
        });
        std::hint::black_box(acc);
        Some(visited.map(|()| count).map_err(Into::into))
    }

    fn probe(&self, stream: &str) -> Res<Option<u64>> {
        Ok(self.store.stream_version(stream)?)
    }

    fn close(self: Box<Self>) -> Res<()> {
        Ok(self.store.close()?)
    }
}

// ---------------------------------------------------------------------------------------
// SQLite: the schema SQL event stores use; one connection shared behind a mutex (SQLite
// has one writer at a time anyway; a shared connection avoids busy-retry sleeps).

struct SqliteEngine {
    conn: Mutex<rusqlite::Connection>,
    data: Bytes,
    next_id: AtomicU64,
}

const SQLITE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    stream_id TEXT,
    version INTEGER,
    event_type TEXT,
    data BLOB,
    metadata BLOB,
    created_at INTEGER,
    UNIQUE(stream_id, version))";

const SQLITE_INSERT: &str = "INSERT INTO events (stream_id, version, event_type, data, metadata, created_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

impl SqliteEngine {
    fn open(dir: &Path, durable: bool, data: &Bytes) -> Res<Self> {
        let conn = rusqlite::Connection::open(dir.join("events.db"))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("SQLite refused WAL mode: {mode}").into());
        }
        conn.execute_batch(if durable { "PRAGMA synchronous=FULL" } else { "PRAGMA synchronous=OFF" })?;
        conn.execute_batch(SQLITE_SCHEMA)?;
        Ok(SqliteEngine { conn: Mutex::new(conn), data: data.clone(), next_id: AtomicU64::new(1) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.conn.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Engine for SqliteEngine {
    fn append(&self, stream: &str, expected: Option<u64>, count: usize) -> Res<()> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let actual: Option<i64> = tx
            .prepare_cached("SELECT MAX(version) FROM events WHERE stream_id = ?1")?
            .query_row([stream], |row| row.get(0))?;
        let actual = actual.map(|v| v as u64);
        if actual != expected {
            return Err(conflict(stream, expected, actual));
        }
        let first = actual.map_or(0, |v| v + 1);
        let now = unix_micros() as i64;
        {
            let mut insert = tx.prepare_cached(SQLITE_INSERT)?;
            for i in 0..count as u64 {
                let metadata: &[u8] = &[];
                insert.execute(rusqlite::params![
                    stream,
                    (first + i) as i64,
                    EVENT_TYPE,
                    &self.data[..],
                    metadata,
                    now
                ])?;
            }
        }
        tx.commit()?;
        self.next_id.fetch_add(count as u64, Ordering::Relaxed);
        Ok(())
    }

    fn load(&self, version: u64, streams: &[String]) -> Res<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let now = unix_micros() as i64;
        {
            let mut insert = tx.prepare_cached(SQLITE_INSERT)?;
            for stream in streams {
                let metadata: &[u8] = &[];
                insert.execute(rusqlite::params![stream, version as i64, EVENT_TYPE, &self.data[..], metadata, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn flush(&self) -> Res<()> {
        // synchronous=OFF never syncs; a FULL checkpoint writes and syncs the WAL into the db.
        self.lock().execute_batch("PRAGMA wal_checkpoint(FULL)")?;
        Ok(())
    }

    fn replay(&self) -> Res<(u64, u64)> {
        let conn = self.lock();
        let mut statement = conn.prepare_cached(
            "SELECT position, stream_id, version, event_type, data, metadata, created_at FROM events ORDER BY position",
        )?;
        digest_rows(statement.query([])?)
    }

    fn read_stream(&self, stream: &str) -> Res<usize> {
        let conn = self.lock();
        let mut statement = conn.prepare_cached(
            "SELECT position, stream_id, version, event_type, data, metadata, created_at FROM events \
             WHERE stream_id = ?1 ORDER BY version",
        )?;
        let (count, acc) = digest_rows(statement.query([stream])?)?;
        std::hint::black_box(acc);
        Ok(count as usize)
    }

    fn probe(&self, stream: &str) -> Res<Option<u64>> {
        let conn = self.lock();
        let version: Option<i64> =
            conn.query_row("SELECT MAX(version) FROM events WHERE stream_id = ?1", [stream], |row| row.get(0))?;
        Ok(version.map(|v| v as u64))
    }

    fn close(self: Box<Self>) -> Res<()> {
        let conn = self.conn.into_inner().unwrap_or_else(|poison| poison.into_inner());
        conn.close().map_err(|(_, error)| error)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Key-value layout shared by fjall and redb: events under (stream, version), the value
// holding every other field; a second key space maps position -> (stream, version).

/// Value of an event: position u64 | timestamp_us u64 | id u128 | type_len u16 | type |
/// metadata_len u32 | metadata | data (all little-endian).
fn encode_value(position: u64, timestamp_us: u64, id: u128, metadata: &[u8], data: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(38 + EVENT_TYPE.len() + metadata.len() + data.len());
    value.extend_from_slice(&position.to_le_bytes());
    value.extend_from_slice(&timestamp_us.to_le_bytes());
    value.extend_from_slice(&id.to_le_bytes());
    value.extend_from_slice(&(EVENT_TYPE.len() as u16).to_le_bytes());
    value.extend_from_slice(EVENT_TYPE.as_bytes());
    value.extend_from_slice(&(metadata.len() as u32).to_le_bytes());
    value.extend_from_slice(metadata);
    value.extend_from_slice(data);
    value
}

/// Decodes a value (and folds it into a digest); `None` if it is malformed.
/// Reads every row of `SELECT position, stream_id, version, event_type, data, metadata,
/// created_at` into the digest; returns the row count and the digest.
fn digest_rows(mut rows: rusqlite::Rows<'_>) -> Res<(u64, u64)> {
    let mut count = 0;
    let mut acc = 0;
    while let Some(row) = rows.next()? {
        let position: i64 = row.get(0)?;
        let texts = row.get_ref(1)?.as_str()?.len() + row.get_ref(3)?.as_str()?.len();
        let version: i64 = row.get(2)?;
        let created_at: i64 = row.get(6)?;
        let data = row.get_ref(4)?.as_blob()?;
        let metadata = row.get_ref(5)?.as_blob()?;
        acc = digest(acc, version as u64, position as u64, created_at as u128, texts, metadata, data);
        count += 1;
    }
    Ok((count, acc))
}

fn digest_value(acc: u64, version: u64, stream_len: usize, value: &[u8]) -> Option<u64> {
    let position = u64::from_le_bytes(value.get(0..8)?.try_into().ok()?);
    let _timestamp = u64::from_le_bytes(value.get(8..16)?.try_into().ok()?);
    let id = u128::from_le_bytes(value.get(16..32)?.try_into().ok()?);
    let type_len = u16::from_le_bytes(value.get(32..34)?.try_into().ok()?) as usize;
    let event_type = std::str::from_utf8(value.get(34..34 + type_len)?).ok()?;
    let at = 34 + type_len;
    let metadata_len = u32::from_le_bytes(value.get(at..at + 4)?.try_into().ok()?) as usize;
    let metadata = value.get(at + 4..at + 4 + metadata_len)?;
    let data = value.get(at + 4 + metadata_len..)?;
    Some(digest(acc, version, position, id, stream_len + event_type.len(), metadata, data))
}

fn kv_key(stream: &str, version: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 9);
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn kv_prefix(stream: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 1);
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key
}

fn kv_key_version(key: &[u8]) -> Option<u64> {
    let tail = key.get(key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

fn malformed() -> BoxError {
    "malformed stored event".into()
}

// ---------------------------------------------------------------------------------------
// fjall: the single-writer transactional database; durable commits use fdatasync.

struct FjallEngine {
    db: fjall::SingleWriterTxDatabase,
    events: fjall::SingleWriterTxKeyspace,
    positions: fjall::SingleWriterTxKeyspace,
    persist: fjall::PersistMode,
    data: Bytes,
    /// Next global position; read and advanced only inside a write transaction.
    next_position: AtomicU64,
}

impl FjallEngine {
    fn open(dir: &Path, durable: bool, data: &Bytes) -> Res<Self> {
        use fjall::{KeyspaceCreateOptions, Readable};
        let db = fjall::SingleWriterTxDatabase::builder(dir).open()?;
        let events = db.keyspace("events", KeyspaceCreateOptions::default)?;
        let positions = db.keyspace("positions", KeyspaceCreateOptions::default)?;
        let next_position = match db.read_tx().last_key_value(&positions) {
            Some(guard) => u64::from_be_bytes(guard.key()?.as_ref().try_into()?) + 1,
            None => 0,
        };
        // Non-durable: flushed to the OS per commit (like chronicle's Buffered), not synced.
        let persist = if durable { fjall::PersistMode::SyncData } else { fjall::PersistMode::Buffer };
        Ok(FjallEngine {
            db,
            events,
            positions,
            persist,
            data: data.clone(),
            next_position: AtomicU64::new(next_position),
        })
    }
}

impl Engine for FjallEngine {
    fn append(&self, stream: &str, expected: Option<u64>, count: usize) -> Res<()> {
        use fjall::Readable;
        let mut tx = self.db.write_tx().durability(Some(self.persist));
        let actual = match tx.prefix(&self.events, kv_prefix(stream)).next_back() {
            Some(guard) => Some(kv_key_version(&guard.key()?).ok_or_else(malformed)?),
            None => None,
        };
        if actual != expected {
            return Err(conflict(stream, expected, actual));
        }
        let first = actual.map_or(0, |v| v + 1);
        let mut position = self.next_position.load(Ordering::Acquire);
        let now = unix_micros();
        for i in 0..count as u64 {
            let key = kv_key(stream, first + i);
            tx.insert(&self.events, key.clone(), encode_value(position, now, u128::from(position), &[], &self.data));
            tx.insert(&self.positions, position.to_be_bytes(), key);
            position += 1;
        }
        tx.commit()?;
        self.next_position.store(position, Ordering::Release);
        Ok(())
    }

    fn load(&self, version: u64, streams: &[String]) -> Res<()> {
        let mut tx = self.db.write_tx().durability(Some(fjall::PersistMode::Buffer));
        let mut position = self.next_position.load(Ordering::Acquire);
        let now = unix_micros();
        for stream in streams {
            let key = kv_key(stream, version);
            tx.insert(&self.events, key.clone(), encode_value(position, now, u128::from(position), &[], &self.data));
            tx.insert(&self.positions, position.to_be_bytes(), key);
            position += 1;
        }
        tx.commit()?;
        self.next_position.store(position, Ordering::Release);
        Ok(())
    }

    fn flush(&self) -> Res<()> {
        Ok(self.db.persist(fjall::PersistMode::SyncAll)?)
    }

    fn replay(&self) -> Res<(u64, u64)> {
        use fjall::Readable;
        let snapshot = self.db.read_tx();
        let mut count = 0;
        let mut acc = 0;
        for guard in snapshot.iter(&self.positions) {
            let (_, key) = guard.into_inner()?;
            let value = snapshot.get(&self.events, &key)?.ok_or_else(malformed)?;
            let version = kv_key_version(&key).ok_or_else(malformed)?;
            acc = digest_value(acc, version, key.len() - 9, &value).ok_or_else(malformed)?;
            count += 1;
        }
        Ok((count, acc))
    }

    fn read_stream(&self, stream: &str) -> Res<usize> {
        use fjall::Readable;
        let snapshot = self.db.read_tx();
        let mut count = 0;
        let mut acc = 0;
        for guard in snapshot.prefix(&self.events, kv_prefix(stream)) {
            let (key, value) = guard.into_inner()?;
            let version = kv_key_version(&key).ok_or_else(malformed)?;
            acc = digest_value(acc, version, stream.len(), &value).ok_or_else(malformed)?;
            count += 1;
        }
        std::hint::black_box(acc);
        Ok(count)
    }

    fn probe(&self, stream: &str) -> Res<Option<u64>> {
        use fjall::Readable;
        match self.db.read_tx().prefix(&self.events, kv_prefix(stream)).next_back() {
            Some(guard) => Ok(Some(kv_key_version(&guard.key()?).ok_or_else(malformed)?)),
            None => Ok(None),
        }
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        drop(self);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// redb: one write transaction at a time; Durability::Immediate for durable commits.

const REDB_EVENTS: redb::TableDefinition<(&str, u64), &[u8]> = redb::TableDefinition::new("events");
const REDB_POSITIONS: redb::TableDefinition<u64, (&str, u64)> = redb::TableDefinition::new("positions");

struct RedbEngine {
    db: redb::Database,
    durability: redb::Durability,
    data: Bytes,
    /// Next global position; read and advanced only inside a write transaction.
    next_position: AtomicU64,
}

impl RedbEngine {
    fn open(dir: &Path, durable: bool, data: &Bytes) -> Res<Self> {
        use redb::ReadableTable;
        let db = redb::Database::create(dir.join("events.redb"))?;
        let txn = db.begin_write()?;
        let next_position = {
            txn.open_table(REDB_EVENTS)?;
            let positions = txn.open_table(REDB_POSITIONS)?;
            positions.last()?.map_or(0, |(key, _)| key.value() + 1)
        };
        txn.commit()?;
        let durability = if durable { redb::Durability::Immediate } else { redb::Durability::None };
        Ok(RedbEngine { db, durability, data: data.clone(), next_position: AtomicU64::new(next_position) })
    }
}

impl Engine for RedbEngine {
    fn append(&self, stream: &str, expected: Option<u64>, count: usize) -> Res<()> {
        use redb::ReadableTable;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(self.durability)?;
        let mut position = self.next_position.load(Ordering::Acquire);
        {
            let mut events = txn.open_table(REDB_EVENTS)?;
            let actual = match events.range((stream, 0)..=(stream, u64::MAX))?.next_back() {
                Some(item) => Some(item?.0.value().1),
                None => None,
            };
            if actual != expected {
                return Err(conflict(stream, expected, actual));
            }
            let first = actual.map_or(0, |v| v + 1);
            let mut positions = txn.open_table(REDB_POSITIONS)?;
            let now = unix_micros();
            for i in 0..count as u64 {
                let value = encode_value(position, now, u128::from(position), &[], &self.data);
                events.insert((stream, first + i), value.as_slice())?;
                positions.insert(position, (stream, first + i))?;
                position += 1;
            }
        }
        txn.commit()?;
        self.next_position.store(position, Ordering::Release);
        Ok(())
    }

    fn load(&self, version: u64, streams: &[String]) -> Res<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::None)?;
        let mut position = self.next_position.load(Ordering::Acquire);
        {
            let mut events = txn.open_table(REDB_EVENTS)?;
            let mut positions = txn.open_table(REDB_POSITIONS)?;
            let now = unix_micros();
            for stream in streams {
                let value = encode_value(position, now, u128::from(position), &[], &self.data);
                events.insert((stream.as_str(), version), value.as_slice())?;
                positions.insert(position, (stream.as_str(), version))?;
                position += 1;
            }
        }
        txn.commit()?;
        self.next_position.store(position, Ordering::Release);
        Ok(())
    }

    fn flush(&self) -> Res<()> {
        // An Immediate commit makes every earlier Durability::None commit durable.
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        txn.commit()?;
        Ok(())
    }

    fn replay(&self) -> Res<(u64, u64)> {
        use redb::{ReadableDatabase, ReadableTable};
        let txn = self.db.begin_read()?;
        let events = txn.open_table(REDB_EVENTS)?;
        let positions = txn.open_table(REDB_POSITIONS)?;
        let mut count = 0;
        let mut acc = 0;
        for item in positions.iter()? {
            let (_, key) = item?;
            let (stream, version) = key.value();
            let value = events.get((stream, version))?.ok_or_else(malformed)?;
            acc = digest_value(acc, version, stream.len(), value.value()).ok_or_else(malformed)?;
            count += 1;
        }
        Ok((count, acc))
    }

    fn read_stream(&self, stream: &str) -> Res<usize> {
        use redb::ReadableDatabase;
        let txn = self.db.begin_read()?;
        let events = txn.open_table(REDB_EVENTS)?;
        let mut count = 0;
        let mut acc = 0;
        for item in events.range((stream, 0)..=(stream, u64::MAX))? {
            let (key, value) = item?;
            acc = digest_value(acc, key.value().1, stream.len(), value.value()).ok_or_else(malformed)?;
            count += 1;
        }
        std::hint::black_box(acc);
        Ok(count)
    }

    fn probe(&self, stream: &str) -> Res<Option<u64>> {
        use redb::ReadableDatabase;
        let txn = self.db.begin_read()?;
        let events = txn.open_table(REDB_EVENTS)?;
        let last = events.range((stream, 0)..=(stream, u64::MAX))?.next_back();
        Ok(match last {
            Some(item) => Some(item?.0.value().1),
            None => None,
        })
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.flush()?;
        drop(self);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: chronicle-postgres on the server named by CHRONICLE_TEST_PG_URL, one schema
// per store directory name (the directory itself stays empty). Always durable (the
// server's synchronous_commit=on): the data set is loaded durably too.

struct PostgresEngine {
    store: chronicle_postgres::PostgresStore,
    data: Bytes,
}

impl PostgresEngine {
    fn open(dir: &Path, _durable: bool, data: &Bytes) -> Res<Self> {
        let url = crate::args::postgres_url().ok_or("the postgres engine needs CHRONICLE_TEST_PG_URL")?;
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("store");
        let mut schema: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
        // The schema of this directory: named in a marker file the first time, so a fresh
        // (emptied) directory gets a fresh schema and a reopen finds the same one.
        static OPENED: AtomicU64 = AtomicU64::new(0);
        let marker = dir.join("postgres-schema");
        schema = match std::fs::read_to_string(&marker) {
            Ok(existing) => existing.trim().to_owned(),
            Err(_) => {
                let generation = OPENED.fetch_add(1, Ordering::Relaxed);
                let mut fresh = format!("bench_{}_{generation}_{schema}", std::process::id());
                fresh.truncate(chronicle_postgres::SCHEMA_NAME_BYTES_MAX);
                std::fs::write(&marker, &fresh)?;
                fresh
            }
        };
        schema.truncate(chronicle_postgres::SCHEMA_NAME_BYTES_MAX);
        let options = chronicle_postgres::PostgresOptions::default().schema(schema).pool_size(72).runtime_threads(2);
        let store = chronicle_postgres::PostgresStore::connect_with(&url, options)?;
        Ok(PostgresEngine { store, data: data.clone() })
    }
}

impl Engine for PostgresEngine {
    fn append(&self, stream: &str, expected: Option<u64>, count: usize) -> Res<()> {
        let events = (0..count).map(|_| chronicle::NewEvent::new(EVENT_TYPE, self.data.clone()));
        self.store.append(stream, ChronicleEngine::expected(expected), events)?;
        Ok(())
    }

    fn load(&self, version: u64, streams: &[String]) -> Res<()> {
        let expected = ChronicleEngine::expected(version.checked_sub(1));
        let parts = streams.iter().map(|stream| {
            chronicle::StreamAppend::new(
                stream.as_str(),
                expected,
                [chronicle::NewEvent::new(EVENT_TYPE, self.data.clone())],
            )
        });
        self.store.append_multi(parts)?;
        Ok(())
    }

    fn flush(&self) -> Res<()> {
        Ok(())
    }

    fn replay(&self) -> Res<(u64, u64)> {
        let mut count = 0;
        let mut acc = 0;
        for event in self.store.read_all(0)? {
            let e = event?;
            let texts = e.stream_id.len() + e.event_type.len();
            acc = digest(acc, e.version, e.position, e.id, texts, &e.metadata, &e.data);
            count += 1;
        }
        Ok((count, acc))
    }

    fn read_stream(&self, stream: &str) -> Res<usize> {
        let mut count = 0;
        let mut acc = 0;
        for event in self.store.read_stream(stream, 0)? {
            let e = event?;
            let texts = e.stream_id.len() + e.event_type.len();
            acc = digest(acc, e.version, e.position, e.id, texts, &e.metadata, &e.data);
            count += 1;
        }
        std::hint::black_box(acc);
        Ok(count)
    }

    fn probe(&self, stream: &str) -> Res<Option<u64>> {
        Ok(self.store.stream_version(stream)?)
    }

    fn close(self: Box<Self>) -> Res<()> {
        Ok(())
    }
}
