//! Helpers shared by the integration tests: reading everything back, listing and copying
//! store files, walking the records of a segment file by its documented layout.
#![allow(dead_code)] // every test crate includes this module and uses a different subset of it

use std::fs;
use std::path::{Path, PathBuf};

use chronicle::{RecordedEvent, Store};

/// Size of the segment file header (segment-format.md).
pub const SEGMENT_HEADER_BYTES: u64 = 64;

/// Every event of the store, forward, failing the test on any error.
pub fn read_all(store: &Store) -> Vec<RecordedEvent> {
    store.read_all(0).expect("read_all").collect::<Result<_, _>>().expect("read_all item")
}

/// Every event of the store, backward from the last.
pub fn read_all_backward(store: &Store) -> Vec<RecordedEvent> {
    store.read_all_backward(None).expect("read_all_backward").collect::<Result<_, _>>().expect("read_all_backward item")
}

/// Every event of one stream, forward.
pub fn read_stream(store: &Store, stream: &str) -> Vec<RecordedEvent> {
    store.read_stream(stream, 0).expect("read_stream").collect::<Result<_, _>>().expect("read_stream item")
}

/// Every event of one stream, backward from its last.
pub fn read_stream_backward(store: &Store, stream: &str) -> Vec<RecordedEvent> {
    store
        .read_stream_backward(stream, None)
        .expect("read_stream_backward")
        .collect::<Result<_, _>>()
        .expect("read_stream_backward item")
}

/// Positions of a list of events.
pub fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

/// Paths in `dir` whose file name ends with `suffix`, sorted by name.
pub fn files_ending_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(suffix)))
        .collect();
    paths.sort();
    paths
}

/// Segment files (`segment-*.log`) in id order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    files_ending_with(dir, ".log").into_iter().filter(|p| is_named(p, "segment-")).collect()
}

/// Index files (`segment-*.idx`) in id order.
pub fn index_files(dir: &Path) -> Vec<PathBuf> {
    files_ending_with(dir, ".idx").into_iter().filter(|p| is_named(p, "segment-")).collect()
}

fn is_named(path: &Path, prefix: &str) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix))
}

/// Total length of all segment files.
pub fn segment_bytes_total(dir: &Path) -> u64 {
    segment_files(dir).iter().map(|p| fs::metadata(p).expect("metadata").len()).sum()
}

/// Total bytes of the logs of all segment files: each one's header and records, without
/// the zeros a preallocated (format 2) segment may hold after its log while the store is
/// open (segment-format.md §3.5).
pub fn log_bytes_total(dir: &Path) -> u64 {
    segment_files(dir).iter().map(|p| records_of(p).last().map_or(SEGMENT_HEADER_BYTES, |r| r.offset + r.len)).sum()
}

/// Copies the regular files of `from` into `to` (created if missing), except the lock file.
pub fn copy_store_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create copy dir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("dir entry");
        if entry.file_type().expect("file type").is_file() && entry.file_name() != "LOCK" {
            fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
        }
    }
}

/// One record found by [`records_of`]: where it starts, how long it is, and its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    pub offset: u64,
    pub len: u64,
    pub position: u64,
}

/// Walks the records of a segment file using the framing in segment-format.md: each
/// record starts with its total length (u32 LE) and carries its position (u64 LE) at
/// offset 16. Stops at the end of the file or at a length that does not fit.
pub fn records_of(segment: &Path) -> Vec<RecordSpan> {
    let bytes = fs::read(segment).expect("read segment");
    let mut spans = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES as usize;
    while offset + 24 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        if len < 64 || offset + len > bytes.len() {
            break;
        }
        let position = u64::from_le_bytes(bytes[offset + 16..offset + 24].try_into().unwrap());
        spans.push(RecordSpan { offset: offset as u64, len: len as u64, position });
        offset += len;
    }
    spans
}

/// Flips one bit of the file at `offset`.
pub fn flip_bit(path: &Path, offset: u64, bit: u8) {
    let mut bytes = fs::read(path).expect("read file");
    bytes[offset as usize] ^= 1 << bit;
    fs::write(path, bytes).expect("write file");
}

/// Length of a file.
pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("metadata").len()
}
