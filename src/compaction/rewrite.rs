//! Rewriting a run of sealed segments as one, without their discarded records, and the swap.

use std::sync::{Arc, RwLock};

use super::plan::SegmentPlan;
use crate::error::{Error, Result};
use crate::format::record::{self, RecordKind, text};
use crate::format::segment_header::{SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::index::{IndexEntry, MemIndex, SegmentIndex};
use crate::layout;
use crate::segment::Segment;
use crate::shared::Shared;
use crate::storage::OpenMode;

/// Bytes buffered before each write (and fdatasync) of the new segment. Syncing in small
/// steps keeps compaction's share of the device queue small: an appender's fdatasync that
/// lands behind one of compaction's waits for 64 KiB, not for a large writeback.
const WRITE_CHUNK_BYTES: usize = 64 << 10;

/// After each chunk compaction pauses this many times as long as the chunk's write and
/// fdatasync took, so it uses at most a third of the device's time whatever its speed.
/// Measured (W7, docs/performance.md): 1 MiB chunks without pauses made durable appends'
/// p99 4–9× their idle p99; 64 KiB chunks with this pause, 1.6–2.8×, for a compaction about
/// three times slower.
const PAUSE_PER_BUSY: u32 = 2;

/// Rewrites the run (consecutive sealed segments) as one segment and swaps it in; returns
/// the events dropped.
pub(crate) fn apply(shared: &Shared, run: &[SegmentPlan]) -> Result<u64> {
    let (Some(first), Some(last)) = (run.first(), run.last()) else { return Ok(0) };
    let storage = &shared.storage;
    let new_id = shared.allocate_segment_id();
    let path = shared.dir.join(layout::segment_file_name(new_id));
    let tmp = path.with_extension(format!("log{}", layout::TMP_SUFFIX));
    let header = SegmentHeader::current(new_id, first.segment.header.base_position, last.end_position);
    let file = storage.open(&tmp, OpenMode::CreateNew).map_err(|e| Error::io("create compacted segment", &tmp, e))?;
    let (mem, len, dropped) = match copy_survivors(shared, run, new_id, &header, &*file, &tmp) {
        Ok(done) => done,
        Err(error) => {
            drop(file);
            let _ = storage.remove_file(&tmp);
            return Err(error);
        }
    };
    // A run whose records all go is still replaced, by a header-only segment: it records
    // that its positions were once there, so recovery can tell a range emptied by
    // compaction from a segment file that went missing.
    file.sync_data().map_err(|e| Error::io("fdatasync", &tmp, e))?;
    storage.rename(&tmp, &path).map_err(|e| Error::io("rename compacted segment", &path, e))?;
    storage.sync_dir(&shared.dir).map_err(|e| Error::io("sync directory", &shared.dir, e))?;
    // Sealed from the start: its descriptor closes here, it is mapped when first read.
    drop(file);
    let replacement =
        Segment::new(&shared.cache, path, None, header, len, len, Some(SegmentIndex::Active(RwLock::new(mem))))?;
    replacement.write_index_file(&**storage, len);
    // Readers that hold an old segment keep reading it through its maps: map it (and its
    // index) now, for good, before its files go; maps outlive the unlink.
    for plan in run {
        plan.segment.retire(&**storage)?;
    }
    shared.update_segments(|segments| {
        let is_old = |s: &Arc<Segment>| run.iter().any(|plan| Arc::ptr_eq(s, &plan.segment));
        if let Some(at) = segments.iter().position(is_old) {
            segments.retain(|s| !is_old(s));
            segments.insert(at.min(segments.len()), Arc::clone(&replacement));
        }
    });
    for plan in run {
        for file in [plan.segment.path.clone(), layout::index_path_for(&plan.segment.path)] {
            match storage.remove_file(&file) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(Error::io("remove compacted segment", &file, error)),
            }
        }
    }
    storage.sync_dir(&shared.dir).map_err(|e| Error::io("sync directory", &shared.dir, e))?;
    Ok(dropped)
}

/// Copies every record of the run not in its plan's discard set into `file`, in position
/// order, re-checksummed for segment `new_id` and each marked COMMIT (the file is sealed,
/// whole groups need no other marker). Returns the new index, the file length and the
/// events dropped.
fn copy_survivors(
    shared: &Shared,
    run: &[SegmentPlan],
    new_id: u64,
    header: &SegmentHeader,
    file: &dyn crate::storage::StorageFile,
    tmp: &std::path::Path,
) -> Result<(MemIndex, u64, u64)> {
    let mut mem = MemIndex::default();
    let mut out = Vec::with_capacity(WRITE_CHUNK_BYTES + 4096);
    out.extend_from_slice(&header.encode());
    let mut written = 0u64;
    let mut dropped = 0u64;
    for plan in run {
        let reader = plan.segment.reader()?;
        let mut offset = SEGMENT_HEADER_BYTES as u64;
        while offset < reader.len() {
            // Every record is verified, dropped ones included: compaction must not launder
            // corruption into a freshly checksummed file.
            let (decoded, bytes) = reader.read_record(offset, None)?;
            let record_offset = offset;
            offset += decoded.record_bytes as u64;
            if plan.discard.contains(&(record_offset as u32)) {
                dropped += 1;
                continue;
            }
            let new_offset = written + out.len() as u64;
            let start = out.len();
            out.extend_from_slice(bytes);
            if let Some(copy) = out.get_mut(start..) {
                record::mark_commit(copy, new_id);
            }
            let name = text(bytes, decoded.stream_id.clone())
                .ok_or_else(|| Error::corruption(&plan.segment.path, record_offset, "stream id is not UTF-8"))?;
            let stream = mem.stream_id(name);
            let entry = IndexEntry::of_record(&decoded, new_offset);
            mem.push(&stream, entry, decoded.kind == RecordKind::Tombstone);
            if decoded.kind == RecordKind::Event {
                mem.push_event_type(text(bytes, decoded.event_type.clone()).unwrap_or_default(), entry);
            }
            if out.len() >= WRITE_CHUNK_BYTES {
                let started = std::time::Instant::now();
                file.write_all_at(&out, written).map_err(|e| Error::io("write compacted segment", tmp, e))?;
                file.sync_data().map_err(|e| Error::io("fdatasync", tmp, e))?;
                written += out.len() as u64;
                out.clear();
                std::thread::sleep(started.elapsed() * PAUSE_PER_BUSY);
                // Closing does not wait for a long compaction: this run is abandoned (its
                // temporary file removed), the runs already swapped stay.
                if shared.closing() {
                    return Err(Error::Closed);
                }
            }
        }
    }
    file.write_all_at(&out, written).map_err(|e| Error::io("write compacted segment", tmp, e))?;
    written += out.len() as u64;
    Ok((mem, written, dropped))
}
