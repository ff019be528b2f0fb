//! Retention rules and their persistence in `retention.tbl`.
//!
//! ```text
//! off  size  field
//!   0     8  magic "CHRNRETN"
//!   8     4  format_version 1
//!  12     4  entry_count
//!  16        entries: stream_id_len u16, kind u8 (0 KeepAll, 1 BeforeSnapshot, 2 MaxCount,
//!            3 MaxAge), reserved u8 (0), value u64 (count, or age in microseconds), stream_id
//! end-4   4  crc32 of every byte before it
//! ```
//! Rewritten whole on each change: temporary file, fsync, rename, fsync of the directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::bytes_reader::LeBytes;
use crate::format::crc32_salted;
use crate::storage::{Storage, read_whole, write_durable};
use crate::sync;

/// Which events of a stream compaction may discard. A stream's last event is always kept, so
/// its version (and expected-version checks) survive any retention.
///
/// **Trimmed streams start later.** Once compaction discarded a stream's oldest events,
/// `read_stream(stream, 0)` returns no error: it silently starts at the first event still
/// stored. Code that rebuilds state by replaying a stream (an aggregate) would then build it
/// from a suffix and get it wrong. So for such streams: save a snapshot
/// ([`Store::save_snapshot`](crate::Store::save_snapshot)) before the events it covers can be
/// discarded — [`Retention::BeforeSnapshot`] does exactly this, discarding only what the
/// newest snapshot covers — and load it before replaying the events after it; with
/// [`Retention::MaxCount`] or [`Retention::MaxAge`], check
/// [`Store::stream_info`](crate::Store::stream_info)`.first_version` (above 0 once trimmed)
/// and refuse to rebuild from events alone when it is above the version your snapshot covers.
///
/// ```
/// use chronicle::{Options, Retention};
/// use std::time::Duration;
/// let options = Options::default().retention(Retention::MaxAge(Duration::from_secs(30 * 86_400)));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// Keep every event (the default).
    #[default]
    KeepAll,
    /// Discard events at or below the version of the stream's newest valid snapshot.
    BeforeSnapshot,
    /// Keep only the newest this-many events (at least one is always kept). Older events go
    /// without regard to snapshots: see the type's docs before using it on a stream whose
    /// state is rebuilt by replay.
    MaxCount(u64),
    /// Discard events older than this (by their commit timestamp), without regard to
    /// snapshots, like [`Retention::MaxCount`].
    MaxAge(Duration),
}

pub(crate) const RETENTION_FILE: &str = "retention.tbl";
const MAGIC: [u8; 8] = *b"CHRNRETN";
/// Version of the `retention.tbl` layout above; 1 uses CRC-32 (IEEE).
pub(crate) const RETENTION_FORMAT_VERSION: u32 = 1;
const FILE_BYTES_MAX: u64 = 256 << 20;

/// Per-stream retention settings.
#[derive(Debug)]
pub(crate) struct RetentionTable {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    rules: Mutex<HashMap<String, Retention>>,
}

impl RetentionTable {
    /// Loads `retention.tbl` (an absent file is an empty table; an invalid one is corruption:
    /// unlike an index it cannot be rebuilt, and silently keeping everything could surprise).
    pub(crate) fn open(storage: Arc<dyn Storage>, dir: &Path) -> Result<Self> {
        let path = dir.join(RETENTION_FILE);
        let rules = match read_whole(&*storage, &path, FILE_BYTES_MAX) {
            Ok(bytes) => decode(&bytes).map_err(|(offset, reason)| Error::corruption(&path, offset, reason))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(error) => return Err(Error::io("read retention table", &path, error)),
        };
        Ok(RetentionTable { dir: dir.to_path_buf(), storage, rules: Mutex::new(rules) })
    }

    fn rules(&self) -> std::sync::MutexGuard<'_, HashMap<String, Retention>> {
        sync::lock(&self.rules)
    }

    pub(crate) fn get(&self, stream: &str) -> Option<Retention> {
        self.rules().get(stream).copied()
    }

    /// Sets a stream's rule and persists the table durably.
    pub(crate) fn set(&self, stream: &str, retention: Retention) -> Result<()> {
        let mut rules = self.rules();
        let previous = rules.insert(stream.to_owned(), retention);
        if let Err(error) = self.persist(&rules) {
            match previous {
                Some(previous) => rules.insert(stream.to_owned(), previous),
                None => rules.remove(stream),
            };
            return Err(error);
        }
        Ok(())
    }

    fn persist(&self, rules: &HashMap<String, Retention>) -> Result<()> {
        let bytes = encode(rules);
        let path = self.dir.join(RETENTION_FILE);
        let tmp = self.dir.join(format!("{RETENTION_FILE}{}", crate::layout::TMP_SUFFIX));
        write_durable(&*self.storage, &self.dir, &path, &tmp, &bytes)
            .map_err(|e| Error::io("write retention table", &path, e))
    }
}

fn encode(rules: &HashMap<String, Retention>) -> Vec<u8> {
    let mut sorted: Vec<(&String, &Retention)> = rules.iter().collect();
    sorted.sort_unstable_by_key(|(stream, _)| *stream);
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&RETENTION_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
    for (stream, retention) in sorted {
        let (kind, value) = match *retention {
            Retention::KeepAll => (0u8, 0u64),
            Retention::BeforeSnapshot => (1, 0),
            Retention::MaxCount(count) => (2, count),
            Retention::MaxAge(age) => (3, u64::try_from(age.as_micros()).unwrap_or(u64::MAX)),
        };
        out.extend_from_slice(&(stream.len() as u16).to_le_bytes());
        out.push(kind);
        out.push(0);
        out.extend_from_slice(&value.to_le_bytes());
        out.extend_from_slice(stream.as_bytes());
    }
    let crc = crc32_salted(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode(bytes: &[u8]) -> Result<HashMap<String, Retention>, (u64, &'static str)> {
    let le = LeBytes(bytes);
    if le.array::<8>(0) != Some(MAGIC) {
        return Err((0, "bad retention table magic"));
    }
    let body_len = bytes.len().checked_sub(4).ok_or((0, "file is too short"))?;
    if Some(crc32_salted(0, bytes.get(..body_len).unwrap_or_default())) != le.u32(body_len) {
        return Err((body_len as u64, "retention table checksum mismatch"));
    }
    if le.u32(8) != Some(RETENTION_FORMAT_VERSION) {
        return Err((8, "unsupported retention table format"));
    }
    let count = le.u32(12).ok_or((12, "short header"))? as usize;
    let mut rules = HashMap::new();
    let mut at = 16usize;
    for _ in 0..count {
        let bad = (at as u64, "truncated entry");
        let len = usize::from(le.u16(at).ok_or(bad)?);
        let kind = le.u8(at + 2).ok_or(bad)?;
        let value = le.u64(at + 4).ok_or(bad)?;
        let stream = std::str::from_utf8(le.slice(at + 12, len).ok_or(bad)?)
            .map_err(|_| (at as u64, "stream id is not UTF-8"))?;
        let retention = match kind {
            0 => Retention::KeepAll,
            1 => Retention::BeforeSnapshot,
            2 => Retention::MaxCount(value),
            3 => Retention::MaxAge(Duration::from_micros(value)),
            _ => return Err((at as u64 + 2, "unknown retention kind")),
        };
        rules.insert(stream.to_owned(), retention);
        at += 12 + len;
    }
    if at != body_len {
        return Err((at as u64, "entries do not fill the file"));
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut rules = HashMap::new();
        rules.insert("a".to_owned(), Retention::MaxCount(3));
        rules.insert("b".to_owned(), Retention::MaxAge(Duration::from_secs(5)));
        rules.insert("c".to_owned(), Retention::BeforeSnapshot);
        rules.insert("d".to_owned(), Retention::KeepAll);
        let bytes = encode(&rules);
        assert_eq!(decode(&bytes).unwrap(), rules);
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&flipped).is_err());
        }
    }
}
