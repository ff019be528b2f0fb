//! Following a store that another process writes: the state behind
//! [`Store::open_read_only`](crate::Store::open_read_only).
//!
//! A read-only store never writes, truncates or removes anything in the directory (its
//! storage refuses it: `storage::read_only`) and takes no lock. It builds the view the writer
//! would publish from the files alone and keeps it current: a *refresh* reads the bytes the
//! active segment gained since the last one (with `pread`, never through a map, so a writer's
//! recovery cutting a torn tail can never fault a reader) and publishes only whole commit
//! groups whose records verify, then lists the directory to see rolls and compaction swaps.
//! `segment-format.md` §11 states what a reader may rely on.
//!
//! Every sealed segment's maps are kept (pinned) while the view lists it: the writer may
//! remove a file at any moment (compaction), and a reader in another process cannot delay
//! the removal as the writer's own readers do, so it maps what it may read before it can
//! disappear. Maps hold no descriptor; the active segment keeps one read-only descriptor.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::record::{self, RECORD_BYTES_MAX, RecordKind, text};
use crate::format::segment_header::{SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::index::streams::{StreamState, StreamTable};
use crate::index::{IndexEntry, MemIndex, SegmentIndex};
use crate::layout;
use crate::recovery::{merge_streams, segment_end_position};
use crate::segment::Segment;
use crate::shared::Shared;
use crate::storage::{OpenMode, StorageFile};
use crate::sync;

/// The longest a read call on a read-only store works from a view older than this: a read
/// refreshes first when the last refresh started this long ago or more.
/// [`Store::refresh`](crate::Store::refresh) refreshes at once.
pub const READ_ONLY_REFRESH_INTERVAL: Duration = Duration::from_millis(10);

/// How often one refresh lists the directory again when what it found was in the middle of
/// a change (a file gone between listing and opening it).
const LIST_ATTEMPTS_MAX: u32 = 8;
/// First read window for new bytes of the active segment; doubled while one commit group
/// does not fit, up to the bytes present.
const TAIL_WINDOW_BYTES_MIN: u64 = 1 << 20;

/// A read-only store's refresh state.
#[derive(Debug)]
pub(crate) struct Follower {
    /// One refresh at a time.
    refreshing: Mutex<()>,
    epoch: Instant,
    /// When the last refresh started, in microseconds since `epoch` (`u64::MAX`: never).
    last_refresh_us: AtomicU64,
    refreshes: AtomicU64,
}

/// Why one refresh attempt did not finish.
enum Attempt {
    /// The directory changed under the refresh; listing again may succeed.
    Raced(Error),
    Failed(Error),
}

impl From<Error> for Attempt {
    fn from(error: Error) -> Self {
        Attempt::Failed(error)
    }
}

/// Stream states to fold into the published table.
type StreamChanges = Vec<(Arc<str>, StreamState)>;

/// Records of whole commit groups found past a segment's committed length.
#[derive(Default)]
struct Tail {
    committed: u64,
    /// Stream id, index entry, tombstone, event type.
    records: Vec<(String, IndexEntry, bool, String)>,
}

impl Follower {
    pub(crate) fn new() -> Self {
        Follower {
            refreshing: Mutex::new(()),
            epoch: Instant::now(),
            last_refresh_us: AtomicU64::new(u64::MAX),
            refreshes: AtomicU64::new(0),
        }
    }

    /// Refreshes once [`READ_ONLY_REFRESH_INTERVAL`] has passed since the last refresh.
    pub(crate) fn refresh_if_due(&self, shared: &Shared) -> Result<()> {
        let last = self.last_refresh_us.load(Ordering::Acquire);
        let now = self.now_us();
        if last != u64::MAX && now.saturating_sub(last) < READ_ONLY_REFRESH_INTERVAL.as_micros() as u64 {
            return Ok(());
        }
        self.refresh(shared)
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX - 1)
    }

    /// Refreshes completed since open.
    pub(crate) fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// Brings the view up to what the directory holds now.
    pub(crate) fn refresh(&self, shared: &Shared) -> Result<()> {
        let _one = sync::lock(&self.refreshing);
        self.last_refresh_us.store(self.now_us(), Ordering::Release);
        let mut attempt = 0u32;
        loop {
            match refresh_once(shared) {
                Ok(()) => {
                    self.refreshes.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(Attempt::Raced(error)) if attempt + 1 < LIST_ATTEMPTS_MAX => {
                    tracing::debug!(%error, attempt, "the store directory changed during a refresh; listing again");
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(u64::from(attempt)));
                }
                Err(Attempt::Raced(error) | Attempt::Failed(error)) => return Err(error),
            }
        }
    }
}

/// One refresh: new bytes of the active segment, then the directory.
fn refresh_once(shared: &Shared) -> std::result::Result<(), Attempt> {
    let segments = shared.segments();
    if let Some(active) = segments.last()
        && active.append_file().is_some()
    {
        let last = shared.next_position().checked_sub(1);
        let (end, changes) = follow_tail(active, last)?;
        publish(shared, end, changes);
    }
    let storage = &shared.storage;
    let dir = &shared.dir;
    let names = storage.list_dir(dir).map_err(|e| Error::io("list directory", dir, e))?;
    let listed: BTreeMap<u64, String> =
        names.into_iter().filter_map(|name| Some((layout::parse_segment_file_name(&name)?, name))).collect();
    let known: HashMap<u64, &Arc<Segment>> = segments.iter().map(|s| (s.id(), s)).collect();
    if listed.len() == known.len() && listed.keys().all(|id| known.contains_key(id)) {
        return Ok(());
    }
    restructure(shared, &listed, &known)
}

/// A segment file found by a listing.
enum Candidate {
    Known(Arc<Segment>),
    New { header: SegmentHeader, path: PathBuf, file: Arc<dyn StorageFile>, len: u64 },
}

impl Candidate {
    fn header(&self) -> SegmentHeader {
        match self {
            Candidate::Known(segment) => segment.header,
            Candidate::New { header, .. } => *header,
        }
    }
}

/// The directory's segments differ from the view's (a roll, a compaction swap, a restart
/// of the writer, or the first refresh): builds the segment list as recovery would (§5
/// steps 3 to 5, without removing anything) and publishes it.
fn restructure(
    shared: &Shared,
    listed: &BTreeMap<u64, String>,
    known: &HashMap<u64, &Arc<Segment>>,
) -> std::result::Result<(), Attempt> {
    let storage = &*shared.storage;
    let mut found = Vec::with_capacity(listed.len());
    for (&id, name) in listed {
        if let Some(segment) = known.get(&id) {
            found.push(Candidate::Known(Arc::clone(segment)));
            continue;
        }
        let path = shared.dir.join(name);
        let file = match storage.open(&path, OpenMode::Read) {
            Ok(file) => file,
            // Removed since the listing (compaction, or a writer's recovery).
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(Error::io("open segment", &path, error).into()),
        };
        let len = file.len().map_err(|e| Error::io("stat segment", &path, e))?;
        // The writer writes and syncs a new segment's header before anything else; a file
        // without a whole one is being created (or is a crash leftover the writer removes).
        if len < SEGMENT_HEADER_BYTES as u64 {
            continue;
        }
        let mut head = [0u8; SEGMENT_HEADER_BYTES];
        file.read_exact_at(&mut head, 0).map_err(|e| Error::io("read segment header", &path, e))?;
        match SegmentHeader::decode(&head) {
            Ok(header) if header.segment_id != id => {
                return Err(Error::corruption(&path, 16, "segment id in the header differs from the file name").into());
            }
            Ok(header) => found.push(Candidate::New { header, path, file, len }),
            Err(_) if len == SEGMENT_HEADER_BYTES as u64 => continue,
            Err(reason) => return Err(Error::corruption(&path, 0, reason).into()),
        }
    }
    // §5 rule 4: a compacted segment replaces the older segments whose base it covers.
    let compacted: Vec<SegmentHeader> =
        found.iter().map(Candidate::header).filter(|h| h.compacted_end_position != 0).collect();
    found.retain(|candidate| {
        let header = candidate.header();
        !compacted.iter().any(|c| {
            c.segment_id > header.segment_id
                && c.base_position <= header.base_position
                && header.base_position < c.compacted_end_position
        })
    });
    found.sort_by_key(|c| (c.header().base_position, c.header().segment_id));
    let count = found.len();
    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(count);
    let mut new_streams = StreamTable::new();
    let mut tail_changes = Vec::new();
    let mut next_position = 0u64;
    for (i, candidate) in found.into_iter().enumerate() {
        let header = candidate.header();
        let path_of = |c: &Candidate| match c {
            Candidate::Known(segment) => segment.path.clone(),
            Candidate::New { path, .. } => path.clone(),
        };
        if header.base_position != next_position {
            // Mid-change (a file listed, then removed) or a damaged directory: listing again
            // tells them apart.
            let path = path_of(&candidate);
            let reason = if header.base_position < next_position {
                "segment base position overlaps the previous segment".to_owned()
            } else {
                format!("positions {next_position}..{} are in no segment", header.base_position)
            };
            return Err(Attempt::Raced(Error::corruption(path, 24, reason)));
        }
        let last = i + 1 == count;
        let segment = match candidate {
            Candidate::Known(segment) => {
                if !last && segment.append_file().is_some() {
                    // Sealed by the writer since the last refresh (a later segment exists only
                    // once this one is synced and complete): read its last groups, then keep
                    // it as a sealed segment.
                    let (_, changes) = follow_tail(&segment, next_position.checked_sub(1))?;
                    tail_changes.extend(changes);
                    seal(shared, &segment)?;
                }
                segment
            }
            Candidate::New { header, path, file, len } if last => {
                let capacity = shared.options.segment_bytes.max(len);
                let index = Some(SegmentIndex::Active(std::sync::RwLock::new(MemIndex::default())));
                let segment = Segment::new(
                    &shared.cache,
                    path,
                    Some(file),
                    header,
                    capacity,
                    SEGMENT_HEADER_BYTES as u64,
                    index,
                )?;
                let (_, changes) = follow_tail(&segment, next_position.checked_sub(1))?;
                tail_changes.extend(changes);
                segment
            }
            Candidate::New { header, path, len, .. } => {
                if len > u64::from(u32::MAX) {
                    return Err(Error::corruption(&path, 0, "segment is larger than 4 GiB").into());
                }
                let segment = Segment::new(&shared.cache, path, None, header, len, len, None)?;
                match pin(shared, &segment) {
                    Ok(()) => {}
                    Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                        return Err(Attempt::Raced(Error::corruption(
                            &segment.path,
                            0,
                            "segment removed while it was opened",
                        )));
                    }
                    Err(error) => return Err(error.into()),
                }
                merge_streams(storage, &segment, &mut new_streams)?;
                segment
            }
        };
        let end = segment.lookup(storage, |index| Ok(segment_end_position(index)))?;
        next_position = next_position.max(segment.header.compacted_end_position).max(end);
        segments.push(segment);
    }
    // The end first: an iterator that takes the old list with the new end reads a shorter
    // log; one that took the new list with the old end would find records past the end in
    // a segment that is no longer the last, which is damage.
    publish_end(shared, next_position);
    shared.update_segments(|list| *list = segments);
    let mut changes: Vec<(Arc<str>, StreamState)> = new_streams.into_iter().collect();
    changes.extend(tail_changes);
    publish_streams(shared, changes);
    Ok(())
}

/// Publishes the end of the log and stream changes, in the order the writer does.
fn publish(shared: &Shared, end: u64, changes: Vec<(Arc<str>, StreamState)>) {
    publish_end(shared, end);
    publish_streams(shared, changes);
}

fn publish_end(shared: &Shared, end: u64) {
    if end > shared.next_position() {
        shared.publish_position(end);
    }
}

/// Folds `changes` into the published stream table (after the segments holding them).
fn publish_streams(shared: &Shared, changes: Vec<(Arc<str>, StreamState)>) {
    if changes.is_empty() {
        return;
    }
    let merged: Vec<(Arc<str>, StreamState)> = changes
        .into_iter()
        .filter_map(|(name, change)| {
            let mut state = shared.stream_state(&name).unwrap_or_default();
            let before = state;
            state.merge(change.last_version, change.deleted);
            (state != before).then_some((name, state))
        })
        .collect();
    shared.publish_streams(merged.into_iter());
}

/// A segment the writer sealed: its descriptor closes, its index file replaces the index
/// built from its bytes if it covers them, and its maps are pinned.
fn seal(shared: &Shared, segment: &Arc<Segment>) -> Result<()> {
    segment.seal();
    let path = layout::index_path_for(&segment.path);
    if let Ok(Ok(mapped)) = crate::index::file::load(&*shared.storage, &path, segment.id())
        && mapped.covered_bytes == segment.committed_len()
    {
        segment.set_index(SegmentIndex::Sealed(mapped));
    }
    pin(shared, segment)
}

/// Maps a sealed segment and its index now and keeps them while anything holds it.
fn pin(shared: &Shared, segment: &Segment) -> Result<()> {
    segment.retire(&*shared.storage)
}

/// Reads the whole commit groups past `segment`'s committed length into its index and
/// publishes its new committed length. Returns one past its last position and the stream
/// changes (not yet published in the stream table).
fn follow_tail(segment: &Arc<Segment>, previous_last: Option<u64>) -> Result<(u64, StreamChanges)> {
    let Some(index) = segment.loaded_index() else { return Ok((0, Vec::new())) };
    let SegmentIndex::Active(mem) = &*index else { return Ok((0, Vec::new())) };
    let indexed_last = sync::read(mem).positions.last().map(|&(p, _)| p);
    let last = indexed_last.max(previous_last);
    let end_now = last.map_or(0, |p| p + 1);
    let Some(file) = segment.append_file() else { return Ok((end_now, Vec::new())) };
    let from = segment.committed_len();
    let len = file.len().map_err(|e| Error::io("stat segment", &segment.path, e))?;
    if len <= from || nothing_written_at(&*file, segment, from)? {
        return Ok((end_now, Vec::new()));
    }
    let tail = scan_tail(&*file, &segment.path, segment.id(), from, len, segment.header.base_position, last)?;
    if tail.records.is_empty() {
        return Ok((end_now, Vec::new()));
    }
    let mut changes: HashMap<Arc<str>, StreamState> = HashMap::new();
    let mut end = end_now;
    {
        let mut mem = sync::write(mem);
        for (name, entry, tombstone, event_type) in tail.records {
            let stream = mem.stream_id(&name);
            let state = changes.entry(Arc::clone(&stream)).or_default();
            if tombstone {
                state.merge(None, true);
            } else {
                state.merge(Some(entry.version), false);
            }
            end = end.max(entry.position + 1);
            mem.push(&stream, entry, tombstone);
            // The event-type lists too, or a read-only store's event-type filters would miss
            // the active segment's events.
            if !tombstone {
                mem.push_event_type(&event_type, entry);
            }
        }
    }
    segment.publish(tail.committed);
    Ok((end, changes.into_iter().collect()))
}

/// Whether the active segment is preallocated and the writer has not written at `from` yet
/// (segment-format.md §3.5: a record's first 4 bytes are its non-zero length, so zeros
/// there mean the log ends at `from` for now). One 4-byte `pread` instead of a window of
/// zeros at every refresh.
fn nothing_written_at(file: &dyn StorageFile, segment: &Segment, from: u64) -> Result<bool> {
    if !segment.header.log_may_end_before_file() {
        return Ok(false);
    }
    let mut length_field = [0u8; 4];
    match file.read_exact_at(&mut length_field, from) {
        Ok(()) => Ok(length_field == [0; 4]),
        // Shorter now: a restarted writer's recovery cut its tail; scan_tail reads the rest.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(error) => Err(Error::io("read segment", &segment.path, error)),
    }
}

/// Scans `[from, len)` of an active segment with `pread` for whole commit groups whose
/// records verify. Stops, without error, at the first record that is incomplete or does
/// not verify: the writer may be writing it, or it is a torn tail the writer's recovery
/// will cut. Reads a window at a time (doubled while one group does not fit), so memory is
/// bounded by the largest commit group, not by the segment.
fn scan_tail(
    file: &dyn StorageFile,
    path: &Path,
    segment_id: u64,
    from: u64,
    len: u64,
    base_position: u64,
    mut last: Option<u64>,
) -> Result<Tail> {
    let mut tail = Tail { committed: from, records: Vec::new() };
    let mut window = TAIL_WINDOW_BYTES_MIN;
    let mut buf = Vec::new();
    while tail.committed < len {
        let at = tail.committed;
        let remaining = len - at;
        let want = remaining.min(window);
        let Ok(want_bytes) = usize::try_from(want) else { break };
        buf.resize(want_bytes, 0);
        match file.read_exact_at(&mut buf, at) {
            Ok(()) => {}
            // The file shrank: a restarted writer cut a torn tail. Nothing below it changed.
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(Error::io("read segment", path, error)),
        }
        let mut rel = 0usize;
        let mut group_end = 0usize;
        let mut group_last = last;
        let mut pending = Vec::new();
        let mut stop = false;
        while let Some(rest) = buf.get(rel..).filter(|rest| !rest.is_empty()) {
            let decoded = match record::decode(rest, segment_id, RECORD_BYTES_MAX) {
                Ok(decoded) => decoded,
                Err(record::DecodeError::Incomplete) => break,
                Err(record::DecodeError::Invalid(_)) => {
                    stop = true;
                    break;
                }
            };
            let offset = at + rel as u64;
            let in_order = decoded.position >= base_position && group_last.is_none_or(|l| decoded.position > l);
            let name = rest.get(..decoded.record_bytes).and_then(|r| text(r, decoded.stream_id.clone()));
            let (Some(name), true, true) = (name, in_order, offset <= u64::from(u32::MAX)) else {
                stop = true;
                break;
            };
            let event_type = rest.get(..decoded.record_bytes).and_then(|r| text(r, decoded.event_type.clone()));
            pending.push((
                name.to_owned(),
                IndexEntry::of_record(&decoded, offset),
                decoded.kind == RecordKind::Tombstone,
                event_type.unwrap_or_default().to_owned(),
            ));
            group_last = Some(decoded.position);
            rel += decoded.record_bytes;
            if decoded.commit {
                tail.records.append(&mut pending);
                group_end = rel;
                last = group_last;
            }
        }
        tail.committed = at + group_end as u64;
        if stop || want == remaining {
            break;
        }
        if group_end == 0 {
            window = window.saturating_mul(2);
        }
    }
    Ok(tail)
}
