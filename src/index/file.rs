//! Index files: a sealed segment's index, written once and memory-mapped.
//! Layout (all little-endian; see `segment-format.md` section "Index files"):
//!
//! ```text
//! header (64 bytes)
//!   0  8 magic "CHRNIDX\0"        8 4 format_version (4)  12 4 header_bytes (64)
//!  16  8 segment_id              24 8 covered_bytes    32 8 next_position
//!  40  4 stream_count            44 4 entry_count      48 4 position_count
//!  52  4 names_bytes             56 4 record_count     60 4 crc32 of [0, 60)
//! streams   stream_count x 56 bytes, sorted by (hash, name)
//!   0 8 hash (FNV-1a 64 of the id)   8 8 last_version      16 4 first_entry  20 4 entry_count
//!  24 4 name_offset  28 2 name_len  30 2 flags (bit 0: tombstone)
//!  32 8 tombstone_position          40 4 tombstone_offset  44 4 tombstone_record_bytes
//!  48 4 entries_crc: CRC-32 of this stream's entries
//!  52 4 stream_crc: CRC-32 of bytes [0, 52) of this record ++ the stream's name
//! entries   entry_count x 24 bytes, grouped by stream, sorted by version
//!   0 8 version  8 8 position  16 4 offset  20 4 record_bytes
//! positions position_count x 12 bytes: every 32nd record's (position u64, offset u32)
//! names     names_bytes of UTF-8
//! trailer   4 bytes: CRC-32 of the positions section
//! types     16 bytes: type_count u32, type_entry_count u32, type_names_bytes u32,
//!           crc32 of every byte of the section after these 16; then type_count x 16 bytes
//!           (first_entry u32, entry_count u32, name_offset u32, name_len u32) sorted by name;
//!           type_entry_count x 4 bytes (version 4: the number of the event's entry in the
//!           entries section), grouped by type, sorted by position; type_names_bytes of UTF-8
//! ```
//!
//! Every checksum is salted with the segment id. Each part is verified when it is first
//! used, not when the file is opened: opening a store touches only the headers, and a lookup
//! touches the stream records its binary search reads plus the one stream's entries. So
//! neither open time nor memory grows with the number of events (see
//! `segment-format.md` §4.3 for why a lookup that verifies only what it reads still finds
//! every damage that could change its answer).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::{IndexEntry, MemIndex, MemStream, stream_hash, versions_in};
use crate::format::bytes_reader::LeBytes;
use crate::format::crc32_salted;
use crate::storage::Storage;

const MAGIC: [u8; 8] = *b"CHRNIDX\0";
/// Version 1 had one checksum over the whole body, verified at open; version 2 checksums each
/// part so it can be verified on use; version 3 adds the event-type section (filtered reads
/// by event type); version 4 stores a type entry as the number of the event's stream entry
/// (4 bytes) instead of a copy of its position, offset and length (16 bytes). A file of an
/// older version is rebuilt like a damaged one.
pub(crate) const INDEX_FORMAT_VERSION: u32 = 4;
const TYPE_SECTION_HEADER_BYTES: usize = 16;
const TYPE_BYTES: usize = 16;
/// A type entry: the number (u32) of the event's entry in the entries section.
const TYPE_ENTRY_BYTES: usize = 4;
const HEADER_BYTES: usize = 64;
const STREAM_BYTES: usize = 56;
/// Bytes of a stream record covered by its own checksum (all but the checksum).
const STREAM_CHECKED_BYTES: usize = 52;
const ENTRY_BYTES: usize = 24;
const POSITION_BYTES: usize = 12;
const TRAILER_BYTES: usize = 4;
/// One sparse position entry per this many records.
pub(crate) const POSITION_STRIDE: usize = 32;
const FLAG_TOMBSTONE: u16 = 1;

/// What is wrong with an index file; the index is then rebuilt from its segment.
pub(crate) type Damage = &'static str;

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
    out.extend_from_slice(&INDEX_FORMAT_VERSION.to_le_bytes());
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
    let mut entry_bytes = Vec::new();
    for (hash, name, slot) in &streams {
        let record_start = out.len();
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
        entry_bytes.clear();
        for entry in &slot.entries {
            encode_entry(&mut entry_bytes, entry);
        }
        out.extend_from_slice(&crc32_salted(segment_id, &entry_bytes).to_le_bytes());
        let stream_crc = stream_record_crc(segment_id, out.get(record_start..).unwrap_or_default(), name.as_bytes());
        out.extend_from_slice(&stream_crc.to_le_bytes());
        first_entry += slot.entries.len() as u32;
        name_offset += name.len() as u32;
    }
    for (_, _, slot) in &streams {
        for entry in &slot.entries {
            encode_entry(&mut out, entry);
        }
    }
    let positions_at = out.len();
    for (position, offset) in &sparse {
        out.extend_from_slice(&position.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
    }
    let positions_crc = crc32_salted(segment_id, out.get(positions_at..).unwrap_or_default());
    for (_, name, _) in &streams {
        out.extend_from_slice(name.as_bytes());
    }
    out.extend_from_slice(&positions_crc.to_le_bytes());
    debug_assert_eq!(out.len(), total);
    // Each event's entry number in the entries section, by position: what type entries hold.
    let mut entry_numbers: Vec<(u64, u32)> =
        streams.iter().flat_map(|s| &s.2.entries).map(|e| e.position).zip(0u32..).collect();
    entry_numbers.sort_unstable();
    encode_types(mem, segment_id, &entry_numbers, &mut out);
    out
}

/// Appends the event-type section; `entry_numbers` maps each event's position to the number
/// of its entry in the entries section, sorted by position.
fn encode_types(mem: &MemIndex, segment_id: u64, entry_numbers: &[(u64, u32)], out: &mut Vec<u8>) {
    let mut types: Vec<(&Arc<str>, &Vec<IndexEntry>)> = mem.types.iter().collect();
    types.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let entry_count: usize = types.iter().map(|t| t.1.len()).sum();
    let names_bytes: usize = types.iter().map(|t| t.0.len()).sum();
    let mut section = Vec::with_capacity(types.len() * TYPE_BYTES + entry_count * TYPE_ENTRY_BYTES + names_bytes);
    let (mut first_entry, mut name_offset) = (0u32, 0u32);
    for (name, list) in &types {
        for value in [first_entry, list.len() as u32, name_offset, name.len() as u32] {
            section.extend_from_slice(&value.to_le_bytes());
        }
        first_entry += list.len() as u32;
        name_offset += name.len() as u32;
    }
    for (_, list) in &types {
        for entry in list.iter() {
            // Every event has a stream entry; were one missing, u32::MAX fails the check on
            // use and the index is rebuilt from its segment rather than trusted.
            let number = entry_numbers
                .binary_search_by_key(&entry.position, |&(position, _)| position)
                .map_or(u32::MAX, |i| entry_numbers[i].1);
            section.extend_from_slice(&number.to_le_bytes());
        }
    }
    for (name, _) in &types {
        section.extend_from_slice(name.as_bytes());
    }
    for value in [types.len(), entry_count, names_bytes] {
        out.extend_from_slice(&(value as u32).to_le_bytes());
    }
    out.extend_from_slice(&crc32_salted(segment_id, &section).to_le_bytes());
    out.extend_from_slice(&section);
}

fn encode_entry(out: &mut Vec<u8>, entry: &IndexEntry) {
    out.extend_from_slice(&entry.version.to_le_bytes());
    out.extend_from_slice(&entry.position.to_le_bytes());
    out.extend_from_slice(&entry.offset.to_le_bytes());
    out.extend_from_slice(&entry.record_bytes.to_le_bytes());
}

/// The checksum of a stream record: its first 52 bytes, then its name.
fn stream_record_crc(segment_id: u64, record: &[u8], name: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&segment_id.to_le_bytes());
    hasher.update(record.get(..STREAM_CHECKED_BYTES).unwrap_or(record));
    hasher.update(name);
    hasher.finalize()
}

/// Writes an index file: to a temporary name, then renamed over `path`. No fsync: the file
/// is derived data, and a torn or lost one fails its checksum and is rebuilt.
pub(crate) fn write(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::storage::write_derived(storage, path, &path.with_extension("idx.tmp"), bytes)
}

/// Opens the index file at `path`, maps it whole, closes it again (the map outlives the
/// descriptor, so a loaded index holds none) and validates its header as the index of
/// segment `segment_id`. The outer error is the file system's, the inner one the damage.
pub(crate) fn load(
    storage: &dyn Storage,
    path: &Path,
    segment_id: u64,
) -> std::io::Result<Result<MappedIndex, Damage>> {
    let file = storage.open(path, crate::storage::OpenMode::Read)?;
    let len = file.len()?;
    // SAFETY: the map covers exactly the file's length, and index files are never written
    // again once in place: `write` fills a temporary file and renames it over the old name,
    // so a rebuild makes a new file and leaves this one's bytes as they are (removing an
    // index file only unlinks it). Nothing truncates an index file.
    #[allow(unsafe_code)]
    let bytes = unsafe { file.map(len)? };
    Ok(MappedIndex::parse(bytes, segment_id))
}

/// What an index file's header says about its segment: all that opening a store needs of
/// a sealed segment whose streams the stream-table checkpoint already counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexSummary {
    pub(crate) covered_bytes: u64,
    pub(crate) next_position: u64,
    pub(crate) record_count: u64,
}

struct Header {
    summary: IndexSummary,
    stream_count: usize,
    entry_count: usize,
    position_count: usize,
    names_bytes: usize,
}

/// Validates `header` (the first bytes of an index file of `file_len` bytes) as the header
/// of segment `segment_id`'s index: see [`MappedIndex::parse`].
fn parse_header(header: &[u8], file_len: usize, segment_id: u64) -> Result<Header, Damage> {
    let le = LeBytes(header);
    let header = le.slice(0, HEADER_BYTES).ok_or("shorter than the header")?;
    if le.array::<8>(0) != Some(MAGIC) {
        return Err("bad magic");
    }
    if Some(crc32_salted(0, header.get(..60).unwrap_or_default())) != le.u32(60) {
        return Err("header checksum mismatch");
    }
    if le.u32(8) != Some(INDEX_FORMAT_VERSION) || le.u32(12) != Some(HEADER_BYTES as u32) {
        return Err("unsupported index format");
    }
    if le.u64(16) != Some(segment_id) {
        return Err("index belongs to another segment");
    }
    let count = |offset| le.u32(offset).map(|v| v as usize).ok_or("short header");
    let (stream_count, entry_count, position_count, names_bytes, record_count) =
        (count(40)?, count(44)?, count(48)?, count(52)?, count(56)?);
    // u32 counts times small record sizes cannot overflow a 64-bit usize.
    let sections = stream_count * STREAM_BYTES + entry_count * ENTRY_BYTES + position_count * POSITION_BYTES;
    // The type section's own header says how long it is; `MappedIndex::parse` checks it.
    if HEADER_BYTES + sections + names_bytes + TRAILER_BYTES + TYPE_SECTION_HEADER_BYTES > file_len {
        return Err("section sizes do not add up to the file length");
    }
    if entry_count.saturating_add(stream_count) < record_count {
        return Err("more records than entries and tombstones");
    }
    let summary = IndexSummary {
        covered_bytes: le.u64(24).ok_or("short header")?,
        next_position: le.u64(32).ok_or("short header")?,
        record_count: record_count as u64,
    };
    Ok(Header { summary, stream_count, entry_count, position_count, names_bytes })
}

/// Reads and validates only the header of the index file at `path` (one small read, no
/// map): what open needs of a sealed segment whose streams it need not merge. The outer
/// error is the file system's, the inner one the damage.
pub(crate) fn read_summary(
    storage: &dyn Storage,
    path: &Path,
    segment_id: u64,
) -> std::io::Result<Result<IndexSummary, Damage>> {
    let file = storage.open(path, crate::storage::OpenMode::Read)?;
    let len = file.len()?;
    let Ok(file_len) = usize::try_from(len) else { return Ok(Err("index file is too large")) };
    if file_len < HEADER_BYTES {
        return Ok(Err("shorter than the header"));
    }
    let mut header = [0u8; HEADER_BYTES];
    file.read_exact_at(&mut header, 0)?;
    Ok(parse_header(&header, file_len, segment_id).map(|header| header.summary))
}

/// One stream as an index file describes it (its record verified).
pub(crate) struct IndexedStream<'a> {
    /// Its record's number in the stream section.
    index: usize,
    pub(crate) name: &'a str,
    hash: u64,
    pub(crate) last_version: Option<u64>,
    pub(crate) tombstone: Option<IndexEntry>,
    first_entry: usize,
    entry_count: usize,
    entries_crc: u32,
}

impl IndexedStream<'_> {
    /// The stream id's hash ([`stream_hash`]), the first key of the table's order.
    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }
}

/// A memory-mapped index file whose header is valid; every other part is verified on use.
#[derive(Debug)]
pub(crate) struct MappedIndex {
    bytes: Bytes,
    segment_id: u64,
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
    /// Whether the positions section matches its checksum, once first needed.
    positions_valid: OnceLock<bool>,
    /// The event-type section: offsets of its type records, entries and names.
    types_at: usize,
    type_count: usize,
    type_entries_at: usize,
    type_entry_count: usize,
    type_names_at: usize,
    type_names_bytes: usize,
    /// Whether the type section matches its checksum, once first needed.
    types_valid: OnceLock<bool>,
    /// Whether every stream record and entry run (what type entries name) passed its
    /// checks, once a type entry is first read.
    type_targets_valid: OnceLock<bool>,
    /// Which stream records and entry runs have been verified: each is checked once, so a
    /// repeated lookup costs what it would with no checksum at all.
    verified: OnceLock<Verified>,
}

/// One bit per stream record, one per stream's entry run.
#[derive(Debug)]
struct Verified {
    records: Box<[AtomicU64]>,
    entries: Box<[AtomicU64]>,
}

impl Verified {
    fn new(stream_count: usize) -> Self {
        let words = || (0..stream_count.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Verified { records: words(), entries: words() }
    }

    fn is_set(bits: &[AtomicU64], i: usize) -> bool {
        bits.get(i / 64).is_some_and(|word| word.load(Ordering::Relaxed) & (1 << (i % 64)) != 0)
    }

    fn set(bits: &[AtomicU64], i: usize) {
        if let Some(word) = bits.get(i / 64) {
            word.fetch_or(1 << (i % 64), Ordering::Relaxed);
        }
    }
}

impl MappedIndex {
    /// Validates the header of `bytes` as the index of segment `segment_id`: magic,
    /// checksum, version, segment id, and section sizes that add up to the file's length.
    /// The error names the failed check. Nothing past the header is read.
    pub(crate) fn parse(bytes: Bytes, segment_id: u64) -> Result<Self, Damage> {
        let header = parse_header(bytes.get(..HEADER_BYTES).unwrap_or(&bytes), bytes.len(), segment_id)?;
        let streams_at = HEADER_BYTES;
        let entries_at = streams_at + header.stream_count * STREAM_BYTES;
        let positions_at = entries_at + header.entry_count * ENTRY_BYTES;
        let names_at = positions_at + header.position_count * POSITION_BYTES;
        let section_at = names_at + header.names_bytes + TRAILER_BYTES;
        let le = LeBytes(&bytes);
        let count = |offset| le.u32(offset).map(|v| v as usize).ok_or("short type section");
        let (type_count, type_entry_count, type_names_bytes) =
            (count(section_at)?, count(section_at + 4)?, count(section_at + 8)?);
        let types_at = section_at + TYPE_SECTION_HEADER_BYTES;
        let type_entries_at = types_at + type_count * TYPE_BYTES;
        let type_names_at = type_entries_at + type_entry_count * TYPE_ENTRY_BYTES;
        if type_names_at + type_names_bytes != bytes.len() {
            return Err("type section sizes do not add up to the file length");
        }
        Ok(MappedIndex {
            types_at,
            type_count,
            type_entries_at,
            type_entry_count,
            type_names_at,
            type_names_bytes,
            types_valid: OnceLock::new(),
            type_targets_valid: OnceLock::new(),
            segment_id,
            covered_bytes: header.summary.covered_bytes,
            next_position: header.summary.next_position,
            record_count: header.summary.record_count,
            stream_count: header.stream_count,
            entry_count: header.entry_count,
            position_count: header.position_count,
            streams_at,
            entries_at,
            positions_at,
            names_at,
            names_bytes: header.names_bytes,
            bytes,
            positions_valid: OnceLock::new(),
            verified: OnceLock::new(),
        })
    }

    /// The header fields open needs.
    pub(crate) fn summary(&self) -> IndexSummary {
        IndexSummary {
            covered_bytes: self.covered_bytes,
            next_position: self.next_position,
            record_count: self.record_count,
        }
    }

    /// Stream record `i`, verified against its checksum.
    fn stream(&self, i: usize) -> Result<IndexedStream<'_>, Damage> {
        let le = LeBytes(&self.bytes);
        let at = self.streams_at + i * STREAM_BYTES;
        let record = le.slice(at, STREAM_BYTES).ok_or("stream record out of range")?;
        let name_offset = le.u32(at + 24).ok_or("short stream record")? as usize;
        let name_len = usize::from(le.u16(at + 28).ok_or("short stream record")?);
        if name_offset.checked_add(name_len).is_none_or(|end| end > self.names_bytes) {
            return Err("stream name out of range");
        }
        let name_bytes = le.slice(self.names_at + name_offset, name_len).ok_or("stream name out of range")?;
        let verified = self.verified();
        if !Verified::is_set(&verified.records, i) {
            if Some(stream_record_crc(self.segment_id, record, name_bytes)) != le.u32(at + STREAM_CHECKED_BYTES) {
                return Err("stream record checksum mismatch");
            }
            Verified::set(&verified.records, i);
        }
        let name = std::str::from_utf8(name_bytes).map_err(|_| "stream name is not UTF-8")?;
        let entry_count = le.u32(at + 20).ok_or("short stream record")? as usize;
        let first_entry = le.u32(at + 16).ok_or("short stream record")? as usize;
        if first_entry.checked_add(entry_count).is_none_or(|end| end > self.entry_count) {
            return Err("stream entries out of range");
        }
        let flags = le.u16(at + 30).ok_or("short stream record")?;
        let tombstone = (flags & FLAG_TOMBSTONE != 0).then_some(IndexEntry {
            version: 0,
            position: le.u64(at + 32).ok_or("short stream record")?,
            offset: le.u32(at + 40).ok_or("short stream record")?,
            record_bytes: le.u32(at + 44).ok_or("short stream record")?,
        });
        let last_version = le.u64(at + 8).ok_or("short stream record")?;
        Ok(IndexedStream {
            index: i,
            name,
            hash: le.u64(at).ok_or("short stream record")?,
            last_version: (entry_count > 0).then_some(last_version),
            tombstone,
            first_entry,
            entry_count,
            entries_crc: le.u32(at + 48).ok_or("short stream record")?,
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

    /// Verifies `stream`'s entries against their checksum and checks that they can be
    /// trusted by a lookup: sorted by version, ending at the stream's last version, inside
    /// the covered bytes.
    fn check_entries(&self, stream: &IndexedStream<'_>) -> Result<(), Damage> {
        let verified = self.verified();
        if Verified::is_set(&verified.entries, stream.index) {
            return Ok(());
        }
        let at = self.entries_at + stream.first_entry * ENTRY_BYTES;
        let block = LeBytes(&self.bytes).slice(at, stream.entry_count * ENTRY_BYTES).ok_or("entries out of range")?;
        if crc32_salted(self.segment_id, block) != stream.entries_crc {
            return Err("stream entries checksum mismatch");
        }
        let mut last: Option<u64> = None;
        // Straight over the verified block: the first touch of every stream after an open
        // pays this loop, once per segment the stream is in.
        for raw in block.chunks_exact(ENTRY_BYTES) {
            let raw = LeBytes(raw);
            let (Some(version), Some(offset), Some(record_bytes)) = (raw.u64(0), raw.u32(16), raw.u32(20)) else {
                return Err("entry out of range");
            };
            if last.is_some_and(|v| v >= version) {
                return Err("stream entries are not sorted by version");
            }
            if u64::from(offset) + u64::from(record_bytes) > self.covered_bytes {
                return Err("entry points past the covered bytes");
            }
            last = Some(version);
        }
        if last != stream.last_version {
            return Err("stream last version does not match its entries");
        }
        Verified::set(&verified.entries, stream.index);
        Ok(())
    }

    /// The hash of stream record `i`, verified (once) before it is trusted.
    fn verified_hash(&self, i: usize) -> Result<u64, Damage> {
        if Verified::is_set(&self.verified().records, i) {
            return LeBytes(&self.bytes).u64(self.streams_at + i * STREAM_BYTES).ok_or("stream record out of range");
        }
        Ok(self.stream(i)?.hash)
    }

    fn verified(&self) -> &Verified {
        self.verified.get_or_init(|| Verified::new(self.stream_count))
    }

    /// Finds `name` by binary search over the hashes. Every record whose hash steers the
    /// search is verified first, so a damaged record can make the lookup fail but never
    /// silently miss the stream.
    fn find_stream(&self, name: &str) -> Result<Option<IndexedStream<'_>>, Damage> {
        let hash = stream_hash(name);
        let (mut low, mut high) = (0usize, self.stream_count);
        while low < high {
            let mid = low + (high - low) / 2;
            if self.verified_hash(mid)? < hash { low = mid + 1 } else { high = mid }
        }
        for i in low..self.stream_count {
            let stream = self.stream(i)?;
            if stream.hash != hash {
                break;
            }
            if stream.name == name {
                if stream_hash(stream.name) != stream.hash {
                    return Err("stream hash does not match its name");
                }
                return Ok(Some(stream));
            }
        }
        Ok(None)
    }

    /// See [`super::SegmentIndex::stream_entries`].
    pub(crate) fn stream_entries(
        &self,
        name: &str,
        from: u64,
        to: u64,
        out: &mut Vec<super::IndexEntry>,
    ) -> Result<(), Damage> {
        let Some(stream) = self.find_stream(name)? else { return Ok(()) };
        self.check_entries(&stream)?;
        let range = stream.first_entry..stream.first_entry + stream.entry_count;
        let (mut low, mut high) = (range.start, range.end);
        while low < high {
            let mid = low + (high - low) / 2;
            if self.entry(mid).is_some_and(|e| e.version < from) { low = mid + 1 } else { high = mid }
        }
        // Versions only grow, so at most `to - from + 1` of the rest of the run: reserved at
        // once, as `take_while` would grow `out` step by step.
        out.reserve((range.end - low).min(versions_in(from, to)));
        // One slice of the verified run, walked in fixed-size chunks: no range check per
        // field (a whole-stream read spends tens of instructions per entry otherwise).
        let at = self.entries_at + low * ENTRY_BYTES;
        let run = LeBytes(&self.bytes).slice(at, (range.end - low) * ENTRY_BYTES).ok_or("entries out of range")?;
        for raw in run.as_chunks::<ENTRY_BYTES>().0 {
            let raw = LeBytes(raw);
            let (Some(version), Some(position), Some(offset), Some(record_bytes)) =
                (raw.u64(0), raw.u64(8), raw.u32(16), raw.u32(20))
            else {
                return Err("entry out of range");
            };
            if version > to {
                break;
            }
            out.push(IndexEntry { version, position, offset, record_bytes });
        }
        Ok(())
    }

    /// See [`super::SegmentIndex::scan_start`].
    pub(crate) fn scan_start(&self, position: u64) -> Result<Option<u32>, Damage> {
        let le = LeBytes(&self.bytes);
        let valid = *self.positions_valid.get_or_init(|| {
            let section = le.slice(self.positions_at, self.position_count * POSITION_BYTES);
            let trailer_at = self.names_at + self.names_bytes;
            section.is_some_and(|s| Some(crc32_salted(self.segment_id, s)) == le.u32(trailer_at))
        });
        if !valid {
            return Err("positions checksum mismatch");
        }
        // The type section is verified with the positions (both once per map, both cheap
        // next to the segment they describe), so a whole-log read finds damage in it too.
        // The stream entries it names are checked only when a type entry is read.
        self.check_type_section()?;
        let point = |i: usize| {
            let at = self.positions_at + i * POSITION_BYTES;
            Some((le.u64(at)?, le.u32(at + 8)?))
        };
        let (mut low, mut high) = (0usize, self.position_count);
        while low < high {
            let mid = low + (high - low) / 2;
            if point(mid).is_some_and(|(p, _)| p <= position) { low = mid + 1 } else { high = mid }
        }
        Ok(low.checked_sub(1).and_then(point).map(|(_, offset)| offset))
    }

    /// Every stream of the segment, each record verified and the table checked in order
    /// (sorted, hashes matching names, entries contiguous). Entries are not read.
    pub(crate) fn streams(&self) -> Result<Vec<IndexedStream<'_>>, Damage> {
        let mut streams = Vec::with_capacity(self.stream_count.min(self.bytes.len() / STREAM_BYTES));
        self.walk_streams(|stream| streams.push(stream))?;
        Ok(streams)
    }

    /// Calls `each` with every stream in table order, each record verified and the table
    /// checked as [`MappedIndex::streams`] says; the damage ends the walk.
    fn walk_streams<'a>(&'a self, mut each: impl FnMut(IndexedStream<'a>)) -> Result<(), Damage> {
        let mut previous: Option<(u64, &str)> = None;
        let mut expected_first = 0usize;
        for i in 0..self.stream_count {
            let stream = self.stream(i)?;
            if stream_hash(stream.name) != stream.hash {
                return Err("stream hash does not match its name");
            }
            if previous.is_some_and(|p| p >= (stream.hash, stream.name)) {
                return Err("streams are not sorted");
            }
            if stream.first_entry != expected_first {
                return Err("stream entries are not contiguous");
            }
            expected_first += stream.entry_count;
            previous = Some((stream.hash, stream.name));
            each(stream);
        }
        if expected_first != self.entry_count {
            return Err("entry count does not match the streams");
        }
        Ok(())
    }

    /// Streams in the stream table.
    pub(crate) fn stream_count(&self) -> usize {
        self.stream_count
    }

    /// Stream record `i`, verified (once). Records are sorted by ([`IndexedStream::hash`],
    /// name), which a caller relying on it checks between the records it reads.
    pub(crate) fn stream_at(&self, i: usize) -> Result<IndexedStream<'_>, Damage> {
        self.stream(i)
    }

    /// `stream`'s entries, verified.
    fn entries_of(&self, stream: &IndexedStream<'_>) -> Result<Vec<IndexEntry>, Damage> {
        self.check_entries(stream)?;
        (stream.first_entry..stream.first_entry + stream.entry_count)
            .map(|k| self.entry(k).ok_or("entry out of range"))
            .collect()
    }

    /// See [`super::SegmentIndex::matching_entries`]: the entries `keep` accepts of every
    /// stream whose name `matches`; stream records and entry runs verified as they are used.
    pub(crate) fn matching_entries(
        &self,
        matches: &dyn Fn(&str) -> bool,
        keep: &dyn Fn(&IndexEntry) -> bool,
        out: &mut Vec<IndexEntry>,
    ) -> Result<(), Damage> {
        for stream in self.streams()? {
            if !matches(stream.name) {
                continue;
            }
            self.check_entries(&stream)?;
            for k in stream.first_entry..stream.first_entry + stream.entry_count {
                let entry = self.entry(k).ok_or("entry out of range")?;
                if keep(&entry) {
                    out.push(entry);
                }
            }
        }
        Ok(())
    }

    /// Verifies the type section's checksum (once).
    fn check_type_section(&self) -> Result<(), Damage> {
        let valid = *self.types_valid.get_or_init(|| {
            let le = LeBytes(&self.bytes);
            let section = le.slice(self.types_at, self.bytes.len().saturating_sub(self.types_at));
            section.is_some_and(|s| Some(crc32_salted(self.segment_id, s)) == le.u32(self.types_at - 4))
        });
        if valid { Ok(()) } else { Err("type section checksum mismatch") }
    }

    /// Verifies the type section and, since type entries name stream entries, every stream
    /// record and entry run (once): what reading through type entries needs.
    fn check_types(&self) -> Result<(), Damage> {
        self.check_type_section()?;
        let valid = *self
            .type_targets_valid
            .get_or_init(|| self.streams().is_ok_and(|streams| streams.iter().all(|s| self.check_entries(s).is_ok())));
        if valid { Ok(()) } else { Err("a stream entry the type section names fails its checks") }
    }

    /// Every event type of the segment with its entries (positions, offsets), verified.
    fn types(&self) -> Result<Vec<(&str, std::ops::Range<usize>)>, Damage> {
        self.check_types()?;
        let le = LeBytes(&self.bytes);
        let mut out = Vec::with_capacity(self.type_count.min(self.bytes.len() / TYPE_BYTES));
        let mut expected_first = 0usize;
        for i in 0..self.type_count {
            let at = self.types_at + i * TYPE_BYTES;
            let field = |k: usize| le.u32(at + 4 * k).map(|v| v as usize).ok_or("short type record");
            let (first, count, name_offset, name_len) = (field(0)?, field(1)?, field(2)?, field(3)?);
            if first != expected_first || first.checked_add(count).is_none_or(|end| end > self.type_entry_count) {
                return Err("type entries out of range");
            }
            expected_first += count;
            if name_offset.checked_add(name_len).is_none_or(|end| end > self.type_names_bytes) {
                return Err("type name out of range");
            }
            let name = le.slice(self.type_names_at + name_offset, name_len).ok_or("type name out of range")?;
            let name = std::str::from_utf8(name).map_err(|_| "type name is not UTF-8")?;
            out.push((name, first..first + count));
        }
        if expected_first != self.type_entry_count {
            return Err("type entry count does not match the types");
        }
        Ok(out)
    }

    /// Type entry `k`: the stream entry it names, with version 0 (a type entry is read by
    /// position). Only after [`MappedIndex::check_types`], which verified every entry run.
    fn type_entry(&self, k: usize) -> Result<IndexEntry, Damage> {
        let at = self.type_entries_at + k * TYPE_ENTRY_BYTES;
        let number = LeBytes(&self.bytes).u32(at).ok_or("type entry out of range")?;
        let entry = self.entry(number as usize).ok_or("type entry names no stream entry")?;
        Ok(IndexEntry { version: 0, ..entry })
    }

    /// See [`super::SegmentIndex::type_entries`].
    pub(crate) fn type_entries(
        &self,
        types: &[String],
        low: u64,
        end: u64,
        out: &mut Vec<IndexEntry>,
    ) -> Result<(), Damage> {
        for (name, range) in self.types()? {
            if !types.iter().any(|t| t == name) {
                continue;
            }
            let mut last: Option<u64> = None;
            for k in range {
                let entry = self.type_entry(k)?;
                if last.is_some_and(|p| p >= entry.position) {
                    return Err("type entries are not sorted by position");
                }
                last = Some(entry.position);
                if entry.position >= low && entry.position < end {
                    out.push(entry);
                }
            }
        }
        Ok(())
    }

    /// Every stream with its event entries and whether the segment holds its tombstone,
    /// all verified (compaction planning).
    pub(crate) fn all_streams(&self) -> Result<Vec<super::StreamEntries>, Damage> {
        self.streams()?
            .into_iter()
            .map(|stream| Ok((stream.name.to_owned(), self.entries_of(&stream)?, stream.tombstone.is_some())))
            .collect()
    }

    /// The index as an in-memory index, to keep appending to (the active segment's
    /// checkpoint); every part verified.
    pub(crate) fn to_mem(&self) -> Result<MemIndex, Damage> {
        self.scan_start(0)?;
        let mut mem = MemIndex::default();
        // parse checked record_count against the entries and tombstones the file holds, so
        // reserving it allocates no more than the file's size warrants.
        let mut records: Vec<(u64, u32)> = Vec::with_capacity(self.record_count as usize);
        for stream in self.streams()? {
            let slot = MemStream { entries: self.entries_of(&stream)?, tombstone: stream.tombstone };
            records.extend(slot.entries.iter().chain(&slot.tombstone).map(|e| (e.position, e.offset)));
            mem.streams.insert(Arc::from(stream.name), slot);
        }
        if records.len() as u64 != self.record_count {
            return Err("record count does not match the entries");
        }
        records.sort_unstable();
        mem.positions = records;
        let mut typed = 0usize;
        for (name, range) in self.types()? {
            let list = range.map(|k| self.type_entry(k)).collect::<Result<Vec<_>, _>>()?;
            if list.windows(2).any(|w| w[0].position >= w[1].position) {
                return Err("type entries are not sorted by position");
            }
            typed += list.len();
            mem.types.insert(Arc::from(name), list);
        }
        if typed as u64 + mem.streams.values().filter(|s| s.tombstone.is_some()).count() as u64 != self.record_count {
            return Err("type entries do not match the records");
        }
        Ok(mem)
    }
}

/// Recomputes every checksum of an index file in place (the fuzz targets use it to get past
/// the checksums to the structural checks behind them). Parts the header's counts place
/// outside the file are left alone.
#[cfg(any(test, feature = "__internal"))]
pub(crate) fn reseal(bytes: &mut [u8]) {
    let le = LeBytes(bytes);
    let segment_id = le.u64(16).unwrap_or(0);
    let count = |offset| le.u32(offset).map_or(0, |v| v as usize);
    let (stream_count, entry_count, position_count, names_bytes) = (count(40), count(44), count(48), count(52));
    let entries_at = HEADER_BYTES + stream_count * STREAM_BYTES;
    let positions_at = entries_at + entry_count * ENTRY_BYTES;
    let names_at = positions_at + position_count * POSITION_BYTES;
    let trailer_at = names_at + names_bytes;
    let mut patches: Vec<(usize, u32)> = Vec::new();
    if let Some(head) = le.slice(0, 60) {
        patches.push((60, crc32_salted(0, head)));
    }
    for i in 0..stream_count.min(bytes.len() / STREAM_BYTES) {
        let at = HEADER_BYTES + i * STREAM_BYTES;
        let (Some(record), Some(first), Some(entries), Some(name_offset), Some(name_len)) =
            (le.slice(at, STREAM_BYTES), le.u32(at + 16), le.u32(at + 20), le.u32(at + 24), le.u16(at + 28))
        else {
            break;
        };
        let block = le.slice(entries_at + first as usize * ENTRY_BYTES, entries as usize * ENTRY_BYTES);
        let entries_crc = block.map_or(0, |block| crc32_salted(segment_id, block));
        let mut record = record.to_vec();
        record.get_mut(48..52).unwrap_or_default().copy_from_slice(&entries_crc.to_le_bytes());
        let name = le.slice(names_at + name_offset as usize, usize::from(name_len)).unwrap_or_default();
        patches.push((at + 48, entries_crc));
        patches.push((at + STREAM_CHECKED_BYTES, stream_record_crc(segment_id, &record, name)));
    }
    if let Some(positions) = le.slice(positions_at, position_count * POSITION_BYTES) {
        patches.push((trailer_at, crc32_salted(segment_id, positions)));
    }
    let types_at = trailer_at + TRAILER_BYTES + TYPE_SECTION_HEADER_BYTES;
    if let Some(section) = le.slice(types_at, bytes.len().saturating_sub(types_at)) {
        patches.push((types_at - 4, crc32_salted(segment_id, section)));
    }
    for (at, crc) in patches {
        if let Some(field) = bytes.get_mut(at..at + 4) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
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
            mem.push_event_type(if position % 5 == 0 { "Rare" } else { "Common" }, entry(version, position));
        }
        mem
    }

    fn entries(index: &MappedIndex, stream: &str, from: u64, to: u64) -> Result<Vec<IndexEntry>, Damage> {
        let mut out = Vec::new();
        index.stream_entries(stream, from, to, &mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trip_lookups() {
        let mem = sample();
        let bytes = encode(&mem, 5, 64 + 100 * 100);
        let mapped = MappedIndex::parse(Bytes::from(bytes), 5).unwrap();
        let out = entries(&mapped, "a", 2, 4).unwrap();
        assert_eq!(out.iter().map(|e| e.version).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(out[0].position, 6);
        assert!(entries(&mapped, "missing", 0, u64::MAX).unwrap().is_empty());
        assert_eq!(mapped.scan_start(0), Ok(Some(64)));
        assert_eq!(mapped.scan_start(40), Ok(Some(64 + 32 * 100)));
        assert_eq!(mapped.next_position, 100);
        let back = mapped.to_mem().unwrap();
        assert_eq!(back.positions, mem.positions);
        assert_eq!(back.types.len(), 2);
        let mut rare = Vec::new();
        mapped.type_entries(&["Rare".to_owned()], 10, 50, &mut rare).unwrap();
        assert_eq!(rare.iter().map(|e| e.position).collect::<Vec<_>>(), [10, 15, 20, 25, 30, 35, 40, 45]);
    }

    /// Verification on use: a flipped bit anywhere is caught by the full check, and a lookup
    /// in the damaged file either fails or answers exactly as the intact one does.
    #[test]
    fn every_bit_flip_is_caught_and_no_lookup_answers_wrongly() {
        let bytes = encode(&sample(), 5, 64 + 100 * 100);
        let intact = MappedIndex::parse(Bytes::from(bytes.clone()), 5).unwrap();
        let lookups = [("a", 0, u64::MAX), ("b", 3, 40), ("missing", 0, u64::MAX)];
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let Ok(damaged) = MappedIndex::parse(Bytes::from(flipped), 5) else { continue };
            assert!(damaged.to_mem().is_err(), "bit {bit} passes the full check");
            for (stream, from, to) in lookups {
                if let Ok(answer) = entries(&damaged, stream, from, to) {
                    assert_eq!(answer, entries(&intact, stream, from, to).unwrap(), "bit {bit}, stream {stream}");
                }
            }
            for (types, low, end) in [(&["Rare".to_owned()][..], 0, u64::MAX), (&["Common".to_owned()][..], 10, 60)] {
                let mut answer = Vec::new();
                if damaged.type_entries(types, low, end, &mut answer).is_ok() {
                    let mut expected = Vec::new();
                    intact.type_entries(types, low, end, &mut expected).unwrap();
                    assert_eq!(answer, expected, "bit {bit}, types {types:?}");
                }
            }
            for position in [0, 31, 32, 99, 100] {
                if let Ok(answer) = damaged.scan_start(position) {
                    assert_eq!(answer, intact.scan_start(position).unwrap(), "bit {bit}, position {position}");
                }
            }
        }
        assert!(MappedIndex::parse(Bytes::from(bytes), 6).is_err());
    }
}
