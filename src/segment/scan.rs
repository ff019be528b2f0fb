//! Scanning a segment's records to rebuild its index and find where its valid data ends.

use std::sync::Arc;

use crate::format::record::{self, RecordKind, text};
use crate::index::{IndexEntry, MemIndex};

/// What a scan found.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    /// End of the last whole commit group: the segment's valid length.
    pub(crate) valid_len: u64,
    /// Where and why the scan stopped before the end of the bytes, if it did.
    pub(crate) stopped: Option<(u64, &'static str)>,
    /// Records after `valid_len` that decoded but whose group has no COMMIT record.
    pub(crate) uncommitted_records: usize,
}

/// Scans `bytes` (a whole segment file) from `start` and appends every record of every
/// whole commit group to `mem`. `last_position` is the largest position already indexed
/// (records must have larger positions, and at least `base_position`).
pub(crate) fn scan(
    bytes: &[u8],
    segment_id: u64,
    start: u64,
    base_position: u64,
    mut last_position: Option<u64>,
    record_bytes_max: usize,
    mem: &mut MemIndex,
) -> ScanOutcome {
    let mut offset = start;
    let mut valid_len = start;
    let mut uncommitted: Vec<(Arc<str>, IndexEntry, bool, Arc<str>)> = Vec::new();
    let mut stopped = None;
    while let Some(rest) = usize::try_from(offset).ok().and_then(|at| bytes.get(at..)).filter(|rest| !rest.is_empty()) {
        let decoded = match record::decode(rest, segment_id, record_bytes_max) {
            Ok(decoded) => decoded,
            Err(record::DecodeError::Incomplete) => {
                stopped = Some((offset, "record runs past the end of the file"));
                break;
            }
            Err(record::DecodeError::Invalid(reason)) => {
                stopped = Some((offset, reason));
                break;
            }
        };
        if decoded.position < base_position || last_position.is_some_and(|last| decoded.position <= last) {
            stopped = Some((offset, "record position is not above the previous one"));
            break;
        }
        if offset > u64::from(u32::MAX) {
            stopped = Some((offset, "record offset beyond 4 GiB"));
            break;
        }
        last_position = Some(decoded.position);
        let Some(name) = rest.get(..decoded.record_bytes).and_then(|r| text(r, decoded.stream_id.clone())) else {
            stopped = Some((offset, "stream id is not UTF-8"));
            break;
        };
        let stream = mem.stream_id(name);
        let event_type = rest.get(..decoded.record_bytes).and_then(|r| text(r, decoded.event_type.clone()));
        let event_type: Arc<str> = match mem.types.get_key_value(event_type.unwrap_or_default()) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(event_type.unwrap_or_default()),
        };
        let tombstone = decoded.kind == RecordKind::Tombstone;
        uncommitted.push((stream, IndexEntry::of_record(&decoded, offset), tombstone, event_type));
        offset += decoded.record_bytes as u64;
        if decoded.commit {
            for (stream, entry, tombstone, event_type) in uncommitted.drain(..) {
                mem.push(&stream, entry, tombstone);
                if !tombstone {
                    mem.push_event_type(&event_type, entry);
                }
            }
            valid_len = offset;
        }
    }
    ScanOutcome { valid_len, stopped, uncommitted_records: uncommitted.len() }
}

/// Looks past a bad record at `bad_offset` for a valid record whose durable mark proves that
/// `bad_offset` had been fsynced before that record was written. Such a record turns "torn
/// tail" into "damage in durable data" (corruption). Returns the proving record's offset.
///
/// Candidates are tried at every byte offset, but `decode` rejects garbage on its framing
/// checks (kind, flags, reserved bytes, lengths adding up) before it computes a checksum, so
/// the search is linear in practice. Zero-filled stretches are skipped in one step each.
pub(crate) fn find_durable_proof(
    bytes: &[u8],
    segment_id: u64,
    bad_offset: u64,
    record_bytes_max: usize,
) -> Option<u64> {
    let start = usize::try_from(bad_offset).ok()?.checked_add(1)?;
    let mut at = start;
    while let Some(rest) = bytes.get(at..) {
        if rest.len() < crate::format::record::RECORD_HEADER_BYTES {
            return None;
        }
        if rest.first() == Some(&0) {
            // Zeros (a preallocated segment's unwritten space) frame no record.
            at += first_nonzero(rest)?;
            continue;
        }
        if let Ok(decoded) = record::decode(rest, segment_id, record_bytes_max)
            && decoded.durable_mark.is_some_and(|mark| mark > bad_offset)
        {
            return Some(at as u64);
        }
        at += 1;
    }
    None
}

/// Bytes compared at a time when skipping zeros: wide enough for the compiler to compare
/// whole vector registers, so a 64 MiB zero-filled tail is skipped in milliseconds.
const ZERO_CHUNK_BYTES: usize = 64;

/// Offset of the first non-zero byte of `bytes`, if any.
pub(crate) fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    let mut skipped = 0;
    for chunk in bytes.chunks_exact(ZERO_CHUNK_BYTES) {
        if chunk.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            break;
        }
        skipped += ZERO_CHUNK_BYTES;
    }
    bytes.get(skipped..)?.iter().position(|&b| b != 0).map(|at| skipped + at)
}

/// One past the last non-zero byte of `bytes` (0 if all of it is zero).
pub(crate) fn nonzero_end(bytes: &[u8]) -> usize {
    let mut end = bytes.len();
    for chunk in bytes.rchunks_exact(ZERO_CHUNK_BYTES) {
        if chunk.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            break;
        }
        end -= ZERO_CHUNK_BYTES;
    }
    bytes.get(..end).and_then(|head| head.iter().rposition(|&b| b != 0)).map_or(0, |at| at + 1)
}

/// Indexes a whole sealed segment (`bytes` is the file): every record from the header on,
/// positions from `min_position` on, and nothing after the last whole commit group.
///
/// # Errors
/// [`Error::Corruption`] naming `path` and the offset where the scan stopped.
pub(crate) fn index_sealed(
    bytes: &[u8],
    path: &std::path::Path,
    header: &crate::format::segment_header::SegmentHeader,
    min_position: u64,
) -> crate::error::Result<MemIndex> {
    let mut mem = MemIndex::default();
    let outcome = scan(
        bytes,
        header.segment_id,
        crate::format::segment_header::SEGMENT_HEADER_BYTES as u64,
        header.base_position.max(min_position),
        min_position.checked_sub(1),
        record::RECORD_BYTES_MAX,
        &mut mem,
    );
    if let Some((offset, reason)) = outcome.stopped {
        return Err(crate::error::Error::corruption(path, offset, reason));
    }
    if outcome.valid_len != bytes.len() as u64 {
        return Err(crate::error::Error::corruption(
            path,
            outcome.valid_len,
            "sealed segment ends inside a commit group",
        ));
    }
    Ok(mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_runs_are_measured_exactly_at_every_alignment() {
        for len in [0usize, 1, 63, 64, 65, 200, 1000] {
            let zeros = vec![0u8; len];
            assert_eq!(first_nonzero(&zeros), None);
            assert_eq!(nonzero_end(&zeros), 0);
            for at in 0..len {
                let mut bytes = zeros.clone();
                bytes[at] = 1;
                assert_eq!(first_nonzero(&bytes), Some(at), "len {len} at {at}");
                assert_eq!(nonzero_end(&bytes), at + 1, "len {len} at {at}");
            }
        }
    }
}
