//! Shared by the crash tests (power loss, error injection, kill -9): a multi-threaded
//! workload described by a list of [`Op`]s per thread, the log of what it had acknowledged,
//! and the recovery invariants of issue 4, checked on a reopened store.
//!
//! Every event the workload writes carries an id that says which batch it belongs to and
//! the batch's shape, and its content is a function of that id ([`event_for`]). The checker
//! therefore needs only the store and the acknowledgements: any event it finds must decode,
//! match its content byte for byte, and sit with every other event of its batch.

#![allow(dead_code)] // each test binary uses part of this module

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chronicle::{
    AppendResult, Error, ExpectedVersion, NewEvent, Options, RecordedEvent, Retention, Store, StreamAppend,
};

/// Marks ids written by this workload (top 16 bits).
const ID_MARKER: u128 = 0xC4C4;

/// Where an event sits in the workload: its batch and the batch's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub batch: u32,
    pub parts: u8,
    pub part: u8,
    pub events: u16,
    pub index: u16,
}

impl EventId {
    pub fn encode(self) -> u128 {
        (ID_MARKER << 112)
            | (u128::from(self.batch) << 64)
            | (u128::from(self.parts) << 56)
            | (u128::from(self.part) << 48)
            | (u128::from(self.events) << 32)
            | (u128::from(self.index) << 16)
    }

    pub fn decode(id: u128) -> Option<EventId> {
        if id >> 112 != ID_MARKER || id & 0xFFFF != 0 {
            return None;
        }
        let id = EventId {
            batch: (id >> 64) as u32,
            parts: (id >> 56) as u8,
            part: (id >> 48) as u8,
            events: (id >> 32) as u16,
            index: (id >> 16) as u16,
        };
        (id.part < id.parts && id.index < id.events).then_some(id)
    }
}

/// The event with this id: its type, data, metadata and correlation ids all derive from it,
/// with data sizes from 0 to 700 bytes so commit groups straddle 512-byte sectors.
pub fn event_for(id: EventId) -> NewEvent {
    let raw = id.encode();
    let mix = (raw >> 16) as u64;
    let mix = mix.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (mix >> 29);
    let data_len = (mix % 701) as usize;
    let data: Vec<u8> = (0..data_len).map(|i| (mix >> (i % 56)) as u8 ^ i as u8).collect();
    let metadata: Vec<u8> = (0..(mix >> 20) % 9).map(|i| b'a' + i as u8).collect();
    let mut event = NewEvent::new(format!("Type{}", mix % 5), data).with_metadata(metadata).with_id(raw);
    if mix.is_multiple_of(3) {
        event = event.with_correlation_id(raw ^ 1);
    }
    if mix.is_multiple_of(4) {
        event = event.with_causation_id(raw ^ 2);
    }
    event
}

/// The events of one part of a batch.
pub fn part_events(batch: u32, parts: u8, part: u8, events: u16) -> Vec<NewEvent> {
    (0..events).map(|index| event_for(EventId { batch, parts, part, events, index })).collect()
}

/// Whether `recorded` is exactly the event [`event_for`] makes for its id.
fn content_matches(recorded: &RecordedEvent, id: EventId) -> bool {
    let expected = event_for(id);
    let mut recorded_as_new = NewEvent::new(recorded.event_type.clone(), recorded.data.clone())
        .with_metadata(recorded.metadata.clone())
        .with_id(recorded.id);
    if let Some(correlation_id) = recorded.correlation_id {
        recorded_as_new = recorded_as_new.with_correlation_id(correlation_id);
    }
    if let Some(causation_id) = recorded.causation_id {
        recorded_as_new = recorded_as_new.with_causation_id(causation_id);
    }
    recorded_as_new == expected
}

/// The snapshot state the workload saves for `stream` at `version`: 0 to 1500 bytes, so
/// snapshot files straddle 512-byte sectors.
pub fn snapshot_state(stream: &str, version: u64) -> Vec<u8> {
    let mut mix = version.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for byte in stream.bytes() {
        mix = (mix ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..(mix % 1501) as usize).map(|i| (mix >> (i % 57)) as u8 ^ i as u8).collect()
}

/// An acknowledged append: batch number, the stream of each part, what the store returned.
#[derive(Debug, Clone)]
pub struct Ack {
    pub batch: u32,
    pub streams: Vec<String>,
    pub results: Vec<AppendResult>,
}

/// One acknowledgement, as it arrives.
#[derive(Debug, Clone)]
pub enum Acked {
    Append(Ack),
    /// `delete_stream` of this stream returned Ok.
    Delete(String),
    /// `save_snapshot` of this stream at this version returned Ok.
    Snapshot(String, u64),
}

/// Everything acknowledged, which recovery must keep.
#[derive(Debug, Default, Clone)]
pub struct Acks {
    pub appends: Vec<Ack>,
    pub deletes: Vec<String>,
    pub snapshots: Vec<(String, u64)>,
}

impl Acks {
    pub fn push(&mut self, acked: Acked) {
        match acked {
            Acked::Append(ack) => self.appends.push(ack),
            Acked::Delete(stream) => self.deletes.push(stream),
            Acked::Snapshot(stream, version) => self.snapshots.push((stream, version)),
        }
    }

    pub fn extend(&mut self, other: Acks) {
        self.appends.extend(other.appends);
        self.deletes.extend(other.deletes);
        self.snapshots.extend(other.snapshots);
    }
}

/// What the checker found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovered {
    pub events: usize,
    pub streams: usize,
    pub batches: usize,
    pub snapshots: usize,
}

fn collect<I: Iterator<Item = Result<RecordedEvent, Error>>>(
    iter: I,
    what: &str,
) -> Result<Vec<RecordedEvent>, String> {
    iter.collect::<Result<Vec<_>, _>>().map_err(|e| format!("{what}: {e}"))
}

/// Whether `stream` is deleted, by `stream_version`.
fn is_deleted(store: &Store, stream: &str) -> Result<bool, String> {
    match store.stream_version(stream) {
        Ok(_) => Ok(false),
        Err(Error::StreamDeleted { .. }) => Ok(true),
        Err(error) => Err(format!("stream_version {stream:?}: {error}")),
    }
}

/// Checks the recovery invariants on an open store: every acknowledged append to a stream
/// not deleted is present at its versions and positions, byte for byte; every acknowledged
/// deletion holds; every event is one the workload wrote; every batch is whole, its
/// positions contiguous in part order; every stream is a gap-free prefix; positions
/// strictly increase; the index (`read_stream`, `stream_version`, `streams`) agrees with a
/// scan of the log (`read_all`, both directions); every snapshot is one that was saved,
/// whole, and no older than the newest acknowledged one.
pub fn check_store(store: &Store, acked: &Acks) -> Result<Recovered, String> {
    let all = collect(store.read_all(0).map_err(|e| format!("read_all: {e}"))?, "read_all")?;
    let mut backward =
        collect(store.read_all_backward(None).map_err(|e| format!("read_all_backward: {e}"))?, "read_all_backward")?;
    backward.reverse();
    if backward != all {
        return Err(format!(
            "read_all_backward ({} events) is not read_all ({} events) reversed",
            backward.len(),
            all.len()
        ));
    }
    let mut by_id: HashMap<EventId, &RecordedEvent> = HashMap::new();
    let mut streams: BTreeMap<&str, Vec<&RecordedEvent>> = BTreeMap::new();
    let mut previous_position: Option<u64> = None;
    for event in &all {
        if previous_position.is_some_and(|p| p >= event.position) {
            return Err(format!("position {} follows position {previous_position:?}", event.position));
        }
        previous_position = Some(event.position);
        let id = EventId::decode(event.id)
            .ok_or_else(|| format!("event at position {} has a foreign id {:#x}", event.position, event.id))?;
        if !content_matches(event, id) {
            return Err(format!("event {id:?} at position {} differs from what was written", event.position));
        }
        if by_id.insert(id, event).is_some() {
            return Err(format!("event {id:?} appears twice"));
        }
        streams.entry(&event.stream_id).or_default().push(event);
    }
    // Every stream: versions 0..n in position order (from some first version for streams
    // under retention), and the index agrees with the scan.
    for (&stream, events) in &streams {
        let first_version = if stream.starts_with(RETAINED_PREFIX) { events[0].version } else { 0 };
        for (offset, event) in events.iter().enumerate() {
            let expected_version = first_version + offset as u64;
            if event.version != expected_version {
                return Err(format!(
                    "stream {stream:?}: version {} where {expected_version} was due (gap or duplicate)",
                    event.version
                ));
            }
        }
        let indexed = collect(store.read_stream(stream, 0).map_err(|e| format!("read_stream {stream}: {e}"))?, stream)?;
        if indexed.iter().ne(events.iter().copied()) {
            return Err(format!(
                "stream {stream:?}: read_stream ({} events) differs from read_all ({} events)",
                indexed.len(),
                events.len()
            ));
        }
        let mut reversed = collect(store.read_stream_backward(stream, None).map_err(|e| format!("{e}"))?, stream)?;
        reversed.reverse();
        if reversed != indexed {
            return Err(format!("stream {stream:?}: read_stream_backward differs from read_stream"));
        }
        let version = store.stream_version(stream).map_err(|e| format!("stream_version {stream}: {e}"))?;
        if version != Some(first_version + events.len() as u64 - 1) {
            return Err(format!("stream {stream:?}: stream_version {version:?} but {} events", events.len()));
        }
    }
    let listed = store.streams().map_err(|e| format!("streams: {e}"))?;
    if listed.iter().map(String::as_str).ne(streams.keys().copied()) {
        return Err(format!("streams() lists {} streams, the log holds {}", listed.len(), streams.len()));
    }
    // Every batch whole, in order, with contiguous positions.
    let mut batches: BTreeMap<u32, Vec<&EventId>> = BTreeMap::new();
    for id in by_id.keys() {
        batches.entry(id.batch).or_default().push(id);
    }
    for (&batch, ids) in &mut batches {
        ids.sort();
        let shape = *ids[0];
        let total = usize::from(shape.parts) * usize::from(shape.events);
        let first = by_id[ids[0]];
        if first.stream_id.starts_with(RETAINED_PREFIX) {
            // Retention discards a stream's oldest events one by one: what is left of a
            // (single-stream) batch is its newest events.
            let newest = ids.iter().map(|id| id.index).eq(shape.events - ids.len() as u16..shape.events);
            if shape.parts != 1 || !newest {
                return Err(format!("batch {batch} of a retained stream: {ids:?} is not the batch's newest events"));
            }
        } else if ids.len() != total {
            return Err(format!("batch {batch}: {} of its {total} events present (half a batch)", ids.len()));
        }
        for (offset, id) in ids.iter().enumerate() {
            let event = by_id[*id];
            // The part's first event still present (retention may have taken earlier ones).
            let part_first_id = ids.iter().find(|other| other.part == id.part).copied().unwrap_or(id);
            let part_first = by_id[part_first_id];
            if (id.parts, id.events) != (shape.parts, shape.events)
                || event.position != first.position + offset as u64
                || event.stream_id != part_first.stream_id
                || event.version != part_first.version + u64::from(id.index - part_first_id.index)
            {
                return Err(format!(
                    "batch {batch}: event {id:?} is out of place (position {}, version {})",
                    event.position, event.version
                ));
            }
        }
    }
    // Every acknowledged deletion holds.
    for stream in &acked.deletes {
        if !is_deleted(store, stream)? {
            return Err(format!("acknowledged deletion of {stream:?} is undone"));
        }
        if !matches!(store.read_stream(stream, 0), Err(Error::StreamDeleted { .. })) {
            return Err(format!("deleted stream {stream:?} reads without StreamDeleted"));
        }
    }
    // Every acknowledged append to a stream not deleted is where the store said it put it.
    let mut deleted: HashMap<&str, bool> = HashMap::new();
    for ack in &acked.appends {
        for (part, (stream, result)) in ack.streams.iter().zip(&ack.results).enumerate() {
            let stream_deleted = match deleted.get(stream.as_str()) {
                Some(&known) => known,
                None => *deleted.entry(stream).or_insert(is_deleted(store, stream)?),
            };
            if stream_deleted {
                continue;
            }
            // Retention may have discarded events RETAINED_COUNT or more below the last.
            let discardable_below = if stream.starts_with(RETAINED_PREFIX) {
                let last = streams.get(stream.as_str()).and_then(|e| e.last()).map_or(0, |e| e.version);
                (last + 1).saturating_sub(RETAINED_COUNT)
            } else {
                0
            };
            let events = (result.last_version - result.first_version + 1) as u16;
            for index in 0..events {
                let id = EventId { batch: ack.batch, parts: ack.results.len() as u8, part: part as u8, events, index };
                if result.first_version + u64::from(index) < discardable_below {
                    continue;
                }
                let Some(event) = by_id.get(&id) else {
                    return Err(format!("acknowledged event {id:?} of stream {stream:?} is missing"));
                };
                let place = (event.stream_id.as_str(), event.version, event.position);
                let promised = (
                    stream.as_str(),
                    result.first_version + u64::from(index),
                    result.first_position + u64::from(index),
                );
                if place != promised {
                    return Err(format!("acknowledged event {id:?} is at {place:?}, acknowledged at {promised:?}"));
                }
            }
        }
    }
    // Snapshots: whole, of a version the stream has, no older than the newest acknowledged.
    let mut newest_acked: BTreeMap<&str, u64> = BTreeMap::new();
    for (stream, version) in &acked.snapshots {
        let newest = newest_acked.entry(stream).or_insert(*version);
        *newest = (*newest).max(*version);
    }
    let mut snapshots = 0;
    for stream in streams.keys().copied().chain(newest_acked.keys().copied()) {
        if is_deleted(store, stream)? {
            continue;
        }
        let loaded = store.load_snapshot(stream).map_err(|e| format!("load_snapshot {stream:?}: {e}"))?;
        let required = newest_acked.get(stream).copied();
        match (loaded, required) {
            (None, None) => {}
            (None, Some(version)) => {
                return Err(format!("acknowledged snapshot of {stream:?} at version {version} is missing"));
            }
            (Some(snapshot), required) => {
                if required.is_some_and(|v| snapshot.version < v) {
                    return Err(format!(
                        "snapshot of {stream:?} is at version {}, older than the acknowledged {required:?}",
                        snapshot.version
                    ));
                }
                if snapshot.data[..] != snapshot_state(stream, snapshot.version)[..] {
                    return Err(format!(
                        "snapshot of {stream:?} at version {} is not what was saved",
                        snapshot.version
                    ));
                }
                let last = streams.get(stream).and_then(|e| e.last()).map(|e| e.version);
                if last.is_none_or(|last| snapshot.version > last) {
                    return Err(format!(
                        "snapshot of {stream:?} at version {} but the stream's last version is {last:?}",
                        snapshot.version
                    ));
                }
                snapshots += 1;
            }
        }
    }
    Ok(Recovered { events: all.len(), streams: streams.len(), batches: batches.len(), snapshots })
}

/// After recovery, appends one event to every stream (and a new one) with the exact
/// expected version and checks each lands after everything else; returns the acks.
pub fn check_appends_work(store: &Store, batch: u32) -> Result<Vec<Ack>, String> {
    let end =
        store.read_all_backward(None).map_err(|e| e.to_string())?.next().transpose().map_err(|e| e.to_string())?;
    let streams = store.streams().map_err(|e| e.to_string())?;
    let mut last_position = end.map(|e| e.position);
    let mut acks = Vec::new();
    for (n, stream) in streams.iter().chain(std::iter::once(&"fresh-after-recovery".to_owned())).enumerate() {
        let version = store.stream_version(stream).map_err(|e| e.to_string())?;
        let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let events = part_events(batch + n as u32, 1, 0, 1);
        let result =
            store.append(stream, expected, events).map_err(|e| format!("append to {stream:?} after recovery: {e}"))?;
        if result.first_version != version.map_or(0, |v| v + 1)
            || last_position.is_some_and(|p| result.first_position <= p)
        {
            return Err(format!(
                "append to {stream:?} after recovery returned {result:?} (stream version was {version:?}, log end {last_position:?})"
            ));
        }
        last_position = Some(result.last_position);
        acks.push(Ack { batch: batch + n as u32, streams: vec![stream.clone()], results: vec![result] });
    }
    Ok(acks)
}

/// A stream the workload appends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRef {
    /// One of the thread's own streams: appended to with the exact expected version.
    Own(u8),
    /// A stream every thread appends to with `ExpectedVersion::Any`.
    Shared(u8),
    /// The thread's stream to be deleted next ([`Op::Delete`]); a new one after each
    /// deletion. Only single-stream appends go to it, so no batch is half deleted.
    Doomed,
    /// A stream every thread appends to with `ExpectedVersion::Any`, whose old events
    /// compaction discards ([`Op::SetRetention`]). Only single-stream appends go to it.
    Retained,
}

/// Streams under retention are named with this prefix; the checker lets their oldest
/// events go.
pub const RETAINED_PREFIX: &str = "retained-";
/// The retention of [`StreamRef::Retained`]: `Retention::MaxCount(RETAINED_COUNT)`.
pub const RETAINED_COUNT: u64 = 3;

/// One step of a workload thread. New operations go here, in [`Op::kind`] and in
/// [`Workload::run_op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `append` of `events` events.
    Append { stream: StreamRef, events: u16 },
    /// `append_multi` of `events` events to each of `streams` (distinct, never `Doomed`).
    AppendMulti { streams: Vec<StreamRef>, events: u16 },
    /// Reads one of the thread's own streams back and checks what it acknowledged.
    Read { stream: u8 },
    /// Reads the whole log (while others append and compact): positions strictly increase,
    /// every event is whole, and the thread's acknowledged events are all there.
    ReadAll,
    /// `sync`.
    Sync,
    /// `seal`.
    Seal,
    /// `save_snapshot` of an own stream at its last acknowledged version.
    Snapshot { stream: u8 },
    /// `delete_stream` of the thread's doomed stream (skipped while it has no event).
    Delete,
    /// `compact`.
    Compact,
    /// `set_stream_retention` of the retained stream to keep its newest [`RETAINED_COUNT`].
    SetRetention,
}

/// How an op's outcome relates to the write path (the group-commit writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    /// Goes through the writer: an `Io`/`Poisoned` failure means the write path failed, and
    /// after that it must never succeed again.
    Writes,
    /// Needs the writer (compaction seals first): never succeeds after a write failure,
    /// but may fail on its own without poisoning the store.
    NeedsWriter,
    /// Independent of the writer (reads, snapshot files).
    Independent,
}

impl Op {
    /// The op's name, for counts.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Append { .. } => "append",
            Op::AppendMulti { .. } => "append_multi",
            Op::Read { .. } => "read",
            Op::ReadAll => "read_all",
            Op::Sync => "sync",
            Op::Seal => "seal",
            Op::Snapshot { .. } => "snapshot",
            Op::Delete => "delete",
            Op::Compact => "compact",
            Op::SetRetention => "set_retention",
        }
    }

    fn kind(&self) -> OpKind {
        match self {
            Op::Append { .. } | Op::AppendMulti { .. } | Op::Sync | Op::Seal | Op::Delete => OpKind::Writes,
            Op::Compact => OpKind::NeedsWriter,
            Op::Read { .. } | Op::ReadAll | Op::Snapshot { .. } | Op::SetRetention => OpKind::Independent,
        }
    }
}

/// A small deterministic generator for workloads.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Each thread's list of ops: mostly appends of 1–3 events (own, shared and doomed
/// streams), `append_multi` across an own and a shared stream, reads, syncs, snapshots,
/// deletions, now and then a compaction, and one seal.
pub fn plan(threads: usize, ops_per_thread: usize, seed: u64) -> Vec<Vec<Op>> {
    let mut rng = Rng::new(seed);
    (0..threads)
        .map(|thread| {
            (0..ops_per_thread)
                .map(|i| match rng.below(40) {
                    _ if thread == 0 && i == ops_per_thread / 2 => Op::Seal,
                    _ if thread == 0 && i == 2 => Op::SetRetention,
                    0..=17 => {
                        let stream = match rng.below(9) {
                            0 | 1 => StreamRef::Shared(rng.below(2) as u8),
                            2 | 3 => StreamRef::Doomed,
                            4 => StreamRef::Retained,
                            _ => StreamRef::Own(rng.below(2) as u8),
                        };
                        Op::Append { stream, events: 1 + rng.below(3) as u16 }
                    }
                    18..=25 => Op::AppendMulti {
                        streams: vec![StreamRef::Own(rng.below(2) as u8), StreamRef::Shared(rng.below(2) as u8)],
                        events: 1 + rng.below(2) as u16,
                    },
                    26..=28 => Op::Read { stream: rng.below(2) as u8 },
                    29 => Op::ReadAll,
                    30 | 31 => Op::Sync,
                    32..=35 => Op::Snapshot { stream: rng.below(2) as u8 },
                    36 | 37 => Op::Delete,
                    _ => Op::Compact,
                })
                .collect()
        })
        .collect()
}

/// What one run of the workload did.
#[derive(Debug, Default)]
pub struct RunLog {
    pub acked: Acks,
    /// Broken promises seen while running (success after a write-path failure, wrong
    /// errors, reads that disagree with acknowledgements).
    pub violations: Vec<String>,
    /// Ops whose write path failed (Io or Poisoned).
    pub write_failures: usize,
    /// Successful ops by [`Op::name`].
    pub succeeded: BTreeMap<&'static str, usize>,
    /// When (in the workload's sequence) each append and deletion was acknowledged, in the
    /// order of `acked.appends` and `acked.deletes`.
    appends_acked_at: Vec<u64>,
    deletes_acked_at: Vec<u64>,
    /// When the last `sync`, `seal` or `compact` that succeeded had started: everything
    /// acknowledged before it was durable when it returned, whatever the durability mode.
    synced_from: Option<u64>,
}

impl RunLog {
    /// What must survive a crash under `Durability::Buffered` (or `Periodic`): appends and
    /// deletions acknowledged before a later successful `sync`, `seal` or `compact` started
    /// (all of them if `closed`: a successful `close` syncs), and every snapshot (saved with
    /// its own fsync).
    pub fn durable_without_sync_mode(&self, closed: bool) -> Acks {
        let barrier = if closed { Some(u64::MAX) } else { self.synced_from };
        let before = |at: &u64| barrier.is_some_and(|b| *at < b);
        Acks {
            appends: self
                .acked
                .appends
                .iter()
                .zip(&self.appends_acked_at)
                .filter(|(_, at)| before(at))
                .map(|(a, _)| a.clone())
                .collect(),
            deletes: self
                .acked
                .deletes
                .iter()
                .zip(&self.deletes_acked_at)
                .filter(|(_, at)| before(at))
                .map(|(d, _)| d.clone())
                .collect(),
            snapshots: self.acked.snapshots.clone(),
        }
    }
}

/// A workload run against one store; threads share it.
pub struct Workload<'a> {
    pub store: &'a Store,
    /// Batch numbers are `batch_base + n`.
    pub batch_base: u32,
    next_batch: AtomicU64,
    /// Sequence numbers order op starts and ends across threads.
    sequence: AtomicU64,
    log: Mutex<RunLog>,
    /// Called with each acknowledgement as it arrives (kill -9 prints them).
    on_ack: Option<&'a (dyn Fn(&Acked) + Sync)>,
}

/// One op's record, for the refuse-after-failure check.
struct Done {
    start: u64,
    end: u64,
    failed_write: bool,
    /// Succeeded, and it needs the writer.
    succeeded_on_writer: bool,
    what: String,
}

/// What a thread knows of its own streams.
#[derive(Default)]
struct ThreadState {
    /// The last acknowledged version of each own stream.
    own: HashMap<u8, u64>,
    /// Acknowledged (version, id) of each own stream, for reads.
    acked_own: HashMap<u8, Vec<(u64, u128)>>,
    /// Which doomed stream is current, and its last acknowledged version.
    doomed_generation: u32,
    doomed_last: Option<u64>,
}

impl<'a> Workload<'a> {
    pub fn new(store: &'a Store, batch_base: u32, on_ack: Option<&'a (dyn Fn(&Acked) + Sync)>) -> Self {
        Workload {
            store,
            batch_base,
            next_batch: AtomicU64::new(0),
            sequence: AtomicU64::new(0),
            log: Mutex::new(RunLog::default()),
            on_ack,
        }
    }

    /// Runs every thread's ops to the end (failures included) and returns the log.
    pub fn run(self, threads: &[Vec<Op>]) -> RunLog {
        let this = &self;
        let done: Vec<Vec<Done>> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                threads.iter().enumerate().map(|(t, ops)| scope.spawn(move || this.run_thread(t, ops))).collect();
            handles.into_iter().map(|h| h.join().expect("workload thread panicked")).collect()
        });
        let mut log = self.log.into_inner().unwrap();
        let first_failure_end = done.iter().flatten().filter(|d| d.failed_write).map(|d| d.end).min();
        if let Some(failed_at) = first_failure_end {
            for d in done.iter().flatten().filter(|d| d.start > failed_at && d.succeeded_on_writer) {
                log.violations.push(format!("{} succeeded after an earlier write failure", d.what));
            }
        }
        log
    }

    /// Own streams are named after the batch base, so sessions with different bases do not
    /// share them; shared streams are shared across sessions too.
    fn stream_name(&self, thread: usize, stream: StreamRef, state: &ThreadState) -> String {
        match stream {
            StreamRef::Own(n) => format!("b{}-thread{thread}-{n}", self.batch_base),
            StreamRef::Shared(n) => format!("shared-{n}"),
            StreamRef::Doomed => format!("b{}-thread{thread}-doomed{}", self.batch_base, state.doomed_generation),
            StreamRef::Retained => format!("{RETAINED_PREFIX}0"),
        }
    }

    fn violation(&self, message: String) {
        self.log.lock().unwrap().violations.push(message);
    }

    fn run_thread(&self, thread: usize, ops: &[Op]) -> Vec<Done> {
        let mut state = ThreadState::default();
        let mut done = Vec::new();
        for op in ops {
            let start = self.sequence.fetch_add(1, Ordering::SeqCst);
            let (outcome, what) = self.run_op(thread, op, &mut state);
            let Some(outcome) = outcome else { continue };
            let end = self.sequence.fetch_add(1, Ordering::SeqCst);
            let kind = op.kind();
            let failed_write = match &outcome {
                Ok(()) => false,
                Err(Error::Io { .. } | Error::Poisoned { .. }) => kind == OpKind::Writes,
                Err(error) => {
                    self.violation(format!("{what} failed with an unexpected error: {error}"));
                    false
                }
            };
            if failed_write {
                self.log.lock().unwrap().write_failures += 1;
            }
            if outcome.is_ok() {
                let mut log = self.log.lock().unwrap();
                *log.succeeded.entry(op.name()).or_default() += 1;
                if matches!(op, Op::Sync | Op::Seal | Op::Compact) {
                    log.synced_from = log.synced_from.max(Some(start));
                }
            }
            let succeeded_on_writer = outcome.is_ok() && kind != OpKind::Independent;
            done.push(Done { start, end, failed_write, succeeded_on_writer, what });
        }
        done
    }

    fn expected(state: &ThreadState, stream: StreamRef) -> ExpectedVersion {
        let last = match stream {
            StreamRef::Own(n) => state.own.get(&n).copied(),
            StreamRef::Doomed => state.doomed_last,
            StreamRef::Shared(_) | StreamRef::Retained => return ExpectedVersion::Any,
        };
        last.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact)
    }

    fn acknowledge(&self, acked: Acked) {
        if let Some(on_ack) = self.on_ack {
            on_ack(&acked);
        }
        let at = self.sequence.fetch_add(1, Ordering::SeqCst);
        let mut log = self.log.lock().unwrap();
        match &acked {
            Acked::Append(_) => log.appends_acked_at.push(at),
            Acked::Delete(_) => log.deletes_acked_at.push(at),
            Acked::Snapshot(..) => {}
        }
        log.acked.push(acked);
    }

    /// Runs one op; returns its outcome (`None`: skipped, nothing to do) and a description
    /// for messages.
    fn run_op(&self, thread: usize, op: &Op, state: &mut ThreadState) -> (Option<Result<(), Error>>, String) {
        let batch = self.batch_base + self.next_batch.fetch_add(1, Ordering::SeqCst) as u32;
        let what = format!("thread {thread} batch {batch} {op:?}");
        let (parts, events): (Vec<StreamRef>, u16) = match op {
            Op::Append { stream, events } => (vec![*stream], *events),
            Op::AppendMulti { streams, events } => (streams.clone(), *events),
            Op::Read { stream } => return (Some(self.check_read(thread, *stream, state)), what),
            Op::ReadAll => return (Some(self.check_read_all(thread, state)), what),
            Op::Sync => return (Some(self.store.sync()), what),
            Op::Seal => return (Some(self.store.seal()), what),
            Op::Compact => return (Some(self.store.compact().map(|_| ())), what),
            Op::SetRetention => {
                let retention = Retention::MaxCount(RETAINED_COUNT);
                return (Some(self.store.set_stream_retention(&format!("{RETAINED_PREFIX}0"), retention)), what);
            }
            Op::Snapshot { stream } => {
                let Some(&version) = state.own.get(stream) else { return (None, what) };
                let name = self.stream_name(thread, StreamRef::Own(*stream), state);
                let result = self.store.save_snapshot(&name, version, &snapshot_state(&name, version));
                if result.is_ok() {
                    self.acknowledge(Acked::Snapshot(name, version));
                }
                return (Some(result), what);
            }
            Op::Delete => {
                let Some(last) = state.doomed_last else { return (None, what) };
                let name = self.stream_name(thread, StreamRef::Doomed, state);
                let result = self.store.delete_stream(&name, ExpectedVersion::Exact(last));
                if result.is_ok() {
                    self.acknowledge(Acked::Delete(name));
                    state.doomed_generation += 1;
                    state.doomed_last = None;
                }
                return (Some(result), what);
            }
        };
        let names: Vec<String> = parts.iter().map(|&s| self.stream_name(thread, s, state)).collect();
        let count = parts.len() as u8;
        let result = if let Op::Append { stream, .. } = op {
            self.store
                .append(&names[0], Self::expected(state, *stream), part_events(batch, 1, 0, events))
                .map(|r| vec![r])
        } else {
            self.store.append_multi(parts.iter().zip(&names).enumerate().map(|(i, (&s, name))| {
                StreamAppend::new(name.clone(), Self::expected(state, s), part_events(batch, count, i as u8, events))
            }))
        };
        match result {
            Ok(results) => {
                for (i, (&stream, result)) in parts.iter().zip(&results).enumerate() {
                    if result.last_version - result.first_version + 1 != u64::from(events) {
                        self.violation(format!("{what}: result {result:?} does not cover {events} events"));
                    }
                    match stream {
                        StreamRef::Own(n) => {
                            state.own.insert(n, result.last_version);
                            let list = state.acked_own.entry(n).or_default();
                            for index in 0..events {
                                let id = EventId { batch, parts: count, part: i as u8, events, index };
                                list.push((result.first_version + u64::from(index), id.encode()));
                            }
                        }
                        StreamRef::Doomed => state.doomed_last = Some(result.last_version),
                        StreamRef::Shared(_) | StreamRef::Retained => {}
                    }
                }
                self.acknowledge(Acked::Append(Ack { batch, streams: names, results }));
                (Some(Ok(())), what)
            }
            Err(error) => (Some(Err(error)), what),
        }
    }

    /// Reads the whole log: positions strictly increasing, every event whole, every event
    /// this thread acknowledged on its own streams present.
    fn check_read_all(&self, thread: usize, state: &ThreadState) -> Result<(), Error> {
        let mut previous: Option<u64> = None;
        let mut seen = std::collections::HashSet::new();
        for event in self.store.read_all(0)? {
            let event = event?;
            if previous.is_some_and(|p| p >= event.position) {
                self.violation(format!(
                    "thread {thread}: read_all gave position {} after {previous:?}",
                    event.position
                ));
            }
            previous = Some(event.position);
            match EventId::decode(event.id) {
                Some(id) if content_matches(&event, id) => {}
                _ => self.violation(format!("thread {thread}: read_all gave a bad event at {}", event.position)),
            }
            seen.insert(event.id);
        }
        for (&stream, acked) in &state.acked_own {
            for &(version, id) in acked {
                if !seen.contains(&id) {
                    self.violation(format!("thread {thread}: read_all misses own stream {stream} version {version}"));
                }
            }
        }
        Ok(())
    }

    /// Reads an own stream: every acknowledged event must be there at its version.
    fn check_read(&self, thread: usize, stream: u8, state: &ThreadState) -> Result<(), Error> {
        let name = self.stream_name(thread, StreamRef::Own(stream), state);
        let events: Vec<RecordedEvent> = self.store.read_stream(&name, 0)?.collect::<Result<_, _>>()?;
        for &(version, id) in state.acked_own.get(&stream).map_or(&[][..], Vec::as_slice) {
            if events.get(version as usize).map(|e| (e.version, e.id)) != Some((version, id)) {
                self.violation(format!("read of {name:?} misses acknowledged version {version}"));
            }
        }
        Ok(())
    }
}

/// The options every crash test uses: small segments so the workload rolls several.
pub fn small_segments() -> Options {
    Options::default().segment_bytes(4096)
}
