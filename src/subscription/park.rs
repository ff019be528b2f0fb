//! Parked events of a durable consumer: events its handler gave up on, kept with the
//! reason in `consumer-{name}.park`, listed and handed back later (`Store::unpark`). A
//! parked event no longer holds the checkpoint back: the consumer acknowledges past it.
//!
//! ```text
//! off  size  field
//!   0     8  magic "CHRNPARK"
//!   8     4  format_version 1
//!  12     4  entry_count
//!  16        entries: position u64, parked_at_us u64, stream_len u16, reason_len u16,
//!            stream id, reason (UTF-8), sorted by position
//! end-4   4  crc32 of every byte before it
//! ```
//! Rewritten whole on each change: temporary file, fsync, rename, directory fsync.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::format::bytes_reader::LeBytes;
use crate::format::crc32_salted;
use crate::layout::TMP_SUFFIX;
use crate::options::STREAM_ID_BYTES_MAX;
use crate::storage::{Storage, read_whole, write_durable};

/// The longest reason for parking an event, in bytes.
pub const PARK_REASON_BYTES_MAX: usize = 1024;
/// The most events one consumer may have parked at a time.
pub const PARKED_EVENTS_MAX: usize = 10_000;
const MAGIC: [u8; 8] = *b"CHRNPARK";
/// Version of the parked-events layout above; 1 uses CRC-32 (IEEE).
pub(crate) const PARK_FORMAT_VERSION: u32 = 1;
const ENTRY_HEADER_BYTES: usize = 20;
const FILE_BYTES_MAX: u64 =
    (16 + PARKED_EVENTS_MAX * (ENTRY_HEADER_BYTES + STREAM_ID_BYTES_MAX + PARK_REASON_BYTES_MAX) + 4) as u64;

/// An event a durable consumer parked ([`Subscription::park`](crate::Subscription::park)),
/// from [`Store::parked_events`](crate::Store::parked_events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEvent {
    /// The event's global position.
    pub position: u64,
    /// Its stream.
    pub stream_id: String,
    /// Why the handler parked it.
    pub reason: String,
    /// When it was parked (microsecond resolution).
    pub parked_at: SystemTime,
}

fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("consumer-{name}.park"))
}

fn micros(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

pub(crate) fn encode(parked: &[ParkedEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PARK_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(parked.len() as u32).to_le_bytes());
    for p in parked {
        out.extend_from_slice(&p.position.to_le_bytes());
        out.extend_from_slice(&micros(p.parked_at).to_le_bytes());
        out.extend_from_slice(&(p.stream_id.len() as u16).to_le_bytes());
        out.extend_from_slice(&(p.reason.len() as u16).to_le_bytes());
        out.extend_from_slice(p.stream_id.as_bytes());
        out.extend_from_slice(p.reason.as_bytes());
    }
    let crc = crc32_salted(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<Vec<ParkedEvent>, (u64, &'static str)> {
    let le = LeBytes(bytes);
    if le.array::<8>(0) != Some(MAGIC) {
        return Err((0, "bad parked-events magic"));
    }
    let body_len = bytes.len().checked_sub(4).filter(|&n| n >= 16).ok_or((0, "file is too short"))?;
    if Some(crc32_salted(0, bytes.get(..body_len).unwrap_or_default())) != le.u32(body_len) {
        return Err((body_len as u64, "parked-events checksum mismatch"));
    }
    if le.u32(8) != Some(PARK_FORMAT_VERSION) {
        return Err((8, "unsupported parked-events format"));
    }
    let count = le.u32(12).ok_or((12, "short header"))? as usize;
    if count > PARKED_EVENTS_MAX {
        return Err((12, "more parked events than the limit"));
    }
    let mut out = Vec::with_capacity(count);
    let mut at = 16usize;
    for _ in 0..count {
        let bad = (at as u64, "truncated entry");
        let position = le.u64(at).ok_or(bad)?;
        let parked_us = le.u64(at + 8).ok_or(bad)?;
        let stream_len = usize::from(le.u16(at + 16).ok_or(bad)?);
        let reason_len = usize::from(le.u16(at + 18).ok_or(bad)?);
        let text = |from: usize, len: usize| {
            std::str::from_utf8(le.slice(from, len).ok_or(bad)?)
                .map(str::to_owned)
                .map_err(|_| (from as u64, "not UTF-8"))
        };
        let stream_id = text(at + ENTRY_HEADER_BYTES, stream_len)?;
        let reason = text(at + ENTRY_HEADER_BYTES + stream_len, reason_len)?;
        out.push(ParkedEvent {
            position,
            stream_id,
            reason,
            parked_at: SystemTime::UNIX_EPOCH + Duration::from_micros(parked_us),
        });
        at += ENTRY_HEADER_BYTES + stream_len + reason_len;
    }
    if at != body_len {
        return Err((at as u64, "entries do not fill the file"));
    }
    Ok(out)
}

/// Consumer `name`'s parked events, by position (none if it has no file).
///
/// # Errors
/// [`Error::Corruption`] for a damaged file, [`Error::Io`].
pub(crate) fn read(storage: &dyn Storage, dir: &Path, name: &str) -> Result<Vec<ParkedEvent>> {
    let path = path_of(dir, name);
    match read_whole(storage, &path, FILE_BYTES_MAX) {
        Ok(bytes) => decode(&bytes).map_err(|(offset, reason)| Error::corruption(&path, offset, reason)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(Error::io("read parked events", &path, error)),
    }
}

/// Replaces consumer `name`'s parked events durably (an empty list removes the file).
///
/// # Errors
/// [`Error::Io`]; the previous file is then still in place.
pub(crate) fn write(storage: &dyn Storage, dir: &Path, name: &str, parked: &[ParkedEvent]) -> Result<()> {
    let path = path_of(dir, name);
    if parked.is_empty() {
        return remove(storage, dir, name);
    }
    let tmp = dir.join(format!("consumer-{name}.park{TMP_SUFFIX}"));
    write_durable(storage, dir, &path, &tmp, &encode(parked)).map_err(|e| Error::io("write parked events", &path, e))
}

/// Removes consumer `name`'s parked events (absent is fine).
///
/// # Errors
/// [`Error::Io`].
pub(crate) fn remove(storage: &dyn Storage, dir: &Path, name: &str) -> Result<()> {
    let path = path_of(dir, name);
    match storage.remove_file(&path) {
        Ok(()) => storage.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Error::io("remove parked events", &path, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_bit_flip_detected() {
        let parked = vec![
            ParkedEvent {
                position: 7,
                stream_id: "order-1".into(),
                reason: "timeout".into(),
                parked_at: SystemTime::UNIX_EPOCH + Duration::from_micros(5),
            },
            ParkedEvent {
                position: 9,
                stream_id: "x".into(),
                reason: String::new(),
                parked_at: SystemTime::UNIX_EPOCH,
            },
        ];
        let bytes = encode(&parked);
        assert_eq!(decode(&bytes).unwrap(), parked);
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&flipped).is_err());
        }
    }
}
