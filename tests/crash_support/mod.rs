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

use chronicle::{AppendResult, Error, ExpectedVersion, NewEvent, Options, RecordedEvent, Store, StreamAppend};

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

/// An acknowledged append: batch number, the stream of each part, what the store returned.
#[derive(Debug, Clone)]
pub struct Ack {
    pub batch: u32,
    pub streams: Vec<String>,
    pub results: Vec<AppendResult>,
}

/// What the checker found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovered {
    pub events: usize,
    pub streams: usize,
    pub batches: usize,
}

fn collect<I: Iterator<Item = Result<RecordedEvent, Error>>>(
    iter: I,
    what: &str,
) -> Result<Vec<RecordedEvent>, String> {
    iter.collect::<Result<Vec<_>, _>>().map_err(|e| format!("{what}: {e}"))
}

/// Checks the recovery invariants on an open store: every acknowledged append present at
/// its versions and positions, byte for byte; every event one the workload wrote; every
/// batch whole, its positions contiguous in part order; every stream a gap-free prefix;
/// positions strictly increasing; the index (`read_stream`, `stream_version`, `streams`)
/// agreeing with a scan of the log (`read_all`, both directions).
pub fn check_store(store: &Store, acked: &[Ack]) -> Result<Recovered, String> {
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
    // Every stream: versions 0..n in position order, and the index agrees with the scan.
    for (&stream, events) in &streams {
        for (expected_version, event) in events.iter().enumerate() {
            if event.version != expected_version as u64 {
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
        if version != Some(events.len() as u64 - 1) {
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
        if ids.len() != total {
            return Err(format!("batch {batch}: {} of its {total} events present (half a batch)", ids.len()));
        }
        let first = by_id[ids[0]];
        for (offset, id) in ids.iter().enumerate() {
            let event = by_id[*id];
            let part_first = by_id[&EventId { index: 0, ..**id }];
            if (id.parts, id.events) != (shape.parts, shape.events)
                || event.position != first.position + offset as u64
                || event.stream_id != part_first.stream_id
                || event.version != part_first.version + u64::from(id.index)
            {
                return Err(format!(
                    "batch {batch}: event {id:?} is out of place (position {}, version {})",
                    event.position, event.version
                ));
            }
        }
    }
    // Every acknowledged append present where the store said it put it.
    for ack in acked {
        for (part, (stream, result)) in ack.streams.iter().zip(&ack.results).enumerate() {
            let events = (result.last_version - result.first_version + 1) as u16;
            for index in 0..events {
                let id = EventId { batch: ack.batch, parts: ack.results.len() as u8, part: part as u8, events, index };
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
    Ok(Recovered { events: all.len(), streams: streams.len(), batches: batches.len() })
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
}

/// One step of a workload thread. New operations (snapshots, deletion, compaction) go here
/// and in [`Workload::run_op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `append` of `events` events.
    Append { stream: StreamRef, events: u16 },
    /// `append_multi` of `events` events to each of `streams` (distinct).
    AppendMulti { streams: Vec<StreamRef>, events: u16 },
    /// Reads one of the thread's own streams back and checks what it acknowledged.
    Read { stream: u8 },
    /// `sync`.
    Sync,
    /// `seal`.
    Seal,
}

impl Op {
    /// Whether a failure of this op means the store's write path failed.
    fn writes(&self) -> bool {
        !matches!(self, Op::Read { .. })
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

/// Each thread's list of ops: mostly appends of 1–3 events, some `append_multi` across an
/// own and a shared stream, a read, a sync, and one seal.
pub fn plan(threads: usize, ops_per_thread: usize, seed: u64) -> Vec<Vec<Op>> {
    let mut rng = Rng::new(seed);
    (0..threads)
        .map(|thread| {
            (0..ops_per_thread)
                .map(|i| match rng.below(16) {
                    _ if thread == 0 && i == ops_per_thread / 2 => Op::Seal,
                    0..=8 => {
                        let stream = if rng.below(4) == 0 {
                            StreamRef::Shared(rng.below(2) as u8)
                        } else {
                            StreamRef::Own(rng.below(2) as u8)
                        };
                        Op::Append { stream, events: 1 + rng.below(3) as u16 }
                    }
                    9..=12 => Op::AppendMulti {
                        streams: vec![StreamRef::Own(rng.below(2) as u8), StreamRef::Shared(rng.below(2) as u8)],
                        events: 1 + rng.below(2) as u16,
                    },
                    13 | 14 => Op::Read { stream: rng.below(2) as u8 },
                    _ => Op::Sync,
                })
                .collect()
        })
        .collect()
}

/// What one run of the workload did.
#[derive(Debug, Default)]
pub struct RunLog {
    pub acked: Vec<Ack>,
    /// Broken promises seen while running (success after a write-path failure, wrong
    /// errors, reads that disagree with acknowledgements).
    pub violations: Vec<String>,
    /// Ops whose write path failed (Io or Poisoned).
    pub write_failures: usize,
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
    on_ack: Option<&'a (dyn Fn(&Ack) + Sync)>,
}

/// One op's record, for the refuse-after-failure check.
struct Done {
    start: u64,
    end: u64,
    failed_write: bool,
    succeeded: bool,
    what: String,
}

impl<'a> Workload<'a> {
    pub fn new(store: &'a Store, batch_base: u32, on_ack: Option<&'a (dyn Fn(&Ack) + Sync)>) -> Self {
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
            for d in done.iter().flatten().filter(|d| d.start > failed_at && d.succeeded) {
                log.violations.push(format!("{} succeeded after an earlier write failure", d.what));
            }
        }
        log
    }

    /// Own streams are named after the batch base, so sessions with different bases do not
    /// share them; shared streams are shared across sessions too.
    fn stream_name(&self, thread: usize, stream: StreamRef) -> String {
        match stream {
            StreamRef::Own(n) => format!("b{}-thread{thread}-{n}", self.batch_base),
            StreamRef::Shared(n) => format!("shared-{n}"),
        }
    }

    fn violation(&self, message: String) {
        self.log.lock().unwrap().violations.push(message);
    }

    fn run_thread(&self, thread: usize, ops: &[Op]) -> Vec<Done> {
        // The last acknowledged version of each own stream.
        let mut own: HashMap<u8, u64> = HashMap::new();
        let mut acked_own: HashMap<u8, Vec<(u64, u128)>> = HashMap::new();
        let mut done = Vec::new();
        for op in ops {
            let start = self.sequence.fetch_add(1, Ordering::SeqCst);
            let (outcome, what) = self.run_op(thread, op, &mut own, &mut acked_own);
            let end = self.sequence.fetch_add(1, Ordering::SeqCst);
            let failed_write = match &outcome {
                Ok(()) => false,
                Err(Error::Io { .. } | Error::Poisoned { .. }) if op.writes() => true,
                Err(Error::Io { .. }) => false,
                Err(error) => {
                    self.violation(format!("{what} failed with an unexpected error: {error}"));
                    false
                }
            };
            if failed_write {
                self.log.lock().unwrap().write_failures += 1;
            }
            done.push(Done { start, end, failed_write, succeeded: outcome.is_ok() && op.writes(), what });
        }
        done
    }

    fn expected(own: &HashMap<u8, u64>, stream: StreamRef) -> ExpectedVersion {
        match stream {
            StreamRef::Own(n) => own.get(&n).map_or(ExpectedVersion::NoStream, |&v| ExpectedVersion::Exact(v)),
            StreamRef::Shared(_) => ExpectedVersion::Any,
        }
    }

    fn acknowledge(&self, ack: Ack) {
        if let Some(on_ack) = self.on_ack {
            on_ack(&ack);
        }
        self.log.lock().unwrap().acked.push(ack);
    }

    /// Runs one op; returns its outcome and a description for messages.
    pub fn run_op(
        &self,
        thread: usize,
        op: &Op,
        own: &mut HashMap<u8, u64>,
        acked_own: &mut HashMap<u8, Vec<(u64, u128)>>,
    ) -> (Result<(), Error>, String) {
        let batch = self.batch_base + self.next_batch.fetch_add(1, Ordering::SeqCst) as u32;
        let what = format!("thread {thread} batch {batch} {op:?}");
        let parts: Vec<StreamRef> = match op {
            Op::Append { stream, .. } => vec![*stream],
            Op::AppendMulti { streams, .. } => streams.clone(),
            Op::Read { stream } => {
                let result = self.check_read(thread, *stream, acked_own.get(stream).map_or(&[][..], Vec::as_slice));
                return (result, what);
            }
            Op::Sync => return (self.store.sync(), what),
            Op::Seal => return (self.store.seal(), what),
        };
        let events = match op {
            Op::Append { events, .. } | Op::AppendMulti { events, .. } => *events,
            _ => unreachable!(),
        };
        let names: Vec<String> = parts.iter().map(|&s| self.stream_name(thread, s)).collect();
        let count = parts.len() as u8;
        let result = if let Op::Append { stream, .. } = op {
            self.store
                .append(&names[0], Self::expected(own, *stream), part_events(batch, 1, 0, events))
                .map(|r| vec![r])
        } else {
            self.store.append_multi(parts.iter().zip(&names).enumerate().map(|(i, (&s, name))| {
                StreamAppend::new(name.clone(), Self::expected(own, s), part_events(batch, count, i as u8, events))
            }))
        };
        match result {
            Ok(results) => {
                for (i, (&stream, result)) in parts.iter().zip(&results).enumerate() {
                    if result.last_version - result.first_version + 1 != u64::from(events) {
                        self.violation(format!("{what}: result {result:?} does not cover {events} events"));
                    }
                    if let StreamRef::Own(n) = stream {
                        own.insert(n, result.last_version);
                        let list = acked_own.entry(n).or_default();
                        for index in 0..events {
                            let id = EventId { batch, parts: count, part: i as u8, events, index };
                            list.push((result.first_version + u64::from(index), id.encode()));
                        }
                    }
                }
                self.acknowledge(Ack { batch, streams: names, results });
                (Ok(()), what)
            }
            Err(error) => (Err(error), what),
        }
    }

    /// Reads an own stream: every acknowledged event must be there at its version.
    fn check_read(&self, thread: usize, stream: u8, acked: &[(u64, u128)]) -> Result<(), Error> {
        let name = self.stream_name(thread, StreamRef::Own(stream));
        let events: Vec<RecordedEvent> = match self.store.read_stream(&name, 0) {
            Ok(iter) => iter.collect::<Result<_, _>>()?,
            Err(error) => return Err(error),
        };
        for &(version, id) in acked {
            if events.get(version as usize).map(|e| (e.version, e.id)) != Some((version, id)) {
                self.violation(format!("read of {name:?} misses acknowledged version {version}"));
            }
        }
        Ok(())
    }
}

/// The options every crash test uses: small segments so the workload rolls several.
pub fn small_segments() -> Options {
    Options::default().segment_size(4096)
}
