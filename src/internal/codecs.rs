//! Decoder entry points for the fuzz targets in `fuzz/` (through `chronicle-testkit`) and for
//! `tests/fuzz_corpus.rs`, which replays
//! the committed corpus through the very same functions. Not a stable API: hidden from the
//! docs and free to change with the fuzz targets.
//!
//! Each `*_target` function takes the raw fuzz input, runs the real decoders (or opens a
//! real store) and returns a [`Verdict`]: `Ok(true)` if the bytes were accepted, `Ok(false)`
//! if they were rejected (both fine), `Err(violation)` if an invariant the engine promises
//! was broken. The fuzz targets turn a violation into a crash; they crash on a panic anyway.
//! None of these functions panics on its own.
//!
//! Input layouts (the first byte is a mode byte for the three decoder targets):
//!
//! | target | layout |
//! |---|---|
//! | `record_decoder` | mode, then bytes decoded as records of segment [`FUZZ_SEGMENT_ID`] |
//! | `segment_header` | mode, then bytes decoded as a segment header |
//! | `index_file` | mode, then bytes parsed as an index file (segment id taken from offset 16) |
//! | `open_directory` | entries `kind u8, id u8, len u16 LE, len bytes`, see [`open_directory_target`] |
//!
//! Mode bit 0 ([`MODE_RESEAL`]) recomputes the checksums before decoding, so the fuzzer can
//! reach the structural checks behind them; without it the bytes are decoded as they are.

use std::path::Path;

use crate::error::Error;
use crate::event::{ExpectedVersion, NewEvent};
use crate::format::crc32_salted;
use crate::format::record::{self, DecodeError, RECORD_BYTES_MAX, RECORD_HEADER_BYTES, RecordFields, RecordKind};
use crate::format::segment_header::{SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::index::MemIndex;
use crate::index::file::MappedIndex;
use crate::options::{Durability, Options, SEGMENT_BYTES_MIN};
use crate::segment::scan::scan;
use crate::store::Store;

/// `Ok(accepted)`, or `Err` naming the invariant that broke.
pub type Verdict = Result<bool, String>;

/// Segment id whose salt the `record_decoder` target's records carry.
pub const FUZZ_SEGMENT_ID: u64 = 1;
/// Mode bit: recompute checksums before decoding.
pub const MODE_RESEAL: u8 = 1;
/// Most files `open_directory_target` creates.
pub const DIRECTORY_FILES_MAX: usize = 12;
/// Largest file `open_directory_target` creates.
pub const DIRECTORY_FILE_BYTES_MAX: usize = u16::MAX as usize;

fn split_mode(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&mode, rest)) => (mode, rest),
        None => (0, data),
    }
}

// ---------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------

/// Decodes the record at the start of `bytes` (salted with [`FUZZ_SEGMENT_ID`]). An accepted
/// record must lie inside `bytes`, and encoding its fields again must give the same bytes
/// (the format has exactly one encoding per record).
pub fn decode_record(bytes: &[u8]) -> Verdict {
    decode_record_of(bytes, FUZZ_SEGMENT_ID)
}

fn decode_record_of(bytes: &[u8], segment_id: u64) -> Verdict {
    let decoded = match record::decode(bytes, segment_id, RECORD_BYTES_MAX) {
        Ok(decoded) => decoded,
        Err(DecodeError::Incomplete | DecodeError::Invalid(_)) => return Ok(false),
    };
    let record = bytes
        .get(..decoded.record_bytes)
        .ok_or_else(|| format!("accepted record of {} bytes from {} bytes", decoded.record_bytes, bytes.len()))?;
    let mut ranges = [&decoded.stream_id, &decoded.event_type, &decoded.metadata, &decoded.data];
    ranges.sort_by_key(|r| r.start);
    let variable_start = RECORD_HEADER_BYTES
        + 16 * usize::from(decoded.correlation_id.is_some())
        + 16 * usize::from(decoded.causation_id.is_some())
        + record::DURABLE_MARK_BYTES * usize::from(decoded.durable_mark.is_some());
    let mut cursor = variable_start;
    for range in ranges {
        if range.start != cursor || range.end < range.start {
            return Err(format!("field range {range:?} does not follow {cursor}"));
        }
        cursor = range.end;
    }
    if cursor != decoded.record_bytes {
        return Err(format!("fields end at {cursor}, record at {}", decoded.record_bytes));
    }
    if decoded.stream_id.is_empty() {
        return Err("accepted a record with an empty stream id".to_owned());
    }
    // The decoder leaves UTF-8 to the readers (they report Corruption); re-encoding needs text.
    let text = |range: &std::ops::Range<usize>| record.get(range.clone()).map(std::str::from_utf8);
    let (Some(Ok(stream_id)), Some(Ok(event_type))) = (text(&decoded.stream_id), text(&decoded.event_type)) else {
        return Ok(true);
    };
    let fields = RecordFields {
        kind: decoded.kind,
        position: decoded.position,
        version: decoded.version,
        timestamp_us: decoded.timestamp_us,
        id: decoded.id,
        correlation_id: decoded.correlation_id,
        causation_id: decoded.causation_id,
        durable_mark: decoded.durable_mark,
        stream_id,
        event_type,
        metadata: record.get(decoded.metadata.clone()).unwrap_or_default(),
        data: record.get(decoded.data.clone()).unwrap_or_default(),
    };
    let mut again = Vec::with_capacity(record.len());
    record::encode(&mut again, segment_id, &fields);
    if decoded.commit {
        record::mark_commit(&mut again, segment_id);
    }
    if again != record {
        return Err("re-encoding an accepted record gives different bytes".to_owned());
    }
    Ok(true)
}

/// Recomputes the checksum of every record in `bytes` walking the length fields from the
/// start, as far as the lengths frame whole records.
pub fn reseal_records(bytes: &mut [u8], segment_id: u64) {
    let mut offset = 0usize;
    while let Some(rest) = bytes.get_mut(offset..) {
        let Some(len) = rest.get(0..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize) else { break };
        if len < RECORD_HEADER_BYTES {
            break;
        }
        let Some(record) = rest.get_mut(..len) else { break };
        let crc = crc32_salted(segment_id, record.get(8..).unwrap_or_default());
        if let Some(field) = record.get_mut(4..8) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
        offset += len;
    }
}

/// The `record_decoder` target: decodes the first record, then scans all the bytes as a
/// segment body the way recovery does. The scan must stop inside the bytes, and its valid
/// length must end on a record boundary it accepted.
pub fn record_decoder_target(data: &[u8]) -> Verdict {
    let (mode, body) = split_mode(data);
    let mut body = body.to_vec();
    if mode & MODE_RESEAL != 0 {
        reseal_records(&mut body, FUZZ_SEGMENT_ID);
    }
    let accepted = decode_record(&body)?;
    let mut mem = MemIndex::default();
    let outcome = scan(&body, FUZZ_SEGMENT_ID, 0, 0, None, RECORD_BYTES_MAX, &mut mem);
    if outcome.valid_len > body.len() as u64 {
        return Err(format!("scan valid length {} past {} bytes", outcome.valid_len, body.len()));
    }
    let indexed: usize = mem.streams.values().map(|s| s.entries.len() + usize::from(s.tombstone.is_some())).sum();
    // A stream keeps one tombstone: a forged second one (same stream, new position) only
    // shows in the positions. Genuine records cannot repeat a tombstone.
    let forged = mode & MODE_RESEAL != 0;
    if indexed > mem.positions.len() || (!forged && indexed != mem.positions.len()) {
        return Err(format!("scan indexed {indexed} stream entries but {} positions", mem.positions.len()));
    }
    if mem.positions.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err("scan indexed positions that do not increase".to_owned());
    }
    if mem.positions.len() > body.len() / RECORD_HEADER_BYTES {
        return Err("scan indexed more records than fit the bytes".to_owned());
    }
    Ok(accepted)
}

// ---------------------------------------------------------------------------------------
// Segment header
// ---------------------------------------------------------------------------------------

/// Decodes a segment header; an accepted one must encode back to the same 64 bytes.
pub fn parse_segment_header(bytes: &[u8]) -> Verdict {
    let Ok(header) = SegmentHeader::decode(bytes) else { return Ok(false) };
    if bytes.get(..SEGMENT_HEADER_BYTES) != Some(&header.encode()[..]) {
        return Err("re-encoding an accepted segment header gives different bytes".to_owned());
    }
    Ok(true)
}

/// Recomputes a segment header's checksum (bytes [60, 64) over [0, 60)).
pub fn reseal_segment_header(bytes: &mut [u8]) {
    if let Some(head) = bytes.get_mut(..SEGMENT_HEADER_BYTES) {
        let crc = crc32_salted(0, head.get(..60).unwrap_or_default());
        if let Some(field) = head.get_mut(60..64) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// The `segment_header` target.
pub fn segment_header_target(data: &[u8]) -> Verdict {
    let (mode, body) = split_mode(data);
    let mut body = body.to_vec();
    if mode & MODE_RESEAL != 0 {
        reseal_segment_header(&mut body);
    }
    parse_segment_header(&body)
}

// ---------------------------------------------------------------------------------------
// Index files
// ---------------------------------------------------------------------------------------

/// Parses an index file for the segment id stored at its offset 16 (0 if too short). An
/// accepted index is then queried the way reads and recovery query it; every answer must be
/// consistent with what `parse` validated.
pub fn parse_index_file(bytes: &[u8]) -> Verdict {
    let segment_id = read_u64(bytes, 16).unwrap_or(0);
    let Ok(index) = MappedIndex::parse(bytes::Bytes::copy_from_slice(bytes), segment_id) else { return Ok(false) };
    // Parts are verified on use: a lookup may fail (the engine then rebuilds the index), but
    // one that answers must answer consistently.
    let mut total = 0usize;
    let mut out = Vec::new();
    for stream in index.streams().unwrap_or_default() {
        out.clear();
        if index.stream_entries(stream.name, 0, u64::MAX, &mut out).is_err() {
            continue;
        }
        if out.windows(2).any(|w| w[0].version >= w[1].version) {
            return Err(format!("entries of stream {:?} are not sorted by version", stream.name));
        }
        if out.iter().any(|e| u64::from(e.offset) + u64::from(e.record_bytes) > index.covered_bytes) {
            return Err(format!("an entry of stream {:?} points past the covered bytes", stream.name));
        }
        if out.last().map(|e| e.version) != stream.last_version {
            return Err(format!("stream {:?}: lookup does not end at its last version", stream.name));
        }
        total += out.len();
        if total > bytes.len() {
            return Err("lookups returned more entries than the file can hold".to_owned());
        }
    }
    for position in [0, 1, index.next_position.saturating_sub(1), index.next_position, u64::MAX] {
        let _ = index.scan_start(position);
    }
    // What recovery does with the active segment's index file.
    if let Ok(mem) = index.to_mem() {
        if mem.positions.len() as u64 != index.record_count {
            return Err("checkpoint converted to a different number of records".to_owned());
        }
        let in_streams: usize =
            mem.streams.values().map(|s| s.entries.len() + usize::from(s.tombstone.is_some())).sum();
        if in_streams != mem.positions.len() {
            return Err("checkpoint streams and positions disagree".to_owned());
        }
        // Type entries (version 4: numbers of stream entries) read back sorted, inside the
        // covered bytes, and as positions the segment's records hold.
        for name in mem.types.keys() {
            out.clear();
            if index.type_entries(&[name.to_string()], 0, u64::MAX, &mut out).is_err() {
                return Err(format!("type {name:?}: the checkpoint converted but its type entries fail"));
            }
            if out.windows(2).any(|w| w[0].position >= w[1].position) {
                return Err(format!("type entries of {name:?} are not sorted by position"));
            }
            if out.iter().any(|e| u64::from(e.offset) + u64::from(e.record_bytes) > index.covered_bytes) {
                return Err(format!("a type entry of {name:?} points past the covered bytes"));
            }
            if out.iter().any(|e| mem.positions.binary_search_by_key(&e.position, |&(p, _)| p).is_err()) {
                return Err(format!("a type entry of {name:?} names a position no record has"));
            }
        }
    }
    Ok(true)
}

/// Recomputes every checksum of an index file (header, each stream record and its entries,
/// the positions trailer); see `src/index/file.rs`.
pub fn reseal_index(bytes: &mut [u8]) {
    crate::index::file::reseal(bytes);
}

/// The `index_file` target.
pub fn index_file_target(data: &[u8]) -> Verdict {
    let (mode, body) = split_mode(data);
    let mut body = body.to_vec();
    if mode & MODE_RESEAL != 0 {
        reseal_index(&mut body);
    }
    parse_index_file(&body)
}

fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let field: [u8; 8] = bytes.get(offset..offset + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(field))
}

// ---------------------------------------------------------------------------------------
// Snapshot files
// ---------------------------------------------------------------------------------------

/// Decodes a snapshot file; an accepted one must lie inside the bytes and encode back to
/// the same bytes.
pub fn parse_snapshot_file(bytes: &[u8]) -> Verdict {
    let Ok(decoded) = crate::format::snapshot_file::decode(bytes) else { return Ok(false) };
    let data = bytes
        .get(decoded.data.clone())
        .ok_or_else(|| format!("accepted snapshot data {:?} outside {} bytes", decoded.data, bytes.len()))?;
    let created_unix_ms = read_u64(bytes, 24).ok_or("accepted a snapshot without its header")?;
    if crate::format::snapshot_file::encode(decoded.stream, decoded.version, created_unix_ms, data) != bytes {
        return Err("re-encoding an accepted snapshot gives different bytes".to_owned());
    }
    Ok(true)
}

/// Recomputes a snapshot file's trailer (CRC-32 of every byte before it).
pub fn reseal_snapshot(bytes: &mut [u8]) {
    let Some(body_len) = bytes.len().checked_sub(4) else { return };
    let crc = crc32_salted(0, bytes.get(..body_len).unwrap_or_default());
    if let Some(field) = bytes.get_mut(body_len..) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
}

/// The `snapshot_file` target.
pub fn snapshot_file_target(data: &[u8]) -> Verdict {
    let (mode, body) = split_mode(data);
    let mut body = body.to_vec();
    if mode & MODE_RESEAL != 0 {
        reseal_snapshot(&mut body);
    }
    parse_snapshot_file(&body)
}

/// A snapshot file (for seed corpora): `stream` at `version` holding `state`.
pub fn encode_snapshot(stream: &str, version: u64, state: &[u8]) -> Vec<u8> {
    crate::format::snapshot_file::encode(stream, version, 1_700_000_000_000, state)
}

/// The name the store gives the snapshot file of `stream` at `version`.
pub fn snapshot_file_name(stream: &str, version: u64) -> String {
    format!("snapshot-{:016x}-{version:016x}.snap", crate::index::stream_hash(stream))
}

// ---------------------------------------------------------------------------------------
// Opening a directory
// ---------------------------------------------------------------------------------------

/// One file of an `open_directory` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryFile {
    /// File name inside the store directory.
    pub name: String,
    /// Contents (checksums already recomputed if the entry asked for it).
    pub bytes: Vec<u8>,
    /// The checksums were recomputed: the bytes may be a forgery that passes every check.
    pub resealed: bool,
}

/// Kind bits (low three) of an `open_directory` entry: which file it becomes.
pub const ENTRY_SEGMENT: u8 = 0;
/// An index file.
pub const ENTRY_INDEX: u8 = 1;
/// A leftover temporary file (`segment-….idx.tmp`).
pub const ENTRY_INDEX_TMP: u8 = 2;
/// A file with a name the store does not use (`segment-….bak`); also kinds 6 and 7.
pub const ENTRY_OTHER: u8 = 3;
/// The stream-table checkpoint `streams.chk` (the id byte is ignored).
pub const ENTRY_STREAM_CHECKPOINT: u8 = 5;
/// A snapshot file of stream [`SNAPSHOT_STREAMS`]`[id % 4]` at version `id / 4`.
pub const ENTRY_SNAPSHOT: u8 = 4;
/// Streams that `ENTRY_SNAPSHOT` files belong to (those of the seed stores).
pub const SNAPSHOT_STREAMS: [&str; 4] = ["order-1", "order-2", "käse-λ", "fuzz-probe"];
/// Kind bit: recompute checksums (segment header and records, or index) before writing.
pub const ENTRY_RESEAL: u8 = 0x80;

/// Decodes an `open_directory` input: up to [`DIRECTORY_FILES_MAX`] entries of
/// `kind u8, id u8, len u16 LE, len bytes` (a short last entry takes what is left). The
/// segment id is `id`; a later entry with the same name replaces an earlier one.
pub fn directory_files(data: &[u8]) -> Vec<DirectoryFile> {
    let mut files: Vec<DirectoryFile> = Vec::new();
    let mut rest = data;
    while files.len() < DIRECTORY_FILES_MAX && rest.len() >= 4 {
        let (kind, id, len) = (rest[0], u64::from(rest[1]), usize::from(u16::from_le_bytes([rest[2], rest[3]])));
        let body = &rest[4..];
        let take = len.min(body.len()).min(DIRECTORY_FILE_BYTES_MAX);
        let mut bytes = body[..take].to_vec();
        rest = &body[take..];
        let stem = crate::layout::segment_file_name(id);
        let stem = stem.trim_end_matches(".log");
        let name = match kind & 7 {
            ENTRY_SEGMENT => format!("{stem}.log"),
            ENTRY_INDEX => format!("{stem}.idx"),
            ENTRY_INDEX_TMP => format!("{stem}.idx.tmp"),
            ENTRY_SNAPSHOT => snapshot_file_name(SNAPSHOT_STREAMS[(id % 4) as usize], id / 4),
            ENTRY_STREAM_CHECKPOINT => crate::index::checkpoint::CHECKPOINT_FILE.to_owned(),
            _ => format!("{stem}.bak"),
        };
        if kind & ENTRY_RESEAL != 0 {
            match kind & 7 {
                ENTRY_SEGMENT => {
                    reseal_segment_header(&mut bytes);
                    let salt = read_u64(&bytes, 16).unwrap_or(id);
                    if let Some(records) = bytes.get_mut(SEGMENT_HEADER_BYTES..) {
                        reseal_records(records, salt);
                    }
                }
                ENTRY_INDEX => reseal_index(&mut bytes),
                ENTRY_SNAPSHOT => reseal_snapshot(&mut bytes),
                ENTRY_STREAM_CHECKPOINT => crate::index::checkpoint::reseal(&mut bytes),
                _ => {}
            }
        }
        files.retain(|f| f.name != name);
        files.push(DirectoryFile { name, bytes, resealed: kind & ENTRY_RESEAL != 0 });
    }
    files
}

/// Encodes files as an `open_directory` input (for seed corpora): the inverse of
/// [`directory_files`] for files named as it names them, without the reseal bit.
pub fn encode_directory_entry(out: &mut Vec<u8>, kind: u8, segment_id: u8, bytes: &[u8]) {
    let len = bytes.len().min(DIRECTORY_FILE_BYTES_MAX);
    out.push(kind);
    out.push(segment_id);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(bytes.get(..len).unwrap_or_default());
}

/// The `open_directory` target: writes the files of `data` into `dir` (which must be empty
/// or missing), opens it as a store, reads everything every way, appends one event, closes,
/// reopens and reads again. Errors are fine if they are `Corruption` or `Io`; every read
/// must end within a bound set by the bytes present (no endless iteration).
pub fn open_directory_target(data: &[u8], dir: &Path) -> Verdict {
    std::fs::create_dir_all(dir).map_err(|e| format!("harness: create {}: {e}", dir.display()))?;
    let files = directory_files(data);
    let total_bytes: usize = files.iter().map(|f| f.bytes.len()).sum();
    for file in &files {
        std::fs::write(dir.join(&file.name), &file.bytes).map_err(|e| format!("harness: write {}: {e}", file.name))?;
    }
    // With recomputed checksums the files can be a consistent-looking forgery (an index that
    // disagrees with its segment, one stream version twice): the engine must not crash, hang or
    // over-allocate on it, but the equality oracles below hold only for genuine checksums.
    let forged = files.iter().any(|f| f.resealed);
    // Each event takes at least one record header; allow a little for the appended probe.
    let items_max = total_bytes / RECORD_HEADER_BYTES + 4;
    let options = || Options::default().segment_bytes(SEGMENT_BYTES_MIN).durability(Durability::Buffered);
    let store = match Store::open_with(dir, options()) {
        Ok(store) => store,
        Err(error) => return allowed(error).map(|()| false),
    };
    let before = read_everything(&store, items_max)?;
    let streams_before = read_streams(&store, items_max)?;
    // Compaction (no retention rules here: only deleted streams may lose events) must leave
    // every live stream exactly as it was.
    let first = match store.compact() {
        Ok(_) => {
            let streams_after = read_streams(&store, items_max)?;
            for (stream, events) in &streams_before {
                let after = streams_after.iter().find(|(name, _)| name == stream).map(|(_, events)| events);
                if let (false, Some(events), Some(Some(after))) = (forged, events, after)
                    && events != after
                {
                    return Err(format!(
                        "compaction changed live stream {stream:?}: {} events before, {} after",
                        events.len(),
                        after.len()
                    ));
                }
            }
            read_everything(&store, items_max)?
        }
        Err(error) => {
            allowed(error)?;
            before
        }
    };
    let probe = match store.append("fuzz-probe", ExpectedVersion::Any, [NewEvent::new("Probe", "p")]) {
        Ok(result) => Some(result),
        Err(error @ (Error::WrongExpectedVersion { .. } | Error::StreamDeleted { .. })) => {
            return Err(format!("probe append to a fresh stream failed: {error}"));
        }
        Err(error) => allowed(error).map(|()| None)?,
    };
    let closed = match store.close() {
        Ok(()) => true,
        Err(error) => allowed(error).map(|()| false)?,
    };
    // Sealed segments are never modified in place: of the segments with a valid header, only
    // the last in (base position, id) order, the active one, may be cut. (A forged header can
    // claim to be a compaction's replacement of the others, which recovery then removes.)
    let with_header: Vec<(u64, u64, &DirectoryFile)> = files
        .iter()
        .filter_map(|f| {
            let id = segment_id_of(&f.name)?;
            SegmentHeader::decode(&f.bytes).ok().map(|h| (h.base_position, id, f))
        })
        .collect();
    let active = with_header.iter().map(|&(base, id, _)| (base, id)).max();
    for (_, _, file) in with_header.iter().filter(|&&(base, id, _)| !forged && Some((base, id)) != active) {
        if let Ok(now) = std::fs::read(dir.join(&file.name))
            && now != file.bytes
        {
            return Err(format!("{} is not the newest segment but open changed its bytes", file.name));
        }
    }
    match Store::open_with(dir, options()) {
        Ok(store) => {
            let second = read_everything(&store, items_max)?;
            // A clean close then reopen reads what the first open read, plus the probe.
            if let (false, Some(first), Some(second), Some(probe), true) = (forged, &first, &second, &probe, closed) {
                let same_prefix = second.len() == first.len() + 1 && second.get(..first.len()) == Some(&first[..]);
                let probe_ok =
                    second.last().is_some_and(|e| e.stream_id == "fuzz-probe" && e.position == probe.first_position);
                if !same_prefix || !probe_ok {
                    return Err(format!(
                        "reopen after a clean close reads {} events; the first open read {} and appended one",
                        second.len(),
                        first.len()
                    ));
                }
            }
            if let Err(error) = store.close() {
                allowed(error)?;
            }
        }
        Err(error) => allowed(error)?,
    }
    Ok(true)
}

fn segment_id_of(name: &str) -> Option<u64> {
    crate::layout::parse_segment_file_name(name)
}

fn allowed(error: Error) -> Result<(), String> {
    match error {
        Error::Corruption { .. } | Error::Io { .. } | Error::Poisoned { .. } | Error::Closed => Ok(()),
        other => Err(format!("unexpected error kind: {other}")),
    }
}

/// Collects `iter`'s events; `None` instead if it ended with an (allowed) error.
fn drain<I>(iter: I, items_max: usize, what: &str) -> Result<Option<Vec<crate::event::RecordedEvent>>, String>
where
    I: Iterator<Item = crate::error::Result<crate::event::RecordedEvent>>,
{
    let mut events = Vec::new();
    for item in iter {
        match item {
            Ok(event) => events.push(event),
            Err(error) => return allowed(error).map(|()| None),
        }
        if events.len() > items_max {
            return Err(format!("{what} returned more than {items_max} events"));
        }
    }
    Ok(Some(events))
}

/// Every live stream with its events read forward (`None` if the read ended in an error).
#[allow(clippy::type_complexity)]
fn read_streams(
    store: &Store,
    items_max: usize,
) -> Result<Vec<(String, Option<Vec<crate::event::RecordedEvent>>)>, String> {
    let streams = store.streams().map_err(|e| format!("streams failed: {e}"))?;
    let mut out = Vec::new();
    for stream in streams.into_iter().take(items_max) {
        let events = match store.read_stream(&stream, 0) {
            Ok(iter) => drain(iter, items_max, "read_stream")?,
            Err(error) => allowed(error).map(|()| None)?,
        };
        out.push((stream, events));
    }
    Ok(out)
}

/// Reads everything every way; returns the forward `read_all` if it completed.
fn read_everything(store: &Store, items_max: usize) -> Result<Option<Vec<crate::event::RecordedEvent>>, String> {
    let read_all = |result: crate::error::Result<crate::read::AllIter>, what: &str| match result {
        Ok(iter) => drain(iter, items_max, what),
        Err(error) => allowed(error).map(|()| None),
    };
    let forward = read_all(store.read_all(0), "read_all")?;
    let _ = read_all(store.read_all_backward(None), "read_all_backward")?;
    let streams = store.streams().map_err(|e| format!("streams failed: {e}"))?;
    if streams.len() > items_max {
        return Err(format!("{} streams from at most {items_max} events", streams.len()));
    }
    for stream in &streams {
        match store.read_stream(stream, 0) {
            Ok(iter) => {
                drain(iter, items_max, "read_stream")?;
            }
            Err(error) => allowed(error)?,
        }
        match store.read_stream_backward(stream, None) {
            Ok(iter) => {
                drain(iter, items_max, "read_stream_backward")?;
            }
            Err(error) => allowed(error)?,
        }
        if let Err(error) = store.stream_version(stream) {
            allowed(error)?;
        }
        if let Err(error) = store.load_snapshot(stream) {
            allowed(error)?;
        }
    }
    for stream in SNAPSHOT_STREAMS {
        if let Err(error) = store.load_snapshot(stream) {
            match error {
                Error::StreamDeleted { .. } => {}
                other => allowed(other)?,
            }
        }
    }
    if let Some(first) = forward.as_ref().and_then(|events| events.first()) {
        let _ = read_all(store.read_all(first.position.saturating_add(1)), "read_all from a position")?;
    }
    Ok(forward)
}

/// One encoded record (for seed corpora and tests), salted with `segment_id`.
#[allow(clippy::too_many_arguments)]
pub fn encode_record(
    segment_id: u64,
    position: u64,
    version: u64,
    stream_id: &str,
    event_type: &str,
    metadata: &[u8],
    data: &[u8],
    commit: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let fields = RecordFields {
        kind: RecordKind::Event,
        position,
        version,
        timestamp_us: 1_700_000_000_000_000 + position,
        id: u128::from(position) << 64 | 0xfeed,
        correlation_id: position.is_multiple_of(2).then_some(7),
        causation_id: position.is_multiple_of(3).then_some(9),
        durable_mark: (version == 0).then_some(64),
        stream_id,
        event_type,
        metadata,
        data,
    };
    record::encode(&mut out, segment_id, &fields);
    if commit {
        record::mark_commit(&mut out, segment_id);
    }
    out
}
