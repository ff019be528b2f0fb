//! The in-memory model that the `operations` fuzz target and `tests/model.rs` hold the store
//! to: what each operation must answer, and which states a store may show after a power loss.
//!
//! The model keeps the state the last recovery showed (`base`, durable) and the writes since,
//! in log order: acknowledged ones, then at most one *in doubt* (its call failed on an
//! injected fault, so it may or may not have reached the disk). A prefix of them is known
//! durable: every acknowledged write under `Durability::Sync`; otherwise those covered by a
//! successful `sync`, `seal`, `compact`, `save_snapshot` (which syncs the log first) or
//! clean close. After a power loss the store must show `base` plus a prefix of the writes at
//! least as long as the durable prefix: each stream a prefix of what was written, no event
//! twice, every durable event byte for byte at its version and position.

use std::collections::{BTreeMap, BTreeSet};

use chronicle::internal::encoded_record_bytes as encoded_len;
use chronicle::{AppendResult, ExpectedVersion, NewEvent, RecordedEvent};

/// The streams operations use; an operation names one by its index.
pub const STREAMS: [&str; 5] = ["alpha", "beta", "gamma", "delta", "epsilon"];
/// The one stream with a retention rule (`Retention::MaxCount(TRIMMED_STREAM_KEEPS)`), so
/// compaction trims it; the others keep everything.
pub const TRIMMED_STREAM: &str = "delta";
/// Events of [`TRIMMED_STREAM`] a compaction keeps.
pub const TRIMMED_STREAM_KEEPS: u64 = 2;

/// An event as the model expects to read it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEvent {
    /// Stream id.
    pub stream: String,
    /// Version in its stream.
    pub version: u64,
    /// Global position.
    pub position: u64,
    /// Event type.
    pub event_type: String,
    /// Data bytes.
    pub data: Vec<u8>,
    /// Metadata bytes.
    pub metadata: Vec<u8>,
    /// The id given to the append (`None`: the store generated one, learned at the first read).
    pub id: Option<u128>,
    /// Correlation id.
    pub correlation_id: Option<u128>,
    /// Causation id.
    pub causation_id: Option<u128>,
}

/// A change the store was asked to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// The events of one `append` or `append_multi`, in position order.
    Append(Vec<ModelEvent>),
    /// A `delete_stream`: a tombstone at `position`.
    Delete {
        /// The deleted stream.
        stream: String,
        /// The tombstone's position.
        position: u64,
    },
    /// A `save_snapshot`.
    Snapshot {
        /// Its stream.
        stream: String,
        /// The version it covers.
        version: u64,
        /// The saved state.
        state: Vec<u8>,
    },
    /// A `compact`: trims [`TRIMMED_STREAM`] to its last [`TRIMMED_STREAM_KEEPS`] events.
    Compact,
}

/// What the store holds, as far as reads can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Events of live streams, in version order.
    pub streams: BTreeMap<String, Vec<ModelEvent>>,
    /// Deleted streams.
    pub deleted: BTreeSet<String>,
    /// Newest snapshot of each live stream: (version, state).
    pub snapshots: BTreeMap<String, (u64, Vec<u8>)>,
    /// Position of the next record.
    pub next_position: u64,
}

impl State {
    /// The stream's last version (`None` if it has no event).
    pub fn last_version(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).and_then(|events| events.last()).map(|e| e.version)
    }

    /// Every live event, in position order.
    pub fn all_events(&self) -> Vec<&ModelEvent> {
        let mut all: Vec<&ModelEvent> = self.streams.values().flatten().collect();
        all.sort_by_key(|e| e.position);
        all
    }

    fn apply(&mut self, write: &Write) {
        match write {
            Write::Append(events) => {
                for event in events {
                    self.streams.entry(event.stream.clone()).or_default().push(event.clone());
                    self.next_position = event.position + 1;
                }
            }
            Write::Delete { stream, position } => {
                self.streams.remove(stream);
                self.snapshots.remove(stream);
                self.deleted.insert(stream.clone());
                self.next_position = position + 1;
            }
            Write::Snapshot { stream, version, state } => {
                // The snapshot with the highest version is the one loaded; saving the same
                // version again replaces its file.
                let newest = self.snapshots.get(stream).map(|(v, _)| *v);
                if newest.is_none_or(|newest| *version >= newest) {
                    self.snapshots.insert(stream.clone(), (*version, state.clone()));
                }
            }
            Write::Compact => {
                if let Some(events) = self.streams.get_mut(TRIMMED_STREAM)
                    && let Some(last) = events.last().map(|e| e.version)
                {
                    events.retain(|e| e.version + TRIMMED_STREAM_KEEPS > last);
                }
            }
        }
    }
}

/// What an operation must return, as far as the model can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The append's results, one per part.
    Appended(Vec<AppendResult>),
    /// `delete_stream` returned `Ok`.
    Deleted,
    /// `save_snapshot` returned `Ok`.
    SnapshotSaved,
    /// `Error::WrongExpectedVersion`.
    WrongExpectedVersion {
        /// The stream that failed its check.
        stream: String,
        /// Its version.
        actual: Option<u64>,
    },
    /// `Error::StreamDeleted`.
    StreamDeleted(String),
    /// `Error::InvalidInput`.
    InvalidInput,
}

/// The size limits an append is validated against (from the store's options).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest encoded event.
    pub event_bytes: usize,
    /// Largest encoded append.
    pub batch_bytes: usize,
}

/// One part of an append request: stream, expected version, events.
pub type Part = (String, ExpectedVersion, Vec<NewEvent>);

/// What the store shows: every read of every stream the operations use.
#[derive(Debug)]
pub struct View {
    /// `Store::streams`.
    pub streams: Vec<String>,
    /// Each of [`STREAMS`], in order.
    pub per_stream: Vec<(&'static str, StreamView)>,
    /// `read_all(0)`.
    pub all: Vec<RecordedEvent>,
}

/// What the store shows of one stream.
#[derive(Debug)]
pub enum StreamView {
    /// `stream_version`, `read_stream` and `load_snapshot` all return `StreamDeleted`.
    Deleted,
    /// A live (or never written) stream.
    Live {
        /// `stream_version`.
        version: Option<u64>,
        /// `read_stream(0)`.
        events: Vec<RecordedEvent>,
        /// `load_snapshot`: (version, state).
        snapshot: Option<(u64, Vec<u8>)>,
    },
}

enum Check {
    Proceed(Option<u64>),
    Idempotent(AppendResult),
    Fail(Outcome),
}

/// The model: durable base state, writes since, and what is known durable.
#[derive(Debug)]
pub struct Model {
    /// Under `Durability::Sync` every acknowledged write is durable at once.
    sync_acknowledges: bool,
    base: State,
    history: Vec<Write>,
    /// `history[..durable]` survives any power loss.
    durable: usize,
    /// The last write of `history` was not acknowledged.
    in_doubt: bool,
    /// `base` plus every acknowledged write.
    current: State,
    /// Ids the store generated, learned from reads, by position.
    learned_ids: BTreeMap<u64, u128>,
}

impl Model {
    /// An empty store; `sync_acknowledges` for `Durability::Sync`.
    pub fn new(sync_acknowledges: bool) -> Self {
        Model {
            sync_acknowledges,
            base: State::default(),
            history: Vec::new(),
            durable: 0,
            in_doubt: false,
            current: State::default(),
            learned_ids: BTreeMap::new(),
        }
    }

    /// The state every acknowledged write leads to.
    pub fn current(&self) -> &State {
        &self.current
    }

    /// Writes (since the last recovery) guaranteed to survive a power loss.
    pub fn durable_writes(&self) -> usize {
        self.durable
    }

    /// Writes (since the last recovery) acknowledged.
    pub fn acknowledged_writes(&self) -> usize {
        self.history.len() - usize::from(self.in_doubt)
    }

    /// Writes (since the last recovery) acknowledged or in doubt.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// Records an acknowledged write.
    pub fn acknowledge(&mut self, write: Write) {
        self.current.apply(&write);
        self.history.push(write);
        if self.sync_acknowledges {
            self.durable = self.history.len();
        }
    }

    /// Records a write whose call failed on an injected fault: it may or may not be stored.
    pub fn in_doubt(&mut self, write: Write) {
        self.history.push(write);
        self.in_doubt = true;
    }

    /// Every acknowledged write is durable now (a sync, seal, compaction, snapshot or close
    /// returned `Ok`).
    pub fn all_durable(&mut self) {
        self.durable = self.acknowledged_writes();
    }

    fn check(&self, stream: &str, expected: ExpectedVersion, ids: Option<&[u128]>) -> Check {
        if self.current.deleted.contains(stream) {
            return Check::Fail(Outcome::StreamDeleted(stream.to_owned()));
        }
        let actual = self.current.last_version(stream);
        let ok = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(v) => actual == Some(v),
        };
        if ok {
            return match (expected, actual, ids) {
                (ExpectedVersion::Any | ExpectedVersion::StreamExists, Some(last), Some(ids)) => {
                    self.check_recent(stream, last, ids)
                }
                _ => Check::Proceed(actual),
            };
        }
        let first_version = match expected {
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(v) => v.checked_add(1),
            ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
        };
        // A retry: the stream holds exactly these ids from the version the append expected.
        if let (Some(first), Some(ids)) = (first_version, ids) {
            let stored = self.current.streams.get(stream).map(Vec::as_slice).unwrap_or_default();
            let window: Vec<&ModelEvent> = stored.iter().filter(|e| e.version >= first).take(ids.len()).collect();
            let matches = window.len() == ids.len()
                && window
                    .iter()
                    .zip(ids)
                    .enumerate()
                    .all(|(i, (e, id))| e.id == Some(*id) && e.version == first + i as u64);
            if let (true, Some(head), Some(tail)) = (matches, window.first(), window.last()) {
                return Check::Idempotent(AppendResult {
                    first_version: first,
                    last_version: tail.version,
                    first_position: head.position,
                    last_position: tail.position,
                });
            }
        }
        Check::Fail(Outcome::WrongExpectedVersion { stream: stream.to_owned(), actual })
    }

    /// Under `Any` / `StreamExists`: the stream's `ids.len()` most recent events hold these
    /// ids in order (a retry), some of them (a conflict), or none (a new append).
    fn check_recent(&self, stream: &str, last: u64, ids: &[u128]) -> Check {
        let first = last.saturating_sub((ids.len() as u64).saturating_sub(1));
        let stored = self.current.streams.get(stream).map(Vec::as_slice).unwrap_or_default();
        let window: Vec<&ModelEvent> = stored.iter().filter(|e| e.version >= first && e.version <= last).collect();
        let matches = window.len() == ids.len()
            && window
                .iter()
                .zip(ids)
                .enumerate()
                .all(|(i, (e, id))| e.id == Some(*id) && e.version == first + i as u64);
        if let (true, Some(head), Some(tail)) = (matches, window.first(), window.last()) {
            return Check::Idempotent(AppendResult {
                first_version: first,
                last_version: tail.version,
                first_position: head.position,
                last_position: tail.position,
            });
        }
        if window.iter().any(|e| e.id.is_some_and(|id| ids.contains(&id))) {
            return Check::Fail(Outcome::WrongExpectedVersion { stream: stream.to_owned(), actual: Some(last) });
        }
        Check::Proceed(Some(last))
    }

    /// What an append (`append` for one part, `append_multi` otherwise) must answer, and the
    /// write it makes if it makes one.
    pub fn predict_append(&self, parts: &[Part], limits: Limits) -> (Outcome, Option<Write>) {
        if !valid_request(parts, limits) {
            return (Outcome::InvalidInput, None);
        }
        let mut checks = Vec::with_capacity(parts.len());
        for (stream, expected, events) in parts {
            let ids: Option<Vec<u128>> = events.iter().map(NewEvent::id).collect();
            match self.check(stream, *expected, ids.as_deref()) {
                Check::Fail(outcome) => return (outcome, None),
                check => checks.push(check),
            }
        }
        let idempotent: Vec<AppendResult> =
            checks.iter().filter_map(|c| if let Check::Idempotent(r) = c { Some(*r) } else { None }).collect();
        if idempotent.len() == checks.len() {
            return (Outcome::Appended(idempotent), None);
        }
        if let Some(index) = checks.iter().position(|c| matches!(c, Check::Idempotent(_))) {
            // Part of an all-or-nothing append is present and part is not: not a retry.
            let stream = parts.get(index).map(|p| p.0.clone()).unwrap_or_default();
            let actual = self.current.last_version(&stream);
            return (Outcome::WrongExpectedVersion { stream, actual }, None);
        }
        let mut position = self.current.next_position;
        let mut results = Vec::with_capacity(parts.len());
        let mut written = Vec::new();
        for ((stream, _, events), check) in parts.iter().zip(checks) {
            let Check::Proceed(last) = check else { continue };
            let first_version = last.map_or(0, |v| v + 1);
            let first_position = position;
            for (version, event) in (first_version..).zip(events) {
                written.push(ModelEvent {
                    stream: stream.clone(),
                    version,
                    position,
                    event_type: event.event_type().to_owned(),
                    data: event.data().to_vec(),
                    metadata: event.metadata().to_vec(),
                    id: event.id(),
                    correlation_id: event.correlation_id(),
                    causation_id: event.causation_id(),
                });
                position += 1;
            }
            results.push(AppendResult {
                first_version,
                last_version: first_version + events.len() as u64 - 1,
                first_position,
                last_position: position - 1,
            });
        }
        (Outcome::Appended(results), Some(Write::Append(written)))
    }

    /// What `delete_stream` must answer, and its write.
    pub fn predict_delete(&self, stream: &str, expected: ExpectedVersion) -> (Outcome, Option<Write>) {
        match self.check(stream, expected, None) {
            Check::Fail(outcome) => (outcome, None),
            Check::Proceed(_) | Check::Idempotent(_) => (
                Outcome::Deleted,
                Some(Write::Delete { stream: stream.to_owned(), position: self.current.next_position }),
            ),
        }
    }

    /// What `save_snapshot` must answer, and its write.
    pub fn predict_snapshot(&self, stream: &str, version: u64, state: &[u8]) -> (Outcome, Option<Write>) {
        if self.current.deleted.contains(stream) {
            return (Outcome::StreamDeleted(stream.to_owned()), None);
        }
        match self.current.last_version(stream) {
            Some(last) if version <= last => (
                Outcome::SnapshotSaved,
                Some(Write::Snapshot { stream: stream.to_owned(), version, state: state.to_vec() }),
            ),
            _ => (Outcome::InvalidInput, None),
        }
    }

    /// Checks a read that starts at `from` (a version or a position, as `key` gives it)
    /// and goes forward or `backward` through `stored`, the events in ascending order.
    pub fn check_read(
        &self,
        got: &[RecordedEvent],
        mut stored: Vec<&ModelEvent>,
        key: impl Fn(&ModelEvent) -> u64,
        from: u64,
        backward: bool,
    ) -> Result<(), String> {
        if backward {
            stored.retain(|e| key(e) <= from);
            stored.reverse();
        } else {
            stored.retain(|e| key(e) >= from);
        }
        compare_events(got, &stored, &self.learned_ids)
    }

    /// Checks that the store shows exactly the current state; learns generated ids.
    pub fn check_current(&mut self, view: &View) -> Result<(), String> {
        compare(&self.current, view, &self.learned_ids, false)?;
        self.learn_ids(view);
        Ok(())
    }

    /// After a reopen: the store must show `base` plus a prefix of the writes, at least
    /// `floor` of them long ([`Model::durable_writes`] after a power loss,
    /// [`Model::acknowledged_writes`] when the process only stopped). That state becomes
    /// the new durable base.
    ///
    /// Returns how many of the writes since the last recovery the store kept.
    pub fn recover(&mut self, view: &View, floor: usize) -> Result<usize, String> {
        let mut first_mismatch = None;
        for kept in (floor.min(self.history.len())..=self.history.len()).rev() {
            // A compaction in doubt may have swapped any of its runs: the trimmed stream may
            // hold any of the events it would discard.
            let partial_compaction =
                self.in_doubt && kept == self.history.len() && self.history.last() == Some(&Write::Compact);
            let applied = if partial_compaction { kept - 1 } else { kept };
            let mut candidate = self.base.clone();
            for write in self.history.iter().take(applied) {
                candidate.apply(write);
            }
            match compare(&candidate, view, &self.learned_ids, partial_compaction) {
                Ok(matched) => {
                    self.learned_ids.retain(|&position, _| position < matched.next_position);
                    self.base = matched.clone();
                    self.current = matched;
                    self.history.clear();
                    self.durable = 0;
                    self.in_doubt = false;
                    self.learn_ids(view);
                    return Ok(kept);
                }
                Err(mismatch) => {
                    first_mismatch.get_or_insert(format!("keeping all {kept} writes: {mismatch}"));
                }
            }
        }
        Err(format!(
            "the reopened store is no prefix of the {} writes since the last recovery ({} acknowledged, {} durable): {}",
            self.history.len(),
            self.acknowledged_writes(),
            self.durable,
            first_mismatch.unwrap_or_default()
        ))
    }

    fn learn_ids(&mut self, view: &View) {
        for event in &view.all {
            self.learned_ids.entry(event.position).or_insert(event.id);
        }
    }
}

/// Client-side validation, as the store does it before anything reaches the writer.
fn valid_request(parts: &[Part], limits: Limits) -> bool {
    let mut streams = BTreeSet::new();
    let mut total = 0usize;
    for (stream, _, events) in parts {
        if events.is_empty() || !streams.insert(stream.as_str()) {
            return false;
        }
        for event in events {
            let len = encoded_len(
                stream.len(),
                event.event_type().len(),
                event.metadata().len(),
                event.data().len(),
                event.correlation_id().is_some(),
                event.causation_id().is_some(),
            );
            if event.event_type().is_empty() || len > limits.event_bytes {
                return false;
            }
            total += len;
        }
    }
    !parts.is_empty() && total <= limits.batch_bytes
}

/// Compares what the store shows with `state`. With `partial_compaction`, the trimmed stream
/// may still hold any event a compaction would discard; the state returned is `state` with
/// the trimmed stream as the store shows it.
fn compare(
    state: &State,
    view: &View,
    learned_ids: &BTreeMap<u64, u128>,
    partial_compaction: bool,
) -> Result<State, String> {
    let mut state = state.clone();
    if partial_compaction
        && let Some((_, StreamView::Live { events: shown, .. })) =
            view.per_stream.iter().find(|(s, _)| *s == TRIMMED_STREAM)
        && let Some(events) = state.streams.get_mut(TRIMMED_STREAM)
        && let Some(last) = events.last().map(|e| e.version)
    {
        let shown: BTreeSet<u64> = shown.iter().map(|e| e.position).collect();
        events.retain(|e| e.version + TRIMMED_STREAM_KEEPS > last || shown.contains(&e.position));
    }
    let live: Vec<String> = state.streams.keys().cloned().collect();
    if view.streams != live {
        return Err(format!("streams() is {:?}, want {live:?}", view.streams));
    }
    for (name, shown) in &view.per_stream {
        match shown {
            StreamView::Deleted if state.deleted.contains(*name) => {}
            StreamView::Deleted => return Err(format!("stream {name} reads as deleted")),
            StreamView::Live { .. } if state.deleted.contains(*name) => {
                return Err(format!("deleted stream {name} reads as live"));
            }
            StreamView::Live { version, events, snapshot } => {
                if *version != state.last_version(name) {
                    return Err(format!("stream_version({name}) is {version:?}, want {:?}", state.last_version(name)));
                }
                let want: Vec<&ModelEvent> = state.streams.get(*name).into_iter().flatten().collect();
                compare_events(events, &want, learned_ids).map_err(|e| format!("read_stream({name}): {e}"))?;
                if snapshot.as_ref() != state.snapshots.get(*name) {
                    return Err(format!(
                        "load_snapshot({name}) gives version {:?}, want {:?}",
                        snapshot.as_ref().map(|s| s.0),
                        state.snapshots.get(*name).map(|s| s.0)
                    ));
                }
            }
        }
    }
    compare_events(&view.all, &state.all_events(), learned_ids).map_err(|e| format!("read_all: {e}"))?;
    Ok(state)
}

/// `got` holds exactly the events of `want`, byte for byte, in the same order.
fn compare_events(
    got: &[RecordedEvent],
    want: &[&ModelEvent],
    learned_ids: &BTreeMap<u64, u128>,
) -> Result<(), String> {
    let got_keys: Vec<(&str, u64, u64)> = got.iter().map(|e| (e.stream_id.as_str(), e.version, e.position)).collect();
    let want_keys: Vec<(&str, u64, u64)> = want.iter().map(|e| (e.stream.as_str(), e.version, e.position)).collect();
    if got_keys != want_keys {
        return Err(format!("(stream, version, position) are {got_keys:?}, want {want_keys:?}"));
    }
    for (g, w) in got.iter().zip(want) {
        let same = g.event_type == w.event_type
            && g.data[..] == w.data[..]
            && g.metadata[..] == w.metadata[..]
            && g.correlation_id == w.correlation_id
            && g.causation_id == w.causation_id
            && w.id.or_else(|| learned_ids.get(&w.position).copied()).is_none_or(|id| id == g.id);
        if !same {
            return Err(format!("{} v{} at {} differs from what was written: {g:?}", w.stream, w.version, w.position));
        }
    }
    Ok(())
}
