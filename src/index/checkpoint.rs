//! The stream-table checkpoint: the whole stream table as of a clean close (or every 8th
//! segment roll), so that the next open reads one file instead of the stream section of
//! every segment's index (which costs streams × segments when streams span many segments).
//!
//! Like index files it is derived data, written without fsync: a missing, damaged or stale
//! checkpoint is ignored and the table is rebuilt from the index files. It names the
//! segments it summarises; the open uses it only when the directory holds exactly those
//! segments, with the same lengths, except that the last of them may have grown (appends
//! after the close that wrote it, and then possibly a crash). Segments are append-only and
//! never reuse an id for other content, so equal (id, base position, creation time, length)
//! means equal records. Layout (little-endian; `segment-format.md` §4.4):
//!
//! ```text
//! header   0 8 magic "CHRNSTB\0"  8 4 format_version (1)  12 4 segment_count  16 4 stream_count
//! segments segment_count x 32 bytes: id u64, base_position u64, created_unix_ms u64, length u64
//! streams  stream_count records: name_len u16, flags u8 (bit 0: deleted, bit 1: has events),
//!          last_version u64, name (UTF-8); written sorted by (FNV-1a hash, name), read in any order
//! trailer  4 bytes: CRC-32 (salt 0) of everything before it
//! ```

use std::path::Path;
use std::sync::Arc;

use super::stream_hash;
use super::streams::{StreamState, StreamTable};
use crate::format::bytes_reader::LeBytes;
use crate::format::crc32_salted;
use crate::format::segment_header::SegmentHeader;
use crate::layout::TMP_SUFFIX;
use crate::storage::{Storage, read_whole};

/// File name of the checkpoint in the store directory.
pub(crate) const CHECKPOINT_FILE: &str = "streams.chk";
const MAGIC: [u8; 8] = *b"CHRNSTB\0";
/// Version of the stream-table checkpoint layout (segment-format.md §4.4).
pub(crate) const CHECKPOINT_FORMAT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 20;
const SEGMENT_BYTES: usize = 32;
const STREAM_FIXED_BYTES: usize = 11;
const FLAG_DELETED: u8 = 1;
const FLAG_HAS_EVENTS: u8 = 2;
/// Largest checkpoint read: a stream table of this size would not fit the memory it
/// describes anyway (and the fallback, the index files, still works).
const CHECKPOINT_BYTES_MAX: u64 = 1 << 32;

/// What identifies a segment's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentKey {
    pub(crate) id: u64,
    pub(crate) base_position: u64,
    pub(crate) created_unix_ms: u64,
    pub(crate) len: u64,
}

impl SegmentKey {
    /// What identifies `header`'s segment at `len` bytes, for the stream-table checkpoint.
    pub(crate) fn of(header: &SegmentHeader, len: u64) -> SegmentKey {
        SegmentKey {
            id: header.segment_id,
            base_position: header.base_position,
            created_unix_ms: header.created_unix_ms,
            len,
        }
    }
}

/// A loaded checkpoint.
#[derive(Debug)]
pub(crate) struct Checkpoint {
    pub(crate) segments: Vec<SegmentKey>,
    pub(crate) streams: StreamTable,
}

impl Checkpoint {
    /// How many leading segments of `found` the checkpoint covers, if it applies to them:
    /// all but its last segment identical, its last one the same segment, at least as long.
    /// The caller must still merge that last segment (and every later one) itself.
    pub(crate) fn covers(&self, found: &[SegmentKey]) -> Option<usize> {
        let (last, earlier) = self.segments.split_last()?;
        let same_segment = |a: &SegmentKey, b: &SegmentKey| {
            (a.id, a.base_position, a.created_unix_ms) == (b.id, b.base_position, b.created_unix_ms)
        };
        let earlier_match = earlier.iter().zip(found).all(|(a, b)| a == b) && found.len() > earlier.len();
        let grown = found.get(earlier.len()).is_some_and(|f| same_segment(f, last) && f.len >= last.len);
        (earlier_match && grown).then_some(self.segments.len())
    }
}

/// Serialises the checkpoint.
pub(crate) fn encode(segments: &[SegmentKey], streams: &StreamTable) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        HEADER_BYTES
            + segments.len() * SEGMENT_BYTES
            + streams.keys().map(|name| STREAM_FIXED_BYTES + name.len()).sum::<usize>()
            + 4,
    );
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(segments.len() as u32).to_le_bytes());
    out.extend_from_slice(&(streams.len() as u32).to_le_bytes());
    for key in segments {
        for field in [key.id, key.base_position, key.created_unix_ms, key.len] {
            out.extend_from_slice(&field.to_le_bytes());
        }
    }
    // In the order of index files' stream tables (hash, then name): an open after a crash
    // merges those tables in that order into the table decoded from this file, and the
    // decoded names then lie in memory in that order too, so the merge reads them one after
    // another instead of each from a random place (a cache miss per stream). Readers accept
    // any order.
    let mut sorted: Vec<(u64, &Arc<str>, &StreamState)> =
        streams.iter().map(|(name, state)| (stream_hash(name), name, state)).collect();
    sorted.sort_unstable_by(|a, b| (a.0, &**a.1).cmp(&(b.0, &**b.1)));
    for (_, name, state) in sorted {
        // Stream ids are at most STREAM_ID_BYTES_MAX (1 KiB) long: they fit the u16.
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        let mut flags = 0u8;
        if state.deleted {
            flags |= FLAG_DELETED;
        }
        if state.last_version.is_some() {
            flags |= FLAG_HAS_EVENTS;
        }
        out.push(flags);
        out.extend_from_slice(&state.last_version.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    let crc = crc32_salted(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Parses a checkpoint; the error names the failed check.
pub(crate) fn decode(bytes: &[u8]) -> Result<Checkpoint, &'static str> {
    let body_len = bytes.len().checked_sub(4).ok_or("shorter than its checksum")?;
    let le = LeBytes(bytes);
    if Some(crc32_salted(0, bytes.get(..body_len).unwrap_or_default())) != le.u32(body_len) {
        return Err("checksum mismatch");
    }
    if le.array::<8>(0) != Some(MAGIC) || le.u32(8) != Some(CHECKPOINT_FORMAT_VERSION) {
        return Err("not a stream-table checkpoint of this version");
    }
    let segment_count = le.u32(12).ok_or("short header")? as usize;
    let stream_count = le.u32(16).ok_or("short header")? as usize;
    // Counts are bounded by the bytes that hold them before anything is reserved.
    if segment_count.saturating_mul(SEGMENT_BYTES).saturating_add(HEADER_BYTES) > body_len
        || stream_count.saturating_mul(STREAM_FIXED_BYTES) > body_len
    {
        return Err("counts exceed the file");
    }
    let mut at = HEADER_BYTES;
    let mut segments = Vec::with_capacity(segment_count);
    for _ in 0..segment_count {
        let field = |i: usize| le.u64(at + 8 * i).ok_or("short segment list");
        segments.push(SegmentKey {
            id: field(0)?,
            base_position: field(1)?,
            created_unix_ms: field(2)?,
            len: field(3)?,
        });
        at += SEGMENT_BYTES;
    }
    let mut streams = StreamTable::with_capacity(stream_count);
    for _ in 0..stream_count {
        let name_len = usize::from(le.u16(at).ok_or("short stream record")?);
        let flags = *bytes.get(at + 2).ok_or("short stream record")?;
        let last_version = le.u64(at + 3).ok_or("short stream record")?;
        let name = le.slice(at + STREAM_FIXED_BYTES, name_len).ok_or("short stream name")?;
        let name = std::str::from_utf8(name).map_err(|_| "stream name is not UTF-8")?;
        let state = StreamState {
            last_version: (flags & FLAG_HAS_EVENTS != 0).then_some(last_version),
            deleted: flags & FLAG_DELETED != 0,
        };
        if streams.insert(Arc::from(name), state).is_some() {
            return Err("a stream appears twice");
        }
        at += STREAM_FIXED_BYTES + name_len;
    }
    if at != body_len {
        return Err("bytes after the last stream");
    }
    Ok(Checkpoint { segments, streams })
}

/// Loads the checkpoint of `dir`, if there is a valid one.
pub(crate) fn load(storage: &dyn Storage, dir: &Path) -> Option<Checkpoint> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = match read_whole(storage, &path, CHECKPOINT_BYTES_MAX) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the stream-table checkpoint; rebuilding");
            return None;
        }
    };
    decode(&bytes)
        .inspect_err(|reason| {
            tracing::warn!(path = %path.display(), reason, "ignoring an invalid stream-table checkpoint");
        })
        .ok()
}

/// Writes the checkpoint of `dir`: to a temporary file, renamed over the old one. No fsync:
/// a lost or torn checkpoint is ignored by the next open.
pub(crate) fn write(storage: &dyn Storage, dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{CHECKPOINT_FILE}{TMP_SUFFIX}"));
    crate::storage::write_derived(storage, &dir.join(CHECKPOINT_FILE), &tmp, bytes)
}

/// Recomputes the checkpoint's checksum in place (for the fuzz targets).
#[cfg(any(test, feature = "__internal"))]
pub(crate) fn reseal(bytes: &mut [u8]) {
    let Some(body_len) = bytes.len().checked_sub(4) else { return };
    let crc = crc32_salted(0, bytes.get(..body_len).unwrap_or_default());
    if let Some(field) = bytes.get_mut(body_len..) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u64, len: u64) -> SegmentKey {
        SegmentKey { id, base_position: id * 10, created_unix_ms: 7, len }
    }

    fn sample() -> (Vec<SegmentKey>, StreamTable) {
        let mut streams = StreamTable::new();
        streams.insert(Arc::from("a"), StreamState { last_version: Some(3), deleted: false });
        streams.insert(Arc::from("gone"), StreamState { last_version: Some(0), deleted: true });
        streams.insert(Arc::from("empty-deleted"), StreamState { last_version: None, deleted: true });
        (vec![key(1, 100), key(2, 80)], streams)
    }

    #[test]
    fn round_trip() {
        let (segments, streams) = sample();
        let decoded = decode(&encode(&segments, &streams)).unwrap();
        assert_eq!(decoded.segments, segments);
        assert_eq!(decoded.streams, streams);
    }

    #[test]
    fn streams_are_written_in_the_order_of_index_files() {
        let mut streams = StreamTable::new();
        for i in 0..500 {
            streams.insert(Arc::from(format!("stream-{i:06}")), StreamState { last_version: Some(i), deleted: false });
        }
        let bytes = encode(&[key(1, 100)], &streams);
        let le = LeBytes(&bytes);
        let mut at = HEADER_BYTES + SEGMENT_BYTES;
        let mut keys = Vec::new();
        while at + 4 < bytes.len() {
            let name_len = usize::from(le.u16(at).unwrap());
            let name = std::str::from_utf8(le.slice(at + STREAM_FIXED_BYTES, name_len).unwrap()).unwrap();
            keys.push((stream_hash(name), name.to_owned()));
            at += STREAM_FIXED_BYTES + name_len;
        }
        assert_eq!(keys.len(), 500);
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "not sorted by (hash, name)");
        assert_eq!(decode(&bytes).unwrap().streams, streams);
    }

    #[test]
    fn every_bit_flip_is_rejected() {
        let (segments, streams) = sample();
        let bytes = encode(&segments, &streams);
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&flipped).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn covers_only_the_same_segments_with_the_last_one_grown() {
        let (segments, streams) = sample();
        let checkpoint = Checkpoint { segments, streams };
        assert_eq!(checkpoint.covers(&[key(1, 100), key(2, 80)]), Some(2));
        assert_eq!(checkpoint.covers(&[key(1, 100), key(2, 95), key(3, 64)]), Some(2));
        assert_eq!(checkpoint.covers(&[key(1, 100), key(2, 79)]), None, "last one shrank");
        assert_eq!(checkpoint.covers(&[key(1, 101), key(2, 80)]), None, "a sealed one changed");
        assert_eq!(checkpoint.covers(&[key(5, 100), key(2, 80)]), None, "compaction replaced one");
        assert_eq!(checkpoint.covers(&[key(1, 100)]), None, "a segment is missing");
        let other_creation = SegmentKey { created_unix_ms: 8, ..key(2, 80) };
        assert_eq!(checkpoint.covers(&[key(1, 100), other_creation]), None, "same id, other segment");
        assert_eq!(Checkpoint { segments: Vec::new(), streams: StreamTable::new() }.covers(&[key(1, 1)]), None);
    }
}
