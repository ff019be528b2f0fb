//! Opening a store directory: find the segments, validate the tail of the last one and cut
//! a torn trailing commit group, load each sealed segment's index file (or rebuild it), and
//! rebuild the stream table. A cleanly closed store is opened from its index files alone;
//! after a crash only the part of the last segment past what its index file covers is scanned.

use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::error::{Error, Result};
use crate::format::record::RECORD_BYTES_MAX;
use crate::format::segment_header::{SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::index::checkpoint::{self, SegmentKey};
use crate::index::file::{Damage, IndexSummary, IndexedStream, MappedIndex, read_summary};
use crate::index::streams::{StreamState, StreamTable};
use crate::index::{MemIndex, SegmentIndex, stream_hash};
use crate::layout;
use crate::options::Options;
use crate::segment::Segment;
use crate::segment::cache::MapCache;
use crate::segment::scan::{find_durable_proof, index_sealed, nonzero_end, scan};
use crate::storage::{OpenMode, Storage, StorageFile};
use crate::sync;

/// What recovery hands to the store.
pub(crate) struct Recovered {
    pub(crate) segments: Vec<Arc<Segment>>,
    pub(crate) streams: StreamTable,
    pub(crate) next_position: u64,
    pub(crate) next_segment_id: u64,
}

const EMPTY_HEADER: SegmentHeader =
    SegmentHeader { format_version: 0, segment_id: 0, base_position: 0, compacted_end_position: 0, created_unix_ms: 0 };

/// A segment file found at open. Its descriptor is closed again once the header is read:
/// descriptors must not grow with the number of segments (only the last segment, the active
/// one, is opened again to stay open).
struct Found {
    header: SegmentHeader,
    path: std::path::PathBuf,
    len: u64,
}

/// Opens every segment in `dir`, repairing a torn tail; the directory is locked already.
pub(crate) fn recover(cache: &Arc<MapCache>, dir: &Path, options: &Options) -> Result<Recovered> {
    let storage = &cache.storage;
    let mut found = find_segments(storage, dir)?;
    found.sort_by_key(|f| (f.header.base_position, f.header.segment_id));
    let next_segment_id = found.iter().map(|f| f.header.segment_id).max().map_or(1, |id| id + 1);
    let mut segments = Vec::with_capacity(found.len() + 1);
    let keys: Vec<SegmentKey> = found.iter().map(|f| SegmentKey::of(&f.header, f.len)).collect();
    // With a checkpoint of the stream table, only the segments from its last one on are
    // merged; its last one must not have lost bytes it counted (else the full merge runs).
    let checkpoint = checkpoint::load(&**storage, dir).and_then(|c| Some((c.covers(&keys)?, c.streams)));
    let checkpoint_used = checkpoint.is_some();
    let (merged_from, mut streams) = match checkpoint {
        Some((covered, streams)) => (covered - 1, streams),
        None => (0, StreamTable::new()),
    };
    let mut checkpoint_invalid = false;
    let mut next_position = 0u64;
    let count = found.len();
    for (i, segment) in found.into_iter().enumerate() {
        if segment.header.base_position < next_position {
            return Err(Error::corruption(&segment.path, 24, "segment base position overlaps the previous segment"));
        }
        // Segments tile the positions from 0: each starts where the previous one ended (a
        // compacted segment ends at its compacted_end_position even when records were
        // dropped). A hole means a segment file is missing.
        if segment.header.base_position > next_position {
            return Err(Error::corruption(
                &segment.path,
                24,
                format!(
                    "positions {next_position}..{} are in no segment: a segment file is missing",
                    segment.header.base_position
                ),
            ));
        }
        let (opened, end_position) = if i + 1 == count {
            let opened = open_active(cache, segment, next_position, options)?;
            let end_position = opened.lookup(&**storage, |index| Ok(segment_end_position(index)))?;
            (opened, end_position)
        } else {
            open_sealed(cache, segment, next_position, i >= merged_from)?
        };
        if i == merged_from && keys.get(i).is_some_and(|key| opened.committed_len() < key.len) {
            checkpoint_invalid = checkpoint_used;
        }
        next_position =
            next_position.max(opened.header.base_position).max(opened.header.compacted_end_position).max(end_position);
        segments.push(opened);
    }
    if checkpoint_invalid {
        tracing::warn!("the stream-table checkpoint counts bytes recovery cut off; rebuilding the table");
        streams = StreamTable::new();
        merge_segments_streams(&**storage, &segments, &mut streams)?;
    } else {
        merge_segments_streams(&**storage, segments.get(merged_from..).unwrap_or_default(), &mut streams)?;
    }
    if segments.is_empty() {
        segments.push(Segment::create(cache, dir, options.segment_bytes, next_segment_id, 0)?);
        return Ok(Recovered { segments, streams, next_position: 0, next_segment_id: next_segment_id + 1 });
    }
    // A previous process may have died between creating a file and syncing the directory:
    // make every entry this store now relies on durable before appending after it.
    storage.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
    Ok(Recovered { segments, streams, next_position, next_segment_id })
}

/// Lists and opens the segment files; removes leftovers of interrupted writes.
fn find_segments(storage: &Arc<dyn Storage>, dir: &Path) -> Result<Vec<Found>> {
    let names = storage.list_dir(dir).map_err(|e| Error::io("list directory", dir, e))?;
    let mut removed_any = false;
    let mut found = Vec::new();
    let mut candidates = Vec::new();
    let segment_names: std::collections::HashSet<&str> =
        names.iter().map(String::as_str).filter(|name| layout::parse_segment_file_name(name).is_some()).collect();
    for name in &names {
        let path = dir.join(name);
        if let Some(segment_name) = layout::segment_name_of_index(name)
            && !segment_names.contains(segment_name.as_str())
        {
            // The index of a segment whose removal a crash interrupted (compaction removes the
            // segment, then its index). Segment ids can be allocated again once the largest
            // one is gone, and a new segment must never load this file as its own.
            tracing::info!(path = %path.display(), "removing an index file without its segment");
            storage.remove_file(&path).map_err(|e| Error::io("remove orphaned index file", &path, e))?;
            removed_any = true;
            continue;
        }
        if name.ends_with(layout::TMP_SUFFIX) {
            tracing::info!(path = %path.display(), "removing leftover temporary file");
            storage.remove_file(&path).map_err(|e| Error::io("remove temporary file", &path, e))?;
            removed_any = true;
            continue;
        }
        let Some(segment_id) = layout::parse_segment_file_name(name) else { continue };
        let file = storage.open(&path, OpenMode::Read).map_err(|e| Error::io("open segment", &path, e))?;
        let len = file.len().map_err(|e| Error::io("stat segment", &path, e))?;
        let mut head = [0u8; SEGMENT_HEADER_BYTES];
        let header = if len >= SEGMENT_HEADER_BYTES as u64 {
            file.read_exact_at(&mut head, 0).map_err(|e| Error::io("read segment header", &path, e))?;
            SegmentHeader::decode(&head)
        } else {
            Err("file is shorter than the segment header")
        };
        match header {
            Ok(header) if header.segment_id != segment_id => {
                return Err(Error::corruption(&path, 16, "segment id in the header differs from the file name"));
            }
            header => candidates.push((header, Found { header: header.unwrap_or(EMPTY_HEADER), path, len })),
        }
    }
    // A segment file with an invalid header and nothing past it is a creation cut short by a
    // crash (the writer syncs the header and the directory before writing any record into
    // it); it holds no record, so removing it loses nothing. Anything longer is corruption.
    for (header, segment) in candidates {
        match header {
            Ok(_) => found.push(segment),
            Err(reason) if segment.len <= SEGMENT_HEADER_BYTES as u64 => {
                tracing::warn!(path = %segment.path.display(), reason, "removing a segment whose creation was cut short by a crash");
                storage.remove_file(&segment.path).map_err(|e| Error::io("remove torn segment", &segment.path, e))?;
                removed_any = true;
            }
            Err(reason) => return Err(Error::corruption(&segment.path, 0, reason)),
        }
    }
    // Compaction swap, step 5 interrupted: a compacted segment (larger id) that covers an
    // older segment's base position replaces it.
    let compacted: Vec<SegmentHeader> =
        found.iter().map(|f| f.header).filter(|h| h.compacted_end_position != 0).collect();
    let mut live = Vec::with_capacity(found.len());
    for segment in found {
        let base = segment.header.base_position;
        let replaced = compacted.iter().any(|c| {
            c.segment_id > segment.header.segment_id && c.base_position <= base && base < c.compacted_end_position
        });
        if !replaced {
            live.push(segment);
            continue;
        }
        tracing::info!(path = %segment.path.display(), "removing a segment that compaction replaced");
        for path in [segment.path.clone(), layout::index_path_for(&segment.path)] {
            match storage.remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(Error::io("remove replaced segment", &path, error)),
            }
        }
        removed_any = true;
    }
    if removed_any {
        storage.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
    }
    Ok(live)
}

/// Loads an index file if it is valid for this segment.
fn load_index(storage: &Arc<dyn Storage>, segment_path: &Path, segment_id: u64) -> Option<MappedIndex> {
    let path = layout::index_path_for(segment_path);
    match crate::index::file::load(&**storage, &path, segment_id).ok()? {
        Ok(index) => Some(index),
        Err(reason) => {
            tracing::warn!(path = %path.display(), reason, "ignoring invalid index file; rebuilding from the segment");
            None
        }
    }
}

/// A sealed segment: every byte must be a valid record of a whole commit group. With a
/// valid index file the segment itself is not even opened, and unless its streams are to be
/// merged (`merge`) only the index file's header is read: nothing is mapped until a reader
/// needs it. Returns the segment and one past its last position (0 if it has no record).
fn open_sealed(cache: &Arc<MapCache>, found: Found, min_position: u64, merge: bool) -> Result<(Arc<Segment>, u64)> {
    let storage = &cache.storage;
    let Found { header, path, len } = found;
    if len > u64::from(u32::MAX) {
        return Err(Error::corruption(&path, 0, "segment is larger than 4 GiB"));
    }
    let usable = |summary: IndexSummary| {
        summary.covered_bytes == len && (summary.record_count == 0 || summary.next_position > min_position)
    };
    let end_position = |summary: IndexSummary| if summary.record_count > 0 { summary.next_position } else { 0 };
    let index_path = layout::index_path_for(&path);
    if !merge
        && let Ok(Ok(summary)) = read_summary(&**storage, &index_path, header.segment_id)
        && usable(summary)
    {
        return Ok((Segment::new(cache, path, None, header, len, len, None)?, end_position(summary)));
    }
    if let Some(index) = load_index(storage, &path, header.segment_id)
        && usable(index.summary())
    {
        let end = end_position(index.summary());
        return Ok((Segment::new(cache, path, None, header, len, len, Some(SegmentIndex::Sealed(index)))?, end));
    }
    let file = storage.open(&path, OpenMode::Read).map_err(|e| Error::io("open segment", &path, e))?;
    // SAFETY: the map covers the file's length as found (1). Open holds the directory lock
    // and runs before the writer exists, and sealed segments are never truncated or
    // written (2, 3); the map is dropped before this function returns.
    #[allow(unsafe_code)]
    let bytes = unsafe { file.map(len) }.map_err(|e| Error::io("mmap", &path, e))?;
    drop(file);
    let mem = index_sealed(&bytes, &path, &header, min_position)?;
    drop(bytes);
    let end = mem.positions.last().map_or(0, |&(p, _)| p + 1);
    let segment = Segment::new(cache, path, None, header, len, len, Some(SegmentIndex::Active(RwLock::new(mem))))?;
    segment.write_index_file(&**storage, len);
    Ok((segment, end))
}

/// The last segment: start from its index file (written at close, covering a prefix), scan the rest, cut a torn tail.
fn open_active(cache: &Arc<MapCache>, found: Found, min_position: u64, options: &Options) -> Result<Arc<Segment>> {
    let storage = &cache.storage;
    let Found { header, path, len } = found;
    let file = storage.open(&path, OpenMode::ReadWrite).map_err(|e| Error::io("open segment", &path, e))?;
    if len > u64::from(u32::MAX) {
        return Err(Error::corruption(&path, 0, "segment is larger than 4 GiB"));
    }
    let index_file = load_index(storage, &path, header.segment_id)
        .filter(|index| index.covered_bytes <= len && index.covered_bytes >= SEGMENT_HEADER_BYTES as u64)
        .and_then(|index| match index.to_mem() {
            Ok(mem) => Some((index.covered_bytes, mem)),
            Err(damage) => {
                tracing::warn!(path = %path.display(), damage, "ignoring a damaged index file of the active segment; rescanning");
                None
            }
        });
    let indexed = index_file.is_some();
    let (start, mut mem) = index_file.unwrap_or((SEGMENT_HEADER_BYTES as u64, MemIndex::default()));
    let last = mem.positions.last().map(|&(p, _)| p).or(min_position.checked_sub(1));
    // SAFETY: the map covers the file's length as found (1); nothing writes or truncates the
    // file while it lives (open holds the directory lock, the writer does not exist yet),
    // and it is dropped below before the torn tail is cut (2, 3).
    #[allow(unsafe_code)]
    let bytes = unsafe { file.map(len) }.map_err(|e| Error::io("mmap", &path, e))?;
    let outcome = scan(
        &bytes,
        header.segment_id,
        start,
        header.base_position.max(min_position),
        last,
        RECORD_BYTES_MAX,
        &mut mem,
    );
    // Where the written bytes end. A format 2 segment may be preallocated: zeros after the
    // log are unwritten space, not a torn tail (segment-format.md §3.5).
    let data_end = if header.log_may_end_before_file() {
        let valid = usize::try_from(outcome.valid_len).unwrap_or(usize::MAX);
        bytes.get(valid..).map_or(outcome.valid_len, |tail| outcome.valid_len + nonzero_end(tail) as u64)
    } else {
        len
    };
    if data_end > outcome.valid_len
        && let Some((bad_offset, reason)) = outcome.stopped
        && let Some(proof) = find_durable_proof(&bytes, header.segment_id, bad_offset, RECORD_BYTES_MAX)
    {
        return Err(Error::corruption(
            &path,
            bad_offset,
            format!("{reason}; the record at offset {proof} shows these bytes had been made durable"),
        ));
    }
    let proven_durable = durable_mark_of_last_group(&bytes, header.segment_id, &mem, start);
    // Unmap before truncating: a mapped file must never shrink.
    drop(bytes);
    if data_end > outcome.valid_len {
        let (offset, reason) = outcome.stopped.unwrap_or((outcome.valid_len, "commit group without its COMMIT record"));
        tracing::warn!(
            path = %path.display(),
            valid_len = outcome.valid_len,
            cut_bytes = data_end - outcome.valid_len,
            stopped_at = offset,
            reason,
            uncommitted_records = outcome.uncommitted_records,
            "cutting a torn tail off the last segment"
        );
        cut_torn_tail(&*file, &path, &header, outcome.valid_len, data_end)?;
    }
    // The bytes just read may not be on disk: the previous process may have died before its
    // fdatasync, or the fdatasync failed, after which the kernel keeps the pages readable but
    // clean, so no later fdatasync writes them. Write what nothing proves durable again and
    // sync it: the writer takes all of it as durable (its durable marks rely on it), so it
    // must be. Proofs: the index file (written at a clean close, after the last sync) covers
    // its prefix, and the durable mark of the last group says how far an fdatasync had
    // succeeded before that group was written. The fdatasync below stays even when nothing is
    // rewritten: it is cheap when nothing is dirty, and it makes a copied store durable.
    let rewrite_from = proven_durable.max(if indexed { start } else { 0 });
    rewrite(&*file, &path, rewrite_from, outcome.valid_len)?;
    file.sync_data().map_err(|e| Error::io("fdatasync", &path, e))?;
    let capacity = options.segment_bytes.max(outcome.valid_len);
    let index = Some(SegmentIndex::Active(RwLock::new(mem)));
    Segment::new(cache, path, Some(file), header, capacity, outcome.valid_len, index)
}

/// How far the active segment `bytes` is proven durable by the durable mark of its last
/// group scanned from `start` (0 if none is): the writer stamps the first record of each
/// group with the length an fdatasync had covered, and that length only grows. The mark is
/// read from a record the scan verified (checksum salted with `segment_id`) and is capped at
/// that record's own offset, which no fdatasync before it can have passed: a forged mark can
/// only spare the rewrite of bytes the scan verified, never of the last group itself.
fn durable_mark_of_last_group(bytes: &[u8], segment_id: u64, mem: &MemIndex, start: u64) -> u64 {
    // The last group's first record carries the mark; records after it have none.
    for &(_, offset) in mem.positions.iter().rev() {
        let offset = u64::from(offset);
        if offset < start {
            break;
        }
        let Some(record) = usize::try_from(offset).ok().and_then(|at| bytes.get(at..)) else { break };
        match crate::format::record::decode(record, segment_id, RECORD_BYTES_MAX) {
            Ok(decoded) => {
                if let Some(mark) = decoded.durable_mark {
                    return mark.min(offset);
                }
            }
            Err(_) => break,
        }
    }
    0
}

/// Cuts the torn bytes `[valid_len, data_end)` off the active segment: a version 1 segment
/// is truncated to `valid_len`; a format 2 one keeps its length and gets zeros there, so that
/// everything after the log is zeros again (preallocated space stays allocated).
fn cut_torn_tail(
    file: &dyn StorageFile,
    path: &Path,
    header: &SegmentHeader,
    valid_len: u64,
    data_end: u64,
) -> Result<()> {
    if header.log_may_end_before_file() {
        file.zero_fill(valid_len, data_end - valid_len).map_err(|e| Error::io("zero torn tail", path, e))
    } else {
        file.set_len(valid_len).map_err(|e| Error::io("truncate torn tail", path, e))
    }
}

/// Writes bytes `[from, to)` of `file` again, through a bounded buffer.
fn rewrite(file: &dyn StorageFile, path: &Path, from: u64, to: u64) -> Result<()> {
    const CHUNK_BYTES: u64 = 1 << 20;
    let mut buf = Vec::new();
    let mut at = from;
    while at < to {
        let chunk = (to - at).min(CHUNK_BYTES);
        buf.resize(chunk as usize, 0);
        file.read_exact_at(&mut buf, at).map_err(|e| Error::io("read segment tail", path, e))?;
        file.write_all_at(&buf, at).map_err(|e| Error::io("rewrite segment tail", path, e))?;
        at += chunk;
    }
    Ok(())
}

/// Sealed segments whose stream tables are merged with one another at a time: each holds
/// its index file's map meanwhile, so this bounds the maps held beyond the cache's bound.
const MERGE_BATCH_SEGMENTS: usize = 8;

/// Folds the streams of `segments` into `streams`, as [`merge_streams`] on each would.
/// The stream tables of index files are all sorted by (hash, name), so those of up to
/// [`MERGE_BATCH_SEGMENTS`] sealed segments are merged with one another first, in one pass
/// over each, and every stream is looked up in `streams` once per batch rather than once per
/// segment. The lookups are what an open after a crash spent its time on: in a table of
/// 100 000 streams each costs a cache miss or two (issue 15, docs/performance.md).
pub(crate) fn merge_segments_streams(
    storage: &dyn Storage,
    segments: &[Arc<Segment>],
    streams: &mut StreamTable,
) -> Result<()> {
    let mut batch: Vec<(&Arc<Segment>, Arc<SegmentIndex>)> = Vec::with_capacity(MERGE_BATCH_SEGMENTS);
    for segment in segments {
        match segment.loaded_index() {
            Some(index) if matches!(*index, SegmentIndex::Sealed(_)) => batch.push((segment, index)),
            // In memory (the active segment, a rebuilt index), or not mapped (the cache's bound).
            _ => merge_streams(storage, segment, streams)?,
        }
        if batch.len() == MERGE_BATCH_SEGMENTS {
            merge_batch(storage, &batch, streams)?;
            batch.clear();
        }
    }
    merge_batch(storage, &batch, streams)
}

/// Merges the stream tables of `batch` into `streams`. Merging a stream's state twice changes
/// nothing (the larger version, deleted if either says so), and every record merged was
/// verified first, so after damage in one of the files the batch is simply merged again
/// segment by segment, which rebuilds the damaged index.
fn merge_batch(
    storage: &dyn Storage,
    batch: &[(&Arc<Segment>, Arc<SegmentIndex>)],
    streams: &mut StreamTable,
) -> Result<()> {
    let mapped: Vec<&MappedIndex> = batch
        .iter()
        .filter_map(|(_, index)| match &**index {
            SegmentIndex::Sealed(mapped) => Some(mapped),
            SegmentIndex::Active(_) => None,
        })
        .collect();
    if let Err(damage) = merge_sorted(&mapped, streams) {
        tracing::warn!(damage, "damaged stream table in an index file; merging segment by segment");
        for (segment, _) in batch {
            merge_streams(storage, segment, streams)?;
        }
    }
    Ok(())
}

/// Stream record `i` of `index`, verified, if it comes after `previous` in the table's order.
fn stream_after<'a>(
    index: &'a MappedIndex,
    i: usize,
    previous: Option<(u64, &str)>,
) -> std::result::Result<Option<IndexedStream<'a>>, Damage> {
    if i >= index.stream_count() {
        return Ok(None);
    }
    let stream = index.stream_at(i)?;
    if stream_hash(stream.name) != stream.hash() {
        return Err("stream hash does not match its name");
    }
    if previous.is_some_and(|p| p >= (stream.hash(), stream.name)) {
        return Err("streams are not sorted");
    }
    Ok(Some(stream))
}

/// The k-way merge of sorted stream tables: one [`merge_stream`] per distinct stream.
fn merge_sorted(indexes: &[&MappedIndex], streams: &mut StreamTable) -> std::result::Result<(), Damage> {
    let mut heads = Vec::with_capacity(indexes.len());
    for index in indexes {
        heads.push((0usize, stream_after(index, 0, None)?));
    }
    loop {
        let Some(key) = heads.iter().filter_map(|(_, head)| head.as_ref()).map(|s| (s.hash(), s.name)).min() else {
            return Ok(());
        };
        let mut state = StreamState::default();
        for (index, (at, head)) in indexes.iter().zip(&mut heads) {
            if let Some(stream) = head
                && (stream.hash(), stream.name) == key
            {
                state.merge(stream.last_version, stream.tombstone.is_some());
                *at += 1;
                *head = stream_after(index, *at, Some(key))?;
            }
        }
        merge_stream(streams, key.1, state.last_version, state.deleted);
    }
}

/// Folds the streams of `segment` into `streams`.
pub(crate) fn merge_streams(storage: &dyn Storage, segment: &Segment, streams: &mut StreamTable) -> Result<()> {
    segment.lookup(storage, |index| {
        match index {
            SegmentIndex::Sealed(mapped) => {
                for stream in mapped.streams()? {
                    merge_stream(streams, stream.name, stream.last_version, stream.tombstone.is_some());
                }
            }
            SegmentIndex::Active(mem) => {
                let mem = sync::read(mem);
                for (name, slot) in &mem.streams {
                    merge_stream(streams, name, slot.entries.last().map(|e| e.version), slot.tombstone.is_some());
                }
            }
        }
        Ok(())
    })
}

fn merge_stream(streams: &mut StreamTable, name: &str, last_version: Option<u64>, deleted: bool) {
    match streams.get_mut(name) {
        Some(state) => state.merge(last_version, deleted),
        None => {
            let mut state = StreamState::default();
            state.merge(last_version, deleted);
            streams.insert(Arc::from(name), state);
        }
    }
}

pub(crate) fn segment_end_position(index: &SegmentIndex) -> u64 {
    match index {
        SegmentIndex::Sealed(mapped) if mapped.record_count > 0 => mapped.next_position,
        SegmentIndex::Sealed(_) => 0,
        SegmentIndex::Active(mem) => {
            let mem = sync::read(mem);
            mem.positions.last().map_or(0, |&(p, _)| p + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::IndexEntry;
    use bytes::Bytes;

    /// A mapped index of segment `id` holding `versions` events of each of `streams` (and a
    /// tombstone for the names in `deleted`).
    fn mapped(id: u64, streams: &[&str], versions: std::ops::Range<u64>, deleted: &[&str]) -> MappedIndex {
        let mut mem = MemIndex::default();
        let mut position = 0u64;
        for version in versions {
            for name in streams {
                let entry = IndexEntry { version, position, offset: 64 + position as u32 * 100, record_bytes: 100 };
                mem.push(&Arc::from(*name), entry, false);
                mem.push_event_type("T", entry);
                position += 1;
            }
        }
        for name in deleted {
            let entry = IndexEntry { version: 0, position, offset: 64 + position as u32 * 100, record_bytes: 100 };
            mem.push(&Arc::from(*name), entry, true);
            position += 1;
        }
        let covered = 64 + position * 100;
        MappedIndex::parse(Bytes::from(crate::index::file::encode(&mem, id, covered)), id).unwrap()
    }

    /// The table merged one segment at a time, the way `merge_streams` does.
    fn merged_one_by_one(indexes: &[&MappedIndex], mut table: StreamTable) -> StreamTable {
        for index in indexes {
            for stream in index.streams().unwrap() {
                merge_stream(&mut table, stream.name, stream.last_version, stream.tombstone.is_some());
            }
        }
        table
    }

    #[test]
    fn the_k_way_merge_of_stream_tables_equals_merging_each() {
        let names: Vec<String> = (0..300).map(|i| format!("stream-{i:06}")).collect();
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        let a = mapped(1, &all[..200], 0..3, &[]);
        let b = mapped(2, &all[100..], 3..5, &["stream-000007"]);
        let c = mapped(3, &all[250..], 5..6, &["stream-000299"]);
        let empty = mapped(4, &[], 0..0, &[]);
        let mut start = StreamTable::new();
        start.insert(Arc::from("stream-000001"), StreamState { last_version: Some(9), deleted: false });
        start.insert(Arc::from("elsewhere"), StreamState { last_version: Some(1), deleted: true });
        let indexes = [&a, &b, &c, &empty];
        let mut merged = start.clone();
        merge_sorted(&indexes, &mut merged).unwrap();
        assert_eq!(merged, merged_one_by_one(&indexes, start));
        assert_eq!(merged.len(), 301);
        assert_eq!(merged["stream-000001"], StreamState { last_version: Some(9), deleted: false });
        assert_eq!(merged["stream-000007"], StreamState { last_version: Some(2), deleted: true });
        assert_eq!(merged["stream-000150"], StreamState { last_version: Some(4), deleted: false });
        assert_eq!(merged["stream-000299"], StreamState { last_version: Some(5), deleted: true });
    }

    #[test]
    fn a_damaged_stream_record_stops_the_k_way_merge() {
        let names: Vec<String> = (0..50).map(|i| format!("s-{i}")).collect();
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        let intact = mapped(1, &all, 0..2, &[]);
        let bytes = crate::index::file::encode(&intact.to_mem().unwrap(), 2, intact.covered_bytes);
        for record in [0usize, 17, 49] {
            // The last-version field of stream record `record` (64-byte header, 56-byte records).
            let mut damaged = bytes.clone();
            damaged[64 + record * 56 + 8] ^= 1;
            let damaged = MappedIndex::parse(Bytes::from(damaged), 2).unwrap();
            let mut table = StreamTable::new();
            assert!(merge_sorted(&[&intact, &damaged], &mut table).is_err(), "record {record}");
        }
    }
}
