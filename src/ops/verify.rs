//! `Store::verify`: every record checksum, every index file against its segment, every
//! snapshot file. Problems are reported as (file, offset, reason), never fixed.

use std::path::PathBuf;
use std::sync::Arc;

use crate::format::record::{self, RECORD_BYTES_MAX, RecordKind, text};
use crate::format::segment_header::{SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::index::file as index_file;
use crate::index::{IndexEntry, MemIndex};
use crate::layout;
use crate::segment::Segment;
use crate::shared::Shared;
use crate::storage::read_whole;

/// At most this many problems are listed in a [`VerifyReport`]; further ones are counted in
/// [`VerifyReport::problems_omitted`].
pub const VERIFY_PROBLEMS_MAX: usize = 10_000;

/// One thing wrong in the store directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// Byte offset in it of the bad record, header or section (0 for a whole file).
    pub offset: u64,
    /// What check failed.
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.file.display(), self.offset, self.reason)
    }
}

/// What [`Store::verify`](crate::Store::verify) checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Segments walked.
    pub segments: u64,
    /// Records (events and tombstones) whose checksum and framing were checked.
    pub records: u64,
    /// Segment bytes read.
    pub bytes: u64,
    /// Index files compared with the index rebuilt from their segment.
    pub index_files: u64,
    /// Sealed segments without an index file (derived data: not a problem, the next
    /// writable open rebuilds it).
    pub index_files_missing: u64,
    /// Snapshot files read and checked.
    pub snapshots: u64,
    /// Everything wrong, in the order found (at most [`VERIFY_PROBLEMS_MAX`]).
    pub problems: Vec<Problem>,
    /// Problems found beyond [`VERIFY_PROBLEMS_MAX`].
    pub problems_omitted: u64,
}

impl VerifyReport {
    /// No problem found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.problems_omitted == 0
    }

    fn problem(&mut self, file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) {
        if self.problems.len() < VERIFY_PROBLEMS_MAX {
            self.problems.push(Problem { file: file.into(), offset, reason: reason.into() });
        } else {
            self.problems_omitted += 1;
        }
    }
}

/// Walks every segment of `shared`'s current list, then the snapshot files. `progress` is
/// called with (segment bytes done, segment bytes in all) after each segment.
pub(crate) fn verify(shared: &Arc<Shared>, mut progress: impl FnMut(u64, u64)) -> VerifyReport {
    let segments = shared.segments();
    let total: u64 = segments.iter().map(|s| s.committed_len()).sum();
    let mut report = VerifyReport::default();
    let mut next_position = 0u64;
    for (i, segment) in segments.iter().enumerate() {
        let sealed = i + 1 < segments.len();
        next_position = verify_segment(shared, segment, sealed, next_position, &mut report);
        report.segments += 1;
        progress(report.bytes, total);
    }
    let (checked, problems) = shared.snapshots.verify_files();
    report.snapshots = checked;
    for (file, reason) in problems {
        report.problem(file, 0, reason);
    }
    report
}

/// Checks one segment and its index file; returns the end of the positions it covers.
fn verify_segment(
    shared: &Shared,
    segment: &Arc<Segment>,
    sealed: bool,
    min_position: u64,
    report: &mut VerifyReport,
) -> u64 {
    let path = &segment.path;
    let committed = segment.committed_len();
    let reader = match segment.reader() {
        Ok(reader) => reader,
        Err(error) => {
            report.problem(path, 0, format!("cannot read the segment: {error}"));
            return min_position.max(segment.header.compacted_end_position);
        }
    };
    match reader.record(0, SEGMENT_HEADER_BYTES).map(SegmentHeader::decode) {
        Some(Ok(header)) if header == segment.header => {}
        Some(Ok(_)) => report.problem(path, 0, "segment header changed since the store opened"),
        Some(Err(reason)) => report.problem(path, 0, reason),
        None => report.problem(path, 0, "file is shorter than the segment header"),
    }
    // The index this segment's bytes give, built as the writer and recovery build it.
    let checkpoint_cover = if sealed { Some(committed) } else { index_checkpoint_cover(shared, segment) };
    let mut mem = MemIndex::default();
    let mut at_cover: Option<Vec<u8>> = None;
    let mut pending: Vec<(Arc<str>, IndexEntry, bool, String)> = Vec::new();
    let mut last = min_position.checked_sub(1);
    let mut offset = SEGMENT_HEADER_BYTES as u64;
    let mut walked_whole = true;
    if checkpoint_cover == Some(offset) {
        at_cover = Some(index_file::encode(&mem, segment.id(), offset));
    }
    while offset < reader.len() {
        let Some(bytes) = reader.record(offset, (reader.len() - offset) as usize) else { break };
        let decoded = match record::decode(bytes, segment.id(), RECORD_BYTES_MAX) {
            Ok(decoded) => decoded,
            Err(record::DecodeError::Incomplete) => {
                report.problem(path, offset, "record runs past the committed length");
                walked_whole = false;
                break;
            }
            Err(record::DecodeError::Invalid(reason)) => {
                report.problem(path, offset, reason);
                walked_whole = false;
                break;
            }
        };
        report.records += 1;
        if decoded.position < segment.header.base_position || last.is_some_and(|l| decoded.position <= l) {
            report.problem(path, offset, "record position is not above the previous one");
            walked_whole = false;
            break;
        }
        last = Some(decoded.position);
        let Some(name) = bytes.get(..decoded.record_bytes).and_then(|r| text(r, decoded.stream_id.clone())) else {
            report.problem(path, offset, "stream id is not UTF-8");
            walked_whole = false;
            break;
        };
        let event_type = bytes.get(..decoded.record_bytes).and_then(|r| text(r, decoded.event_type.clone()));
        if event_type.is_none() {
            report.problem(path, offset, "event type is not UTF-8");
        }
        let event_type = event_type.unwrap_or_default().to_owned();
        let stream = mem.stream_id(name);
        pending.push((
            stream,
            IndexEntry::of_record(&decoded, offset),
            decoded.kind == RecordKind::Tombstone,
            event_type,
        ));
        offset += decoded.record_bytes as u64;
        if decoded.commit {
            for (stream, entry, tombstone, event_type) in pending.drain(..) {
                mem.push(&stream, entry, tombstone);
                if !tombstone {
                    mem.push_event_type(&event_type, entry);
                }
            }
            if checkpoint_cover == Some(offset) {
                at_cover = Some(index_file::encode(&mem, segment.id(), offset));
            }
        }
    }
    report.bytes += committed;
    if walked_whole && !pending.is_empty() {
        report.problem(path, offset, "segment ends inside a commit group");
    }
    let end = last.map_or(0, |l| l + 1).max(min_position).max(segment.header.compacted_end_position);
    if !walked_whole {
        return end;
    }
    verify_index_file(shared, segment, sealed, checkpoint_cover, at_cover, report);
    end
}

/// `covered_bytes` of the active segment's index checkpoint, if it has a readable one.
fn index_checkpoint_cover(shared: &Shared, segment: &Segment) -> Option<u64> {
    let path = layout::index_path_for(&segment.path);
    match index_file::read_summary(&*shared.storage, &path, segment.id()) {
        Ok(Ok(summary)) if summary.covered_bytes <= segment.committed_len() => Some(summary.covered_bytes),
        _ => None,
    }
}

/// Compares the index file of `segment` byte for byte with the index its records give
/// (`expected`, encoded at the file's coverage).
fn verify_index_file(
    shared: &Shared,
    segment: &Segment,
    sealed: bool,
    cover: Option<u64>,
    expected: Option<Vec<u8>>,
    report: &mut VerifyReport,
) {
    let path = layout::index_path_for(&segment.path);
    // An index holds at most one 24-byte entry and a few more bytes per record of at least
    // 64 bytes, plus its fixed parts: a larger file is damaged, and is not read whole.
    let limit = segment.committed_len().saturating_mul(2).saturating_add(1 << 20);
    let bytes = match read_whole(&*shared.storage, &path, limit) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if sealed {
                report.index_files_missing += 1;
            }
            return;
        }
        Err(error) => {
            report.index_files += 1;
            report.problem(&path, 0, format!("cannot read the index file: {error}"));
            return;
        }
    };
    report.index_files += 1;
    let derived = "(derived data: the next writable open rebuilds it)";
    if let Err(damage) = index_file::MappedIndex::parse(bytes::Bytes::from(bytes.clone()), segment.id()) {
        report.problem(&path, 0, format!("{damage} {derived}"));
        return;
    }
    let Some(expected) = expected else {
        let reason = match cover {
            Some(cover) => format!("index covers {cover} bytes, which do not end a commit group {derived}"),
            None => format!("index checkpoint covers more than the segment holds {derived}"),
        };
        report.problem(&path, 24, reason);
        return;
    };
    if bytes != expected {
        let at = bytes.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(bytes.len().min(expected.len()));
        report.problem(&path, at as u64, format!("index file differs from the index of its segment {derived}"));
    }
}
