//! Model-based test: random sequences of appends, multi-stream appends, reads, deletions,
//! snapshots, compactions, power losses and reopens run against the store (on `SimStorage`,
//! `Durability::Sync`, 4 KiB segments) and against an in-memory model; after every
//! operation the store's answers and its whole visible content equal the model's. One
//! stream has `Retention::MaxCount(2)`, so compaction trims it; the others keep everything.
//!
//! `CHRONICLE_MODEL_CASES=N` runs N cases (default 128).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chronicle::storage::SimStorage;
use chronicle::{
    AppendResult, Durability, Error, ExpectedVersion, NewEvent, Options, RecordedEvent, Retention, Store, StreamAppend,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const STREAMS: [&str; 5] = ["alpha", "beta", "gamma", "delta", "epsilon"];
const DIR: &str = "/model-db";
const SEGMENT_BYTES: u64 = 4096;
const OPS_MAX: usize = 60;
const CASES_DEFAULT: u32 = 128;
/// The one stream with a retention rule (`Retention::MaxCount`); the others keep everything.
const TRIMMED_STREAM: &str = "delta";
const TRIMMED_STREAM_KEEPS: u64 = 2;

/// How an operation states its expected version; `Current` is resolved against the model
/// when the operation runs (so that it usually succeeds).
#[derive(Debug, Clone, Copy)]
enum Expect {
    Any,
    NoStream,
    Current,
    Exact(u64),
}

#[derive(Debug, Clone)]
struct EventSpec {
    data_bytes: usize,
    with_id: bool,
    with_metadata: bool,
}

#[derive(Debug, Clone)]
struct PartSpec {
    stream: usize,
    expect: Expect,
    events: Vec<EventSpec>,
}

#[derive(Debug, Clone)]
enum Op {
    Append(PartSpec),
    AppendMulti(Vec<PartSpec>),
    /// Sends the last acknowledged append again, unchanged (same ids, same expected version).
    RetryLast,
    ReadStream {
        stream: usize,
        from_version: u64,
        backward: bool,
    },
    ReadAll {
        from_position: u64,
        backward: bool,
    },
    Delete {
        stream: usize,
        expect: Expect,
    },
    /// Snapshot at `last_version - back` (or past the end when `past_end`).
    Snapshot {
        stream: usize,
        back: u64,
        past_end: bool,
    },
    Compact,
    Crash(u64),
    Reopen,
}

fn expect_strategy() -> impl Strategy<Value = Expect> {
    prop_oneof![
        3 => Just(Expect::Any),
        1 => Just(Expect::NoStream),
        3 => Just(Expect::Current),
        1 => (0u64..6).prop_map(Expect::Exact),
    ]
}

fn event_strategy() -> impl Strategy<Value = EventSpec> {
    (prop_oneof![1 => 0usize..40, 2 => 40usize..320], any::<bool>(), any::<bool>())
        .prop_map(|(data_bytes, with_id, with_metadata)| EventSpec { data_bytes, with_id, with_metadata })
}

fn part_strategy(stream: impl Strategy<Value = usize>) -> impl Strategy<Value = PartSpec> {
    (stream, expect_strategy(), prop::collection::vec(event_strategy(), 1..=3))
        .prop_map(|(stream, expect, events)| PartSpec { stream, expect, events })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let stream = 0..STREAMS.len();
    prop_oneof![
        8 => part_strategy(stream.clone()).prop_map(Op::Append),
        3 => prop::collection::vec(part_strategy(stream.clone()), 1..=3).prop_map(|mut parts| {
            // A stream may appear once per append_multi.
            let mut seen = BTreeSet::new();
            parts.retain(|p| seen.insert(p.stream));
            Op::AppendMulti(parts)
        }),
        1 => Just(Op::RetryLast),
        2 => (stream.clone(), 0u64..5, any::<bool>())
            .prop_map(|(stream, from_version, backward)| Op::ReadStream { stream, from_version, backward }),
        2 => (0u64..40, any::<bool>()).prop_map(|(from_position, backward)| Op::ReadAll { from_position, backward }),
        1 => (stream.clone(), expect_strategy()).prop_map(|(stream, expect)| Op::Delete { stream, expect }),
        2 => (stream, 0u64..3, prop::bool::weighted(0.1))
            .prop_map(|(stream, back, past_end)| Op::Snapshot { stream, back, past_end }),
        1 => Just(Op::Compact),
        2 => any::<u64>().prop_map(Op::Crash),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelEvent {
    stream: String,
    version: u64,
    position: u64,
    event_type: String,
    data: Vec<u8>,
    metadata: Vec<u8>,
    /// The id given to the append, or (learned at the first read) the one the store generated.
    id: Option<u128>,
}

/// What an operation must return, as far as the model can tell.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Appended(Vec<AppendResult>),
    Deleted,
    SnapshotSaved,
    WrongExpectedVersion { stream: String, actual: Option<u64> },
    StreamDeleted(String),
    InvalidInput,
}

#[derive(Debug, Default)]
struct Model {
    /// Events of live streams, in version order (only `TRIMMED_STREAM` loses old events, at
    /// compaction).
    streams: BTreeMap<String, Vec<ModelEvent>>,
    deleted: BTreeSet<String>,
    /// Newest snapshot per live stream: (version, state).
    snapshots: BTreeMap<String, (u64, Vec<u8>)>,
    next_position: u64,
    /// Acknowledged writes (appends, deletions, snapshots) and how many of them are
    /// guaranteed to survive a power loss. Under `Durability::Sync` every acknowledgement is
    /// durable; a Buffered variant would advance `durable_writes` only at `sync`/Sync points
    /// and accept any state between the two after a crash.
    acknowledged_writes: u64,
    durable_writes: u64,
}

enum Check {
    Proceed(Option<u64>),
    Idempotent(AppendResult),
    Fail(Outcome),
}

impl Model {
    fn last_version(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).and_then(|events| events.last()).map(|e| e.version)
    }

    fn resolve(&self, stream: &str, expect: Expect) -> ExpectedVersion {
        match expect {
            Expect::Any => ExpectedVersion::Any,
            Expect::NoStream => ExpectedVersion::NoStream,
            Expect::Current => self.last_version(stream).map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
            Expect::Exact(v) => ExpectedVersion::Exact(v),
        }
    }

    fn check(&self, stream: &str, expected: ExpectedVersion, ids: Option<&[u128]>) -> Check {
        if self.deleted.contains(stream) {
            return Check::Fail(Outcome::StreamDeleted(stream.to_owned()));
        }
        let actual = self.last_version(stream);
        let ok = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(v) => actual == Some(v),
        };
        if ok {
            return Check::Proceed(actual);
        }
        let first_version = match expected {
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(v) => v.checked_add(1),
            _ => None,
        };
        if let (Some(first), Some(ids)) = (first_version, ids) {
            let stored = self.streams.get(stream).map(Vec::as_slice).unwrap_or_default();
            let window: Vec<&ModelEvent> = stored.iter().filter(|e| e.version >= first).take(ids.len()).collect();
            if window.len() == ids.len()
                && window
                    .iter()
                    .zip(ids)
                    .enumerate()
                    .all(|(i, (e, id))| e.id == Some(*id) && e.version == first + i as u64)
            {
                return Check::Idempotent(AppendResult {
                    first_version: first,
                    last_version: first + ids.len() as u64 - 1,
                    first_position: window[0].position,
                    last_position: window[ids.len() - 1].position,
                });
            }
        }
        Check::Fail(Outcome::WrongExpectedVersion { stream: stream.to_owned(), actual })
    }

    fn append(&mut self, parts: &[(String, ExpectedVersion, Vec<NewEvent>)]) -> Outcome {
        if parts.is_empty() {
            return Outcome::InvalidInput;
        }
        let checks: Vec<Check> = parts
            .iter()
            .map(|(stream, expected, events)| {
                let ids: Option<Vec<u128>> = events.iter().map(NewEvent::id).collect();
                self.check(stream, *expected, ids.as_deref())
            })
            .collect();
        if let Some(index) = checks.iter().position(|c| matches!(c, Check::Fail(_))) {
            let Some(Check::Fail(outcome)) = checks.into_iter().nth(index) else { unreachable!() };
            return outcome;
        }
        if checks.iter().all(|c| matches!(c, Check::Idempotent(_))) {
            return Outcome::Appended(
                checks.into_iter().map(|c| if let Check::Idempotent(r) = c { r } else { unreachable!() }).collect(),
            );
        }
        if let Some(index) = checks.iter().position(|c| matches!(c, Check::Idempotent(_))) {
            let stream = &parts[index].0;
            return Outcome::WrongExpectedVersion { stream: stream.clone(), actual: self.last_version(stream) };
        }
        let mut results = Vec::new();
        for ((stream, _, events), check) in parts.iter().zip(checks) {
            let Check::Proceed(last) = check else { unreachable!() };
            let first_version = last.map_or(0, |v| v + 1);
            let first_position = self.next_position;
            let stored = self.streams.entry(stream.clone()).or_default();
            for (i, event) in events.iter().enumerate() {
                stored.push(ModelEvent {
                    stream: stream.clone(),
                    version: first_version + i as u64,
                    position: self.next_position,
                    event_type: event.event_type().to_owned(),
                    data: event.data().to_vec(),
                    metadata: event.metadata().to_vec(),
                    id: event.id(),
                });
                self.next_position += 1;
            }
            results.push(AppendResult {
                first_version,
                last_version: first_version + events.len() as u64 - 1,
                first_position,
                last_position: self.next_position - 1,
            });
        }
        self.acknowledge();
        Outcome::Appended(results)
    }

    fn delete(&mut self, stream: &str, expected: ExpectedVersion) -> Outcome {
        match self.check(stream, expected, None) {
            Check::Fail(outcome) => outcome,
            Check::Idempotent(_) => unreachable!("a deletion carries no ids"),
            Check::Proceed(_) => {
                self.streams.remove(stream);
                self.snapshots.remove(stream);
                self.deleted.insert(stream.to_owned());
                self.next_position += 1; // the tombstone record
                self.acknowledge();
                Outcome::Deleted
            }
        }
    }

    fn snapshot(&mut self, stream: &str, version: u64, state: &[u8]) -> Outcome {
        if self.deleted.contains(stream) {
            return Outcome::StreamDeleted(stream.to_owned());
        }
        match self.last_version(stream) {
            Some(last) if version <= last => {}
            _ => return Outcome::InvalidInput,
        }
        // The snapshot with the highest version is the one loaded; saving the same version
        // again replaces its file.
        let newest = self.snapshots.get(stream).map(|(v, _)| *v);
        if newest.is_none_or(|newest| version >= newest) {
            self.snapshots.insert(stream.to_owned(), (version, state.to_vec()));
        }
        self.acknowledge();
        Outcome::SnapshotSaved
    }

    /// `Store::compact` seals the active segment, then drops what retention releases.
    fn compact(&mut self) {
        if let Some(events) = self.streams.get_mut(TRIMMED_STREAM)
            && let Some(last) = events.last().map(|e| e.version)
        {
            events.retain(|e| e.version + TRIMMED_STREAM_KEEPS > last);
        }
    }

    fn acknowledge(&mut self) {
        self.acknowledged_writes += 1;
        self.durable_writes = self.acknowledged_writes; // Durability::Sync
    }

    fn all_events(&self) -> Vec<&ModelEvent> {
        let mut all: Vec<&ModelEvent> = self.streams.values().flatten().collect();
        all.sort_by_key(|e| e.position);
        all
    }
}

fn outcome_of<T>(result: chronicle::Result<T>, ok: impl FnOnce(T) -> Outcome) -> Result<Outcome, TestCaseError> {
    match result {
        Ok(value) => Ok(ok(value)),
        Err(Error::WrongExpectedVersion { stream, actual, .. }) => Ok(Outcome::WrongExpectedVersion { stream, actual }),
        Err(Error::StreamDeleted { stream }) => Ok(Outcome::StreamDeleted(stream)),
        Err(Error::InvalidInput { .. }) => Ok(Outcome::InvalidInput),
        Err(other) => Err(TestCaseError::fail(format!("unexpected error: {other:?}"))),
    }
}

fn options() -> Options {
    Options::default().durability(Durability::Sync).segment_size(SEGMENT_BYTES)
}

fn open(sim: &SimStorage) -> Result<Store, TestCaseError> {
    Store::open_with_storage(DIR, options(), Arc::new(sim.clone()))
        .map_err(|e| TestCaseError::fail(format!("open failed: {e:?}")))
}

/// Deterministic content for the `index`-th event of operation `op`.
fn new_event(op: usize, index: usize, spec: &EventSpec) -> NewEvent {
    let data: Vec<u8> = (0..spec.data_bytes).map(|i| (op * 31 + index * 7 + i) as u8).collect();
    let mut event = NewEvent::new(format!("Type{}", (op + index) % 4), data);
    if spec.with_metadata {
        event = event.with_metadata(format!("meta-{op}-{index}"));
    }
    if spec.with_id {
        event = event.with_id((0xAB_u128 << 120) | ((op as u128) << 16) | index as u128);
    }
    event
}

struct Harness {
    sim: SimStorage,
    store: Option<Store>,
    model: Model,
    last_append: Option<Vec<(String, ExpectedVersion, Vec<NewEvent>)>>,
}

impl Harness {
    fn store(&self) -> &Store {
        self.store.as_ref().expect("store is open")
    }

    fn run(&mut self, op_index: usize, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Append(part) => self.append(op_index, std::slice::from_ref(part), false)?,
            Op::AppendMulti(parts) => self.append(op_index, parts, true)?,
            Op::RetryLast => {
                if let Some(parts) = self.last_append.clone() {
                    self.submit(parts, true)?;
                }
            }
            Op::ReadStream { stream, from_version, backward } => {
                let name = STREAMS[*stream];
                let read = if *backward {
                    self.store().read_stream_backward(name, Some(*from_version))
                } else {
                    self.store().read_stream(name, *from_version)
                };
                if self.model.deleted.contains(name) {
                    prop_assert!(matches!(read, Err(Error::StreamDeleted { .. })), "read of deleted {name}: {read:?}");
                } else {
                    let got: Vec<RecordedEvent> = read.expect("read_stream").map(|e| e.expect("event")).collect();
                    let mut want: Vec<&ModelEvent> = self.model.streams.get(name).into_iter().flatten().collect();
                    if *backward {
                        want.retain(|e| e.version <= *from_version);
                        want.reverse();
                    } else {
                        want.retain(|e| e.version >= *from_version);
                    }
                    compare_events(&got, &want)?;
                }
            }
            Op::ReadAll { from_position, backward } => {
                let read = if *backward {
                    self.store().read_all_backward(Some(*from_position))
                } else {
                    self.store().read_all(*from_position)
                };
                let got: Vec<RecordedEvent> = read.expect("read_all").map(|e| e.expect("event")).collect();
                let mut want = self.model.all_events();
                if *backward {
                    want.retain(|e| e.position <= *from_position);
                    want.reverse();
                } else {
                    want.retain(|e| e.position >= *from_position);
                }
                compare_events(&got, &want)?;
            }
            Op::Delete { stream, expect } => {
                let name = STREAMS[*stream];
                let expected = self.model.resolve(name, *expect);
                let got = outcome_of(self.store().delete_stream(name, expected), |()| Outcome::Deleted)?;
                let want = self.model.delete(name, expected);
                prop_assert_eq!(got, want, "delete_stream({}, {:?})", name, expected);
            }
            Op::Snapshot { stream, back, past_end } => {
                let name = STREAMS[*stream];
                let version = match self.model.last_version(name) {
                    Some(last) if *past_end => last + 1,
                    Some(last) => last.saturating_sub(*back),
                    None => *back,
                };
                let state = format!("state of {name} at {version}, op {op_index}").into_bytes();
                let got = outcome_of(self.store().save_snapshot(name, version, &state), |()| Outcome::SnapshotSaved)?;
                let want = self.model.snapshot(name, version, &state);
                prop_assert_eq!(got, want, "save_snapshot({}, {})", name, version);
            }
            Op::Compact => {
                self.store().compact().map_err(|e| TestCaseError::fail(format!("compact: {e:?}")))?;
                self.model.compact();
            }
            Op::Crash(seed) => {
                let after = self.sim.crash(*seed);
                drop(self.store.take());
                // Under Sync every acknowledged write is durable: the model stays as it is.
                prop_assert_eq!(self.model.durable_writes, self.model.acknowledged_writes);
                self.sim = after;
                self.store = Some(open(&self.sim)?);
            }
            Op::Reopen => {
                let store = self.store.take().expect("store is open");
                store.close().map_err(|e| TestCaseError::fail(format!("close: {e:?}")))?;
                self.store = Some(open(&self.sim)?);
            }
        }
        self.check_everything()
    }

    fn append(&mut self, op_index: usize, parts: &[PartSpec], multi: bool) -> Result<(), TestCaseError> {
        let request: Vec<(String, ExpectedVersion, Vec<NewEvent>)> = parts
            .iter()
            .enumerate()
            .map(|(part_index, part)| {
                let name = STREAMS[part.stream];
                let events = part
                    .events
                    .iter()
                    .enumerate()
                    .map(|(i, spec)| new_event(op_index, part_index * 4 + i, spec))
                    .collect();
                (name.to_owned(), self.model.resolve(name, part.expect), events)
            })
            .collect();
        self.submit(request, multi)
    }

    fn submit(
        &mut self,
        request: Vec<(String, ExpectedVersion, Vec<NewEvent>)>,
        multi: bool,
    ) -> Result<(), TestCaseError> {
        let result = if multi || request.len() != 1 {
            self.store()
                .append_multi(request.iter().map(|(s, e, events)| StreamAppend::new(s.as_str(), *e, events.clone())))
        } else {
            let (stream, expected, events) = &request[0];
            self.store().append(stream, *expected, events.clone()).map(|r| vec![r])
        };
        let got = outcome_of(result, Outcome::Appended)?;
        let want = self.model.append(&request);
        prop_assert_eq!(
            &got,
            &want,
            "append {:?}",
            request.iter().map(|(s, e, v)| (s, e, v.len())).collect::<Vec<_>>()
        );
        if matches!(got, Outcome::Appended(_)) {
            self.last_append = Some(request);
        }
        Ok(())
    }

    /// The store's whole visible state equals the model's.
    fn check_everything(&mut self) -> Result<(), TestCaseError> {
        let store = self.store.as_ref().expect("store is open");
        let live: Vec<String> = self.model.streams.keys().cloned().collect();
        prop_assert_eq!(store.streams().expect("streams"), live);
        for name in STREAMS {
            if self.model.deleted.contains(name) {
                prop_assert!(
                    matches!(store.stream_version(name), Err(Error::StreamDeleted { .. })),
                    "stream_version of deleted {}",
                    name
                );
                prop_assert!(
                    matches!(store.read_stream(name, 0), Err(Error::StreamDeleted { .. })),
                    "read_stream of deleted {}",
                    name
                );
                prop_assert!(
                    matches!(store.load_snapshot(name), Err(Error::StreamDeleted { .. })),
                    "load_snapshot of deleted {}",
                    name
                );
                continue;
            }
            prop_assert_eq!(store.stream_version(name).expect("stream_version"), self.model.last_version(name));
            let got: Vec<RecordedEvent> =
                store.read_stream(name, 0).expect("read_stream").map(|e| e.expect("event")).collect();
            let want: Vec<&ModelEvent> = self.model.streams.get(name).into_iter().flatten().collect();
            compare_events(&got, &want)?;
            let snapshot = store.load_snapshot(name).expect("load_snapshot").map(|s| (s.version, s.data.to_vec()));
            prop_assert_eq!(snapshot.as_ref(), self.model.snapshots.get(name), "snapshot of {}", name);
        }
        let got: Vec<RecordedEvent> = store.read_all(0).expect("read_all").map(|e| e.expect("event")).collect();
        prop_assert!(got.windows(2).all(|w| w[0].position < w[1].position), "read_all positions not increasing");
        compare_events(&got, &self.model.all_events())?;
        // Learn the ids the store generated, so that later reads (after crashes and
        // compactions) must return the same ones.
        for event in got {
            if let Some(stored) = self.model.streams.get_mut(&event.stream_id)
                && let Some(model_event) = stored.iter_mut().find(|e| e.version == event.version)
                && model_event.id.is_none()
            {
                model_event.id = Some(event.id);
            }
        }
        Ok(())
    }
}

fn compare_events(got: &[RecordedEvent], want: &[&ModelEvent]) -> Result<(), TestCaseError> {
    let got_keys: Vec<(&str, u64, u64)> = got.iter().map(|e| (e.stream_id.as_str(), e.version, e.position)).collect();
    let want_keys: Vec<(&str, u64, u64)> = want.iter().map(|e| (e.stream.as_str(), e.version, e.position)).collect();
    prop_assert_eq!(got_keys, want_keys, "(stream, version, position) differ");
    for (g, w) in got.iter().zip(want) {
        prop_assert_eq!(&g.event_type, &w.event_type);
        prop_assert_eq!(&g.data[..], &w.data[..], "data of {} v{}", w.stream, w.version);
        prop_assert_eq!(&g.metadata[..], &w.metadata[..], "metadata of {} v{}", w.stream, w.version);
        if let Some(id) = w.id {
            prop_assert_eq!(g.id, id, "id of {} v{}", w.stream, w.version);
        }
    }
    Ok(())
}

fn run_ops(ops: &[Op]) -> Result<(), TestCaseError> {
    let sim = SimStorage::new();
    let store = open(&sim)?;
    store
        .set_stream_retention(TRIMMED_STREAM, Retention::MaxCount(TRIMMED_STREAM_KEEPS))
        .map_err(|e| TestCaseError::fail(format!("set_stream_retention: {e:?}")))?;
    let mut harness = Harness { sim, store: Some(store), model: Model::default(), last_append: None };
    for (index, op) in ops.iter().enumerate() {
        harness.run(index, op).map_err(|e| TestCaseError::fail(format!("op {index} {op:?}: {e}")))?;
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("CHRONICLE_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(CASES_DEFAULT)
}

#[test]
fn store_matches_model_under_sync() {
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(op_strategy(), 5..=OPS_MAX), |ops| run_ops(&ops));
    if let Err(error) = result {
        panic!("{error}");
    }
}
