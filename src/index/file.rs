//! Index files: a sealed segment's index, written once and memory-mapped.
//! Layout (all little-endian; see `segment-format.md` section "Index files"):
//!
//! ```text
//! header (64 bytes)
//!   0  8 magic "CHRNIDX\0"        8 4 format_version   12 4 header_bytes (64)
//!  16  8 segment_id              24 8 covered_bytes    32 8 next_position
//!  40  4 stream_count            44 4 entry_count      48 4 position_count
//!  52  4 names_bytes             56 4 record_count     60 4 crc32 of [0, 60)
//! streams   stream_count x 48 bytes, sorted by (hash, name)
//!   0 8 hash (FNV-1a 64 of the id)   8 8 last_version      16 4 first_entry  20 4 entry_count
//!  24 4 name_offset  28 2 name_len  30 2 flags (bit 0: tombstone)
//!  32 8 tombstone_position          40 4 tombstone_offset  44 4 tombstone_record_bytes
//! entries   entry_count x 24 bytes, grouped by stream, sorted by version
//!   0 8 version  8 8 position  16 4 offset  20 4 record_bytes
//! positions position_count x 12 bytes: every 32nd record's (position u64, offset u32)
//! names     names_bytes of UTF-8
//! trailer   4 bytes: CRC-32 of segment_id (u64 LE) ++ bytes [64, len - 4)
//! ```

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::{IndexEntry, MemIndex, MemStream, stream_hash};
use crate::format::bytes_reader::LeBytes;
use crate::format::{FORMAT_VERSION, crc32_salted};
use crate::storage::{OpenMode, Storage};

const MAGIC: [u8; 8] = *b"CHRNIDX\0";
const HEADER_BYTES: usize = 64;
const STREAM_BYTES: usize = 48;
const ENTRY_BYTES: usize = 24;
const POSITION_BYTES: usize = 12;
const TRAILER_BYTES: usize = 4;
/// One sparse position entry per this many records.
pub(crate) const POSITION_STRIDE: usize = 32;
const FLAG_TOMBSTONE: u16 = 1;

/// Serialises `mem` as the index file of segment `segment_id`, covering its first
/// `covered_bytes` bytes.
pub(crate) fn encode(mem: &MemIndex, segment_id: u64, covered_bytes: u64) -> Vec<u8> {
    let mut streams: Vec<(u64, &Arc<str>, &MemStream)> =
        mem.streams.iter().map(|(name, slot)| (stream_hash(name), name, slot)).collect();
    streams.sort_unstable_by(|a, b| (a.0, &**a.1).cmp(&(b.0, &**b.1)));
    let entry_count: usize = streams.iter().map(|s| s.2.entries.len()).sum();
    let names_bytes: usize = streams.iter().map(|s| s.1.len()).sum();
    let sparse: Vec<(u64, u32)> = mem.positions.iter().step_by(POSITION_STRIDE).copied().collect();
    let next_position = mem.positions.last().map_or(0, |&(p, _)| p + 1);
    let total = HEADER_BYTES
        + streams.len() * STREAM_BYTES
        + entry_count * ENTRY_BYTES
        + sparse.len() * POSITION_BYTES
        + names_bytes
        + TRAILER_BYTES;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
    out.extend_from_slice(&segment_id.to_le_bytes());
    out.extend_from_slice(&covered_bytes.to_le_bytes());
    out.extend_from_slice(&next_position.to_le_bytes());
    for count in [streams.len(), entry_count, sparse.len(), names_bytes, mem.positions.len()] {
        out.extend_from_slice(&(count as u32).to_le_bytes());
    }
    let header_crc = crc32_salted(0, &out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    let mut first_entry = 0u32;
    let mut name_offset = 0u32;
    for (hash, name, slot) in &streams {
        out.extend_from_slice(&hash.to_le_bytes());
        out.extend_from_slice(&slot.entries.last().map_or(0, |e| e.version).to_le_bytes());
        out.extend_from_slice(&first_entry.to_le_bytes());
        out.extend_from_slice(&(slot.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&name_offset.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        let flags = if slot.tombstone.is_some() { FLAG_TOMBSTONE } else { 0 };
        out.extend_from_slice(&flags.to_le_bytes());
        let tombstone = slot.tombstone.unwrap_or(IndexEntry { version: 0, position: 0, offset: 0, record_bytes: 0 });
        out.extend_from_slice(&tombstone.position.to_le_bytes());
        out.extend_from_slice(&tombstone.offset.to_le_bytes());
        out.extend_from_slice(&tombstone.record_bytes.to_le_bytes());
        first_entry += slot.entries.len() as u32;
        name_offset += name.len() as u32;
    }
    for (_, _, slot) in &streams {
        for entry in &slot.entries {
            out.extend_from_slice(&entry.version.to_le_bytes());
            out.extend_from_slice(&entry.position.to_le_bytes());
            out.extend_from_slice(&entry.offset.to_le_bytes());
            out.extend_from_slice(&entry.record_bytes.to_le_bytes());
        }
    }
    for (position, offset) in &sparse {
        out.extend_from_slice(&position.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
    }
    for (_, name, _) in &streams {
        out.extend_from_slice(name.as_bytes());
    }
    let trailer = crc32_salted(segment_id, out.get(HEADER_BYTES..).unwrap_or_default());
    out.extend_from_slice(&trailer.to_le_bytes());
    debug_assert_eq!(out.len(), total);
    out
}

/// Writes an index file: to a temporary name, then renamed over `path`. No fsync: the file
/// is derived data, and a torn or lost one fails its checksum and is rebuilt.
pub(crate) fn write(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("idx.tmp");
    match storage.remove_file(&tmp) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let file = storage.open(&tmp, OpenMode::CreateNew)?;
    file.write_all_at(bytes, 0)?;
    drop(file);
    storage.rename(&tmp, path)
}

/// One stream as an index file describes it.
pub(crate) struct IndexedStream<'a> {
    pub(crate) name: &'a str,
    pub(crate) last_version: Option<u64>,
    pub(crate) tombstone: Option<IndexEntry>,
    first_entry: usize,
    entry_count: usize,
}

/// A validated, memory-mapped index file.
#[derive(Debug)]
pub(crate) struct MappedIndex {
    bytes: Bytes,
    pub(crate) covered_bytes: u64,
    pub(crate) next_position: u64,
    pub(crate) record_count: u64,
    stream_count: usize,
    entry_count: usize,
    position_count: usize,
    streams_at: usize,
    entries_at: usize,
    positions_at: usize,
    names_at: usize,
    names_bytes: usize,
}

impl MappedIndex {
    /// Validates `bytes` as the index of segment `segment_id`; the error names the failed
    /// check. Every count is checked against the file's length before use.
    pub(crate) fn parse(bytes: Bytes, segment_id: u64) -> Result<Self, &'static str> {
        let le = LeBytes(&bytes);
        let header = le.slice(0, HEADER_BYTES).ok_or("shorter than the header")?;
        if le.array::<8>(0) != Some(MAGIC) {
            return Err("bad magic");
        }
        if Some(crc32_salted(0, header.get(..60).unwrap_or_default())) != le.u32(60) {
            return Err("header checksum mismatch");
        }
        if le.u32(8) != Some(FORMAT_VERSION) || le.u32(12) != Some(HEADER_BYTES as u32) {
            return Err("unsupported index format");
        }
        if le.u64(16) != Some(segment_id) {
            return Err("index belongs to another segment");
        }
        let count = |offset| le.u32(offset).map(|v| v as usize).ok_or("short header");
        let (stream_count, entry_count, position_count, names_bytes, record_count) =
            (count(40)?, count(44)?, count(48)?, count(52)?, count(56)?);
        let streams_at = HEADER_BYTES;
        let entries_at = streams_at + stream_count * STREAM_BYTES;
        let positions_at = entries_at + entry_count * ENTRY_BYTES;
        let names_at = positions_at + position_count * POSITION_BYTES;
        let trailer_at = names_at + names_bytes;
        if trailer_at + TRAILER_BYTES != bytes.len() {
            return Err("section sizes do not add up to the file length");
        }
        let body = bytes.get(HEADER_BYTES..trailer_at).ok_or("short file")?;
        if Some(crc32_salted(segment_id, body)) != le.u32(trailer_at) {
            return Err("index checksum mismatch");
        }
        let index = MappedIndex {
            covered_bytes: le.u64(24).ok_or("short header")?,
            next_position: le.u64(32).ok_or("short header")?,
            record_count: record_count as u64,
            stream_count,
            entry_count,
            position_count,
            streams_at,
            entries_at,
            positions_at,
            names_at,
            names_bytes,
            bytes,
        };
        index.check_structure()?;
        Ok(index)
    }

    /// Cross-checks the sections so lookups can trust them (checksums catch accidents, this
    /// catches a well-checksummed file that lies).
    fn check_structure(&self) -> Result<(), &'static str> {
        let mut previous: Option<(u64, &str)> = None;
        let mut expected_first = 0usize;
        for i in 0..self.stream_count {
            let stream = self.stream(i).ok_or("bad stream record")?;
            let hash = stream_hash(stream.name);
            if LeBytes(&self.bytes).u64(self.streams_at + i * STREAM_BYTES) != Some(hash) {
                return Err("stream hash does not match its name");
            }
            if previous.is_some_and(|p| p >= (hash, stream.name)) {
                return Err("streams are not sorted");
            }
            previous = Some((hash, stream.name));
            if stream.first_entry != expected_first {
                return Err("stream entries are not contiguous");
            }
            expected_first += stream.entry_count;
            let mut last: Option<u64> = None;
            for k in stream.first_entry..stream.first_entry + stream.entry_count {
                let entry = self.entry(k).ok_or("entry out of range")?;
                if last.is_some_and(|v| v >= entry.version) {
                    return Err("stream entries are not sorted by version");
                }
                if u64::from(entry.offset) + u64::from(entry.record_bytes) > self.covered_bytes {
                    return Err("entry points past the covered bytes");
                }
                last = Some(entry.version);
            }
            if last != stream.last_version {
                return Err("stream last version does not match its entries");
            }
        }
        if expected_first != self.entry_count {
            return Err("entry count does not match the streams");
        }
        Ok(())
    }

    fn stream(&self, i: usize) -> Option<IndexedStream<'_>> {
        if i >= self.stream_count {
            return None;
        }
        let le = LeBytes(&self.bytes);
        let at = self.streams_at + i * STREAM_BYTES;
        let entry_count = le.u32(at + 20)? as usize;
        let name_offset = le.u32(at + 24)? as usize;
        let name_len = usize::from(le.u16(at + 28)?);
        if name_offset.checked_add(name_len)? > self.names_bytes {
            return None;
        }
        let name = std::str::from_utf8(le.slice(self.names_at + name_offset, name_len)?).ok()?;
        let flags = le.u16(at + 30)?;
        let tombstone = (flags & FLAG_TOMBSTONE != 0).then_some(IndexEntry {
            version: 0,
            position: le.u64(at + 32)?,
            offset: le.u32(at + 40)?,
            record_bytes: le.u32(at + 44)?,
        });
        let first_entry = le.u32(at + 16)? as usize;
        if first_entry.checked_add(entry_count)? > self.entry_count {
            return None;
        }
        Some(IndexedStream {
            name,
            last_version: if entry_count > 0 { Some(le.u64(at + 8)?) } else { None },
            tombstone,
            first_entry,
            entry_count,
        })
    }

    fn entry(&self, k: usize) -> Option<IndexEntry> {
        if k >= self.entry_count {
            return None;
        }
        let le = LeBytes(&self.bytes);
        let at = self.entries_at + k * ENTRY_BYTES;
        Some(IndexEntry {
            version: le.u64(at)?,
            position: le.u64(at + 8)?,
            offset: le.u32(at + 16)?,
            record_bytes: le.u32(at + 20)?,
        })
    }

    fn find_stream(&self, name: &str) -> Option<IndexedStream<'_>> {
        let hash = stream_hash(name);
        let le = LeBytes(&self.bytes);
        let hash_at = |i: usize| le.u64(self.streams_at + i * STREAM_BYTES).unwrap_or(u64::MAX);
        let (mut low, mut high) = (0usize, self.stream_count);
        while low < high {
            let mid = low + (high - low) / 2;
            if hash_at(mid) < hash { low = mid + 1 } else { high = mid }
        }
        (low..self.stream_count)
            .take_while(|&i| hash_at(i) == hash)
            .filter_map(|i| self.stream(i))
            .find(|stream| stream.name == name)
    }

    /// See [`super::SegmentIndex::stream_entries`].
    pub(crate) fn stream_entries(&self, name: &str, from: u64, to: u64, out: &mut Vec<super::IndexEntry>) {
        let Some(stream) = self.find_stream(name) else { return };
        let range = stream.first_entry..stream.first_entry + stream.entry_count;
        let (mut low, mut high) = (range.start, range.end);
        while low < high {
            let mid = low + (high - low) / 2;
            if self.entry(mid).is_some_and(|e| e.version < from) { low = mid + 1 } else { high = mid }
        }
        out.extend((low..range.end).map_while(|k| self.entry(k)).take_while(|e| e.version <= to));
    }

    /// See [`super::SegmentIndex::scan_start`].
    pub(crate) fn scan_start(&self, position: u64) -> Option<u32> {
        let le = LeBytes(&self.bytes);
        let point = |i: usize| {
            let at = self.positions_at + i * POSITION_BYTES;
            Some((le.u64(at)?, le.u32(at + 8)?))
        };
        let (mut low, mut high) = (0usize, self.position_count);
        while low < high {
            let mid = low + (high - low) / 2;
            if point(mid).is_some_and(|(p, _)| p <= position) { low = mid + 1 } else { high = mid }
        }
        low.checked_sub(1).and_then(point).map(|(_, offset)| offset)
    }

    /// Every stream of the segment.
    pub(crate) fn streams(&self) -> impl Iterator<Item = IndexedStream<'_>> {
        (0..self.stream_count).filter_map(|i| self.stream(i))
    }

    /// The index as an in-memory index, to keep appending to (the active segment's checkpoint).
    pub(crate) fn to_mem(&self) -> Option<MemIndex> {
        let mut mem = MemIndex::default();
        // record_count comes from the file: reserve no more than the entries and tombstones it
        // can describe (the count is checked against them below).
        let records_max = self.entry_count.saturating_add(self.stream_count) as u64;
        let mut records: Vec<(u64, u32)> = Vec::with_capacity(self.record_count.min(records_max) as usize);
        for stream in self.streams() {
            let name: Arc<str> = Arc::from(stream.name);
            let mut slot = MemStream::default();
            for k in stream.first_entry..stream.first_entry + stream.entry_count {
                let entry = self.entry(k)?;
                records.push((entry.position, entry.offset));
                slot.entries.push(entry);
            }
            if let Some(tombstone) = stream.tombstone {
                records.push((tombstone.position, tombstone.offset));
                slot.tombstone = Some(tombstone);
            }
            mem.streams.insert(name, slot);
        }
        if records.len() as u64 != self.record_count {
            return None;
        }
        records.sort_unstable();
        mem.positions = records;
        Some(mem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: u64, position: u64) -> IndexEntry {
        IndexEntry { version, position, offset: 64 + position as u32 * 100, record_bytes: 100 }
    }

    fn sample() -> MemIndex {
        let mut mem = MemIndex::default();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        for position in 0..100u64 {
            let stream = if position % 3 == 0 { &a } else { &b };
            let version = mem.streams.get(&**stream).map_or(0, |s| s.entries.len() as u64);
            mem.push(stream, entry(version, position), false);
        }
        mem
    }

    #[test]
    fn round_trip_lookups() {
        let mem = sample();
        let bytes = encode(&mem, 5, 64 + 100 * 100);
        let mapped = MappedIndex::parse(Bytes::from(bytes), 5).unwrap();
        let mut out = Vec::new();
        mapped.stream_entries("a", 2, 4, &mut out);
        assert_eq!(out.iter().map(|e| e.version).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(out[0].position, 6);
        out.clear();
        mapped.stream_entries("missing", 0, u64::MAX, &mut out);
        assert!(out.is_empty());
        assert_eq!(mapped.scan_start(0), Some(64));
        assert_eq!(mapped.scan_start(40), Some(64 + 32 * 100));
        assert_eq!(mapped.next_position, 100);
        let back = mapped.to_mem().unwrap();
        assert_eq!(back.positions, mem.positions);
    }

    #[test]
    fn every_bit_flip_is_rejected() {
        let bytes = encode(&sample(), 5, 64 + 100 * 100);
        for bit in (0..bytes.len() * 8).step_by(7) {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(MappedIndex::parse(Bytes::from(flipped), 5).is_err(), "bit {bit}");
        }
        assert!(MappedIndex::parse(Bytes::from(bytes), 6).is_err());
    }
}
