//! Internals exposed to the criterion benchmarks in `crates/chronicle-bench/benches/micro.rs`. Not a stable API:
//! hidden from the docs, exists for benches only and changes with them.
//!
//! Every item is a thin wrapper that calls the engine's own code (record codec, salted
//! CRC-32, segment index) so a benchmark measures exactly what the write and read paths run.

use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::format::record::{self, RECORD_BYTES_MAX, RecordFields, RecordKind};
use crate::index::file::{self, MappedIndex};
use crate::index::{IndexEntry, MemIndex, SegmentIndex};
use crate::sync;

/// The fields of one event record to encode.
#[derive(Debug, Clone, Copy)]
pub struct EventRecord<'a> {
    /// Global position.
    pub position: u64,
    /// Version within its stream.
    pub version: u64,
    /// Microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// Event id.
    pub id: u128,
    /// Stream id.
    pub stream_id: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// Metadata bytes.
    pub metadata: &'a [u8],
    /// Data bytes.
    pub data: &'a [u8],
}

/// Appends the record of `event` (salted with `segment_id`, checksum included) to `buf` as
/// the writer does; returns its length.
pub fn encode_record(buf: &mut Vec<u8>, segment_id: u64, event: &EventRecord<'_>) -> usize {
    let fields = RecordFields {
        kind: RecordKind::Event,
        position: event.position,
        version: event.version,
        timestamp_us: event.timestamp_us,
        id: event.id,
        correlation_id: None,
        causation_id: None,
        durable_mark: None,
        stream_id: event.stream_id,
        event_type: event.event_type,
        metadata: event.metadata,
        data: event.data,
    };
    record::encode(buf, segment_id, &fields)
}

/// Decodes and verifies (CRC included) the record at the start of `bytes`; its length, or
/// `None` if the bytes are not a valid record of segment `segment_id`.
pub fn decode_record(bytes: &[u8], segment_id: u64) -> Option<usize> {
    record::decode(bytes, segment_id, RECORD_BYTES_MAX).ok().map(|decoded| decoded.record_bytes)
}

/// The records' checksum: CRC-32 of `salt` (little-endian) followed by `bytes`.
pub fn crc32_salted(salt: u64, bytes: &[u8]) -> u32 {
    crate::format::crc32_salted(salt, bytes)
}

/// Entries found by a lookup; reuse one across lookups as the read path does.
#[derive(Debug, Default)]
pub struct IndexEntries(Vec<IndexEntry>);

impl IndexEntries {
    /// Number of entries found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No entries found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Forgets the entries, keeping the allocation.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// A segment's index, active (in memory) or sealed (a parsed index file).
#[derive(Debug)]
pub struct Index(SegmentIndex);

impl Index {
    /// An empty active index.
    pub fn active() -> Self {
        Index(SegmentIndex::Active(RwLock::new(MemIndex::default())))
    }

    /// Records that an event of `stream` lies at `offset` (only on an active index; a sealed
    /// one is left as it is).
    pub fn push(&mut self, stream: &str, version: u64, position: u64, offset: u32, record_bytes: u32) {
        if let SegmentIndex::Active(mem) = &mut self.0 {
            let mem = mem.get_mut().unwrap_or_else(|poison| poison.into_inner());
            let stream: Arc<str> = mem.stream_id(stream);
            mem.push(&stream, IndexEntry { version, position, offset, record_bytes }, false);
        }
    }

    /// The index file of an active index, as sealing writes it (`None` for a sealed index).
    pub fn encode_file(&self, segment_id: u64, covered_bytes: u64) -> Option<Vec<u8>> {
        match &self.0 {
            SegmentIndex::Active(mem) => {
                let mem = sync::read(mem);
                Some(file::encode(&mem, segment_id, covered_bytes))
            }
            SegmentIndex::Sealed(_) => None,
        }
    }

    /// A sealed index: `bytes` (typically a memory map of the file) taken as the index file
    /// of segment `segment_id`, as open does (the error names the failed check).
    pub fn parse_file(bytes: Bytes, segment_id: u64) -> Result<Self, &'static str> {
        MappedIndex::parse(bytes, segment_id).map(|mapped| Index(SegmentIndex::Sealed(mapped)))
    }

    /// Appends to `out` the entries of `stream` with `from <= version <= to`, as a stream read
    /// does; the error names the damage found in a sealed index file.
    pub fn stream_entries(&self, stream: &str, from: u64, to: u64, out: &mut IndexEntries) -> Result<(), &'static str> {
        self.0.stream_entries(stream, from, to, &mut out.0)
    }
}
