//! The stream index: for each segment, where each stream's events are.
//!
//! The active segment's index lives in memory ([`MemIndex`]) and grows with each commit
//! group; when a segment is sealed its index is written to an index file and memory-mapped
//! ([`file::MappedIndex`]). Both answer "entries of stream S from version v" in
//! O(log N + n) and "where to start scanning for position p". The index is derived data:
//! a missing, stale or corrupt index file is rebuilt from the segment.

pub(crate) mod checkpoint;
pub(crate) mod file;
pub(crate) mod streams;

use crate::sync;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Where one record of a stream lies in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) version: u64,
    pub(crate) position: u64,
    pub(crate) offset: u32,
    pub(crate) record_bytes: u32,
}

/// One stream's records within one segment.
#[derive(Debug, Default, Clone)]
pub(crate) struct MemStream {
    /// Event entries sorted by version.
    pub(crate) entries: Vec<IndexEntry>,
    /// Set when the segment holds the stream's tombstone.
    pub(crate) tombstone: Option<IndexEntry>,
}

/// The in-memory index of the active segment (and of segments whose index file is being
/// rebuilt).
#[derive(Debug, Default)]
pub(crate) struct MemIndex {
    pub(crate) streams: HashMap<Arc<str>, MemStream>,
    /// (position, offset) of every record in segment order.
    pub(crate) positions: Vec<(u64, u32)>,
    /// Event entries by event type, each list in position order (`version` unused: 0).
    pub(crate) types: HashMap<Arc<str>, Vec<IndexEntry>>,
}

impl MemIndex {
    /// Appends `entry` (an event or tombstone of `stream`).
    pub(crate) fn push(&mut self, stream: &Arc<str>, entry: IndexEntry, tombstone: bool) {
        self.positions.push((entry.position, entry.offset));
        let slot = match self.streams.get_mut(&**stream) {
            Some(slot) => slot,
            None => self.streams.entry(Arc::clone(stream)).or_default(),
        };
        if tombstone {
            slot.tombstone = Some(entry);
        } else {
            slot.entries.push(entry);
        }
    }
}

impl MemIndex {
    /// Records that the event at `entry` has type `event_type` (after [`MemIndex::push`]).
    pub(crate) fn push_event_type(&mut self, event_type: &str, entry: IndexEntry) {
        let entry = IndexEntry { version: 0, ..entry };
        match self.types.get_mut(event_type) {
            Some(list) => list.push(entry),
            None => {
                self.types.insert(Arc::from(event_type), vec![entry]);
            }
        }
    }

    /// The shared id of `name`: the index's own copy if it has the stream, else a new one.
    pub(crate) fn stream_id(&self, name: &str) -> Arc<str> {
        match self.streams.get_key_value(name) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(name),
        }
    }
}

impl IndexEntry {
    /// The entry of a decoded record found at `offset`.
    pub(crate) fn of_record(decoded: &crate::format::record::DecodedRecord, offset: u64) -> Self {
        IndexEntry {
            version: decoded.version,
            position: decoded.position,
            offset: offset as u32,
            record_bytes: decoded.record_bytes as u32,
        }
    }
}

/// A segment's index: in memory while the segment is active, memory-mapped once sealed.
#[derive(Debug)]
pub(crate) enum SegmentIndex {
    Active(RwLock<MemIndex>),
    Sealed(file::MappedIndex),
}

impl SegmentIndex {
    /// Appends to `out` the entries of `stream` with `from <= version <= to`, in version order.
    ///
    /// # Errors
    /// The damage found in a mapped index file (see `Segment::lookup`, which rebuilds it).
    pub(crate) fn stream_entries(
        &self,
        stream: &str,
        from: u64,
        to: u64,
        out: &mut Vec<IndexEntry>,
    ) -> Result<(), file::Damage> {
        match self {
            SegmentIndex::Active(mem) => {
                let mem = sync::read(mem);
                if let Some(slot) = mem.streams.get(stream) {
                    let start = slot.entries.partition_point(|e| e.version < from);
                    out.reserve((slot.entries.len() - start).min(versions_in(from, to)));
                    out.extend(slot.entries.iter().skip(start).take_while(|e| e.version <= to));
                }
                Ok(())
            }
            SegmentIndex::Sealed(mapped) => mapped.stream_entries(stream, from, to, out),
        }
    }

    /// Offset of a record at or before `position` from which a forward scan finds the first
    /// record with a position >= `position`; `None` if the segment indexes no record at or
    /// before it (scan from the first record).
    ///
    /// # Errors
    /// As [`SegmentIndex::stream_entries`].
    pub(crate) fn scan_start(&self, position: u64) -> Result<Option<u32>, file::Damage> {
        match self {
            SegmentIndex::Active(mem) => {
                let mem = sync::read(mem);
                let at = mem.positions.partition_point(|&(p, _)| p <= position);
                Ok(at.checked_sub(1).and_then(|i| mem.positions.get(i)).map(|&(_, offset)| offset))
            }
            SegmentIndex::Sealed(mapped) => mapped.scan_start(position),
        }
    }
}

impl SegmentIndex {
    /// Appends to `out` the event entries with `low <= position < end` of the streams
    /// whose id satisfies `matches` (only `exact`, looked up directly, when given), sorted
    /// by position. Tombstones are not entries.
    ///
    /// # Errors
    /// As [`SegmentIndex::stream_entries`].
    pub(crate) fn matching_entries(
        &self,
        exact: Option<&str>,
        matches: &dyn Fn(&str) -> bool,
        low: u64,
        end: u64,
        out: &mut Vec<IndexEntry>,
    ) -> Result<(), file::Damage> {
        let in_range = |e: &IndexEntry| e.position >= low && e.position < end;
        let start = out.len();
        match (self, exact) {
            (_, Some(stream)) => {
                if matches(stream) {
                    let mut entries = Vec::new();
                    self.stream_entries(stream, 0, u64::MAX, &mut entries)?;
                    out.extend(entries.into_iter().filter(in_range));
                }
            }
            (SegmentIndex::Active(mem), None) => {
                let mem = sync::read(mem);
                for (name, slot) in &mem.streams {
                    if matches(name) {
                        // Entries are in version order, which is position order.
                        let from = slot.entries.partition_point(|e| e.position < low);
                        out.extend(slot.entries.iter().skip(from).take_while(|e| e.position < end));
                    }
                }
            }
            (SegmentIndex::Sealed(mapped), None) => mapped.matching_entries(matches, &in_range, out)?,
        }
        if let Some(added) = out.get_mut(start..) {
            added.sort_unstable_by_key(|e| e.position);
        }
        Ok(())
    }
}

impl SegmentIndex {
    /// Appends to `out` the event entries with `low <= position < end` whose event type is
    /// one of `types`, sorted by position (`version` is not known: 0).
    ///
    /// # Errors
    /// As [`SegmentIndex::stream_entries`].
    pub(crate) fn type_entries(
        &self,
        types: &[String],
        low: u64,
        end: u64,
        out: &mut Vec<IndexEntry>,
    ) -> Result<(), file::Damage> {
        let start = out.len();
        match self {
            SegmentIndex::Active(mem) => {
                let mem = sync::read(mem);
                for event_type in types {
                    if let Some(list) = mem.types.get(event_type.as_str()) {
                        let from = list.partition_point(|e| e.position < low);
                        out.extend(list.iter().skip(from).take_while(|e| e.position < end));
                    }
                }
            }
            SegmentIndex::Sealed(mapped) => mapped.type_entries(types, low, end, out)?,
        }
        if let Some(added) = out.get_mut(start..) {
            added.sort_unstable_by_key(|e| e.position);
        }
        Ok(())
    }
}

/// A stream id, its event entries in one segment, and whether the segment holds its tombstone.
pub(crate) type StreamEntries = (String, Vec<IndexEntry>, bool);

impl SegmentIndex {
    /// Every stream of the segment with its event entries and whether the segment holds
    /// its tombstone (for compaction planning).
    ///
    /// # Errors
    /// As [`SegmentIndex::stream_entries`].
    pub(crate) fn all_streams(&self) -> Result<Vec<StreamEntries>, file::Damage> {
        match self {
            SegmentIndex::Active(mem) => {
                let mem = sync::read(mem);
                Ok(mem
                    .streams
                    .iter()
                    .map(|(name, slot)| (name.to_string(), slot.entries.clone(), slot.tombstone.is_some()))
                    .collect())
            }
            SegmentIndex::Sealed(mapped) => mapped.all_streams(),
        }
    }
}

/// How many versions `[from, to]` holds (0 if empty), saturated to `usize`: the most
/// entries a lookup of that range can return.
pub(crate) fn versions_in(from: u64, to: u64) -> usize {
    usize::try_from(to.saturating_sub(from).saturating_add(u64::from(to >= from))).unwrap_or(usize::MAX)
}

/// FNV-1a, 64-bit: the stable hash of stream ids in index files (part of the format).
pub(crate) fn stream_hash(stream: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in stream.as_bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}
