//! Operation sequences against the model ([`super::model`]): the `operations` fuzz target
//! and `tests/model.rs` both run them through [`run`].
//!
//! The store runs on [`SimStorage`] with 4 KiB segments; stream [`TRIMMED_STREAM`] has
//! `Retention::MaxCount(TRIMMED_STREAM_KEEPS)`. Every answer is compared with the model's,
//! and after every operation the store's whole visible content (every stream read, its
//! version and snapshot, `streams()`, `read_all`) must equal the model's state. A
//! [`Op::FailAfter`] makes the Nth I/O call from then on fail (EIO, ENOSPC, or the process
//! stops); the first operation that fails on it is *in doubt*, and the harness then loses
//! power ([`SimStorage::crash`]) or restarts the process on the same storage, reopens, and
//! checks that the store shows a state the model allows (see [`super::model`]). Every run
//! ends with a power loss that keeps nothing unsynced.
//!
//! Input layout of the fuzz target ([`decode`]; a byte past the end reads as 0): byte 0
//! picks the durability (`% 3`: Sync, Buffered, Periodic of an hour, which never ticks
//! during a run) and the [`Variant`] (`/ 3`: bit 0 async appends, bit 1 coalesced writes
//! under Buffered), then up to [`OPS_MAX`] operations, each an opcode byte (`% 14`, in the
//! order of [`Op`]'s variants) and its parameter bytes:
//!
//! | op | parameters |
//! |---|---|
//! | `Append` | part |
//! | `AppendMulti` | count (`% 4`), then that many parts |
//! | `ReadStream` | stream, from version, backward (bit 0) |
//! | `ReadAll` | from position, backward (bit 0) |
//! | `Delete` | stream, expect |
//! | `Snapshot` | stream, `back` (bits 0–1), past the end (bit 7) |
//! | `Crash` | seed |
//! | `FailAfter` | calls − 1, fault (`% 3`: stop, EIO, ENOSPC), recovery (bit 0: restart, else power loss with seed `byte >> 1`) |
//! | `CloseRacing` | part |
//! | others | none |
//!
//! A part is: stream (`% 5`), expect (0 Any, 1 NoStream, 2 StreamExists, 3 the current
//! version, `4 + v` Exact(v)), event count (`% 4`), then per event a size byte (below 224:
//! that many data bytes; else `(size − 223) × 256`, which can exceed the limits) and a flags
//! byte (bit 0 an id, bit 1 metadata, bit 2 correlation and causation ids).

use std::sync::Arc;
use std::time::Duration;

use crate::model::{Limits, Model, Outcome, Part, STREAMS, StreamView, TRIMMED_STREAM, TRIMMED_STREAM_KEEPS, View};
use chronicle::{
    Durability, Error, ExpectedVersion, NewEvent, Options, RecordedEvent, Retention, SEGMENT_BYTES_MIN, Store,
    StreamAppend,
};

use crate::sim::{InjectedError, SimStorage};

/// Most operations decoded from one input.
pub const OPS_MAX: usize = 64;
/// Directory of the store on the simulated storage.
const DIR: &str = "/ops-db";
/// `Periodic` interval: longer than any run, so the timer never fires and runs stay
/// deterministic (the model treats it like `Buffered`).
pub const PERIODIC_INTERVAL: Duration = Duration::from_secs(3600);

/// How an operation states its expected version; `Current` is resolved against the model
/// when the operation runs (so that it usually succeeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `ExpectedVersion::Any`.
    Any,
    /// `ExpectedVersion::NoStream`.
    NoStream,
    /// `ExpectedVersion::StreamExists`.
    StreamExists,
    /// `Exact(last version)`, or `NoStream` for a stream without events.
    Current,
    /// `ExpectedVersion::Exact`.
    Exact(u64),
}

/// One event of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    /// Bytes of data.
    pub data_bytes: usize,
    /// Give the event an id (retries are then idempotent).
    pub with_id: bool,
    /// Give the event metadata.
    pub with_metadata: bool,
    /// Give the event correlation and causation ids.
    pub with_links: bool,
}

/// One stream's part of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSpec {
    /// Index into [`STREAMS`] (taken modulo its length).
    pub stream: usize,
    /// Expected version.
    pub expect: Expect,
    /// Events (none: the store must refuse the append).
    pub events: Vec<EventSpec>,
}

/// What an armed fault does from its call on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The process dies: calls fail and change nothing ([`SimStorage::stop_at`]).
    Stop,
    /// Every call fails with EIO ([`SimStorage::fail_from`]).
    Io,
    /// Every call that needs space fails with ENOSPC.
    NoSpace,
}

/// What follows a fault that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Power loss: reopen on [`SimStorage::crash`] with this seed.
    PowerLoss(u64),
    /// The process restarts (the fault cleared, every write kept): reopen on the same storage.
    Restart,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `append` of one part.
    Append(PartSpec),
    /// `append_multi`.
    AppendMulti(Vec<PartSpec>),
    /// Sends the last acknowledged (or in-doubt) append again, unchanged.
    RetryLast,
    /// `read_stream` or `read_stream_backward`.
    ReadStream {
        /// Index into [`STREAMS`].
        stream: usize,
        /// First version read (forward) or last (backward).
        from_version: u64,
        /// Read backward.
        backward: bool,
    },
    /// `read_all` or `read_all_backward`.
    ReadAll {
        /// First position read (forward) or last (backward).
        from_position: u64,
        /// Read backward.
        backward: bool,
    },
    /// `delete_stream`.
    Delete {
        /// Index into [`STREAMS`].
        stream: usize,
        /// Expected version.
        expect: Expect,
    },
    /// `save_snapshot` at `last_version - back` (or past the end when `past_end`).
    Snapshot {
        /// Index into [`STREAMS`].
        stream: usize,
        /// Versions back from the last.
        back: u64,
        /// One past the last version (the store must refuse it).
        past_end: bool,
    },
    /// `compact`.
    Compact,
    /// `sync`.
    Sync,
    /// `seal`.
    Seal,
    /// Power loss now: reopen on a crash image with this seed.
    Crash(u64),
    /// Clean `close`, then reopen.
    Reopen,
    /// Arms a fault at the `calls`-th I/O call from now; when an operation fails on it,
    /// `recovery` follows.
    FailAfter {
        /// Calls from now (at least 1).
        calls: u64,
        /// What the fault does.
        fault: Fault,
        /// What follows it.
        recovery: Recovery,
    },
    /// `append` of one part while another thread closes the store, then a reopen: the append
    /// either commits (answering as the model predicts) or answers `Closed` having written
    /// nothing, and the close returns.
    CloseRacing(PartSpec),
}

/// What a run went through (to show that the faults fire and the checks bite).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Operations that failed on an armed fault.
    pub faults_fired: u64,
    /// Reopens on a crash image.
    pub power_losses: u64,
    /// Reopens on the same storage after a fault.
    pub restarts: u64,
    /// Writes in doubt when their fault fired that the reopened store holds.
    pub in_doubt_kept: u64,
    /// Acknowledged writes a power loss took (only possible outside `Durability::Sync`).
    pub acknowledged_lost: u64,
    /// Appends raced against a close from another thread ([`Op::CloseRacing`]).
    pub close_races: u64,
    /// Of those, the appends the closing store refused with `Closed`.
    pub close_races_refused: u64,
}

impl std::ops::AddAssign for RunStats {
    fn add_assign(&mut self, other: Self) {
        self.faults_fired += other.faults_fired;
        self.power_losses += other.power_losses;
        self.restarts += other.restarts;
        self.in_doubt_kept += other.in_doubt_kept;
        self.acknowledged_lost += other.acknowledged_lost;
        self.close_races += other.close_races;
        self.close_races_refused += other.close_races_refused;
    }
}

/// How the harness calls the store, beyond the durability: the same operations and the
/// same model, through other entry points.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Variant {
    /// Appends go through `append_async` / `append_multi_async`, polled to completion with
    /// a no-op waker (no runtime: the run stays deterministic).
    pub async_appends: bool,
    /// Under `Durability::Buffered`: `Options::coalesce_writes` with a window no run
    /// outlasts, so only size and the harness's own calls write the coalesced appends.
    pub coalesce_writes: bool,
}

impl Variant {
    /// The variant a fuzz input's first byte picks beyond its durability (`byte % 3`):
    /// bit 0 of `byte / 3` async appends, bit 1 coalesced writes.
    pub fn from_mode_byte(byte: u8) -> Variant {
        let bits = byte / 3;
        Variant { async_appends: bits & 1 != 0, coalesce_writes: bits & 2 != 0 }
    }
}

/// Runs `ops` against the store (with `durability`) and the model; `Err` describes the first
/// disagreement.
///
/// # Errors
/// A broken invariant, naming the operation.
pub fn run(durability: Durability, ops: &[Op]) -> Result<RunStats, String> {
    run_variant(durability, Variant::default(), ops)
}

/// [`run`] with the store called as `variant` says.
///
/// # Errors
/// A broken invariant, naming the operation.
pub fn run_variant(durability: Durability, variant: Variant, ops: &[Op]) -> Result<RunStats, String> {
    let mut harness = Harness::new(durability, variant)?;
    for (index, op) in ops.iter().enumerate() {
        harness.step(index, op).map_err(|e| format!("op {index} {op:?}: {e}"))?;
    }
    // Whatever the last operation was, the durable promises hold across one more power loss.
    harness.step(ops.len(), &Op::Crash(0)).map_err(|e| format!("final power loss: {e}"))?;
    if let Some(store) = harness.store.take() {
        store.close().map_err(|e| format!("final close: {e}"))?;
    }
    Ok(harness.stats)
}

/// Why an operation stopped early.
enum Interrupt {
    /// A broken invariant.
    Violation(String),
    /// A call failed on the armed fault.
    Injected,
}

type Step = Result<(), Interrupt>;

/// A fault armed at I/O call `at`, and what follows it.
#[derive(Debug, Clone, Copy)]
struct Armed {
    at: u64,
    fault: Fault,
    recovery: Recovery,
}

struct Harness {
    options: Options,
    sim: SimStorage,
    store: Option<Store>,
    model: Model,
    armed: Option<Armed>,
    /// The last append that was acknowledged or in doubt, and whether it was `append_multi`.
    last_append: Option<(Vec<Part>, bool)>,
    stats: RunStats,
    variant: Variant,
    /// Coalesced writes are on: an acknowledged append reaches the storage only at the next
    /// call that writes it (every read does), so a process stop can lose it.
    coalescing: bool,
    /// Acknowledged writes known to be written to the storage (a process restart keeps
    /// them): those acknowledged before the last whole view of the store was read.
    written: usize,
}

impl Harness {
    fn new(durability: Durability, variant: Variant) -> Result<Self, String> {
        let mut options = Options::default().durability(durability).segment_bytes(SEGMENT_BYTES_MIN);
        let coalescing = variant.coalesce_writes && durability == Durability::Buffered;
        if coalescing {
            options = options.coalesce_writes(PERIODIC_INTERVAL);
        }
        let sim = SimStorage::new();
        let store = Store::open_with_storage(DIR, options.clone(), Arc::new(sim.clone()))
            .map_err(|e| format!("open a new store: {e}"))?;
        store
            .set_stream_retention(TRIMMED_STREAM, Retention::MaxCount(TRIMMED_STREAM_KEEPS))
            .map_err(|e| format!("set_stream_retention: {e}"))?;
        let model = Model::new(durability == Durability::Sync);
        Ok(Harness {
            options,
            sim,
            store: Some(store),
            model,
            armed: None,
            last_append: None,
            stats: RunStats::default(),
            variant,
            coalescing,
            written: 0,
        })
    }

    /// `store.append` or `store.append_async` (as the variant says), to the end.
    fn append_one(
        &self,
        store: &Store,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> chronicle::Result<chronicle::AppendResult> {
        if self.variant.async_appends {
            poll_to_end(store.append_async(stream, expected, events))
        } else {
            store.append(stream, expected, events)
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            event_bytes: self.options.effective_event_bytes_max(),
            batch_bytes: self.options.effective_batch_bytes_max(),
        }
    }

    fn store(&self) -> Result<&Store, Interrupt> {
        self.store.as_ref().ok_or_else(|| Interrupt::Violation("harness: no open store".to_owned()))
    }

    /// An error the model did not predict: the armed fault's doing, or a violation.
    fn unexpected(&self, what: &str, error: Error) -> Interrupt {
        match error {
            Error::Io { .. } | Error::Poisoned { .. } | Error::Closed if self.armed.is_some() => Interrupt::Injected,
            other => Interrupt::Violation(format!("{what}: unexpected error: {other}")),
        }
    }

    fn outcome<T>(
        &self,
        what: &str,
        result: chronicle::Result<T>,
        ok: impl FnOnce(T) -> Outcome,
    ) -> Result<Outcome, Interrupt> {
        match result {
            Ok(value) => Ok(ok(value)),
            Err(Error::WrongExpectedVersion { stream, actual, .. }) => {
                Ok(Outcome::WrongExpectedVersion { stream, actual })
            }
            Err(Error::StreamDeleted { stream }) => Ok(Outcome::StreamDeleted(stream)),
            Err(Error::InvalidInput { .. }) => Ok(Outcome::InvalidInput),
            Err(error) => Err(self.unexpected(what, error)),
        }
    }

    /// Compares a write's answer with the model's and records the write.
    fn settle(
        &mut self,
        what: &str,
        got: Result<Outcome, Interrupt>,
        (want, write): (Outcome, Option<crate::model::Write>),
    ) -> Result<bool, Interrupt> {
        let got = match got {
            Ok(got) => got,
            Err(Interrupt::Injected) => {
                if let Some(write) = write {
                    self.model.in_doubt(write);
                }
                return Err(Interrupt::Injected);
            }
            Err(violation) => return Err(violation),
        };
        if got != want {
            return Err(Interrupt::Violation(format!("{what} answered {got:?}, the model says {want:?}")));
        }
        if let Some(write) = write {
            self.model.acknowledge(write);
        }
        Ok(matches!(got, Outcome::Appended(_) | Outcome::Deleted | Outcome::SnapshotSaved))
    }

    fn step(&mut self, index: usize, op: &Op) -> Result<(), String> {
        match self.run(index, op).and_then(|()| self.check_everything()) {
            Ok(()) => Ok(()),
            Err(Interrupt::Violation(violation)) => Err(violation),
            Err(Interrupt::Injected) => self.fault_fired(None),
        }
    }

    fn run(&mut self, index: usize, op: &Op) -> Step {
        match op {
            Op::Append(part) => self.append(index, std::slice::from_ref(part), false),
            Op::AppendMulti(parts) => self.append(index, parts, true),
            Op::RetryLast => match self.last_append.clone() {
                Some((request, multi)) => self.submit(request, multi),
                None => Ok(()),
            },
            Op::ReadStream { stream, from_version, backward } => self.read_stream(*stream, *from_version, *backward),
            Op::ReadAll { from_position, backward } => self.read_all(*from_position, *backward),
            Op::Delete { stream, expect } => {
                let name = stream_name(*stream);
                let expected = self.resolve(name, *expect);
                let got =
                    self.outcome("delete_stream", self.store()?.delete_stream(name, expected), |()| Outcome::Deleted);
                let want = self.model.predict_delete(name, expected);
                self.settle("delete_stream", got, want).map(drop)
            }
            Op::Snapshot { stream, back, past_end } => {
                let name = stream_name(*stream);
                let version = match self.model.current().last_version(name) {
                    Some(last) if *past_end => last + 1,
                    Some(last) => last.saturating_sub(*back),
                    None => *back,
                };
                let state = format!("state of {name} at {version}, op {index}").into_bytes();
                let got = self.outcome("save_snapshot", self.store()?.save_snapshot(name, version, &state), |()| {
                    Outcome::SnapshotSaved
                });
                let want = self.model.predict_snapshot(name, version, &state);
                if self.settle("save_snapshot", got, want)? {
                    // Outside Sync the log is synced before the snapshot is written.
                    self.model.all_durable();
                }
                Ok(())
            }
            Op::Compact => match self.store()?.compact() {
                Ok(_) => {
                    self.model.acknowledge(crate::model::Write::Compact);
                    // compact seals first, which syncs.
                    self.model.all_durable();
                    Ok(())
                }
                Err(error) => {
                    let interrupt = self.unexpected("compact", error);
                    if let Interrupt::Injected = interrupt {
                        self.model.in_doubt(crate::model::Write::Compact);
                    }
                    Err(interrupt)
                }
            },
            Op::Sync | Op::Seal => {
                let result = if *op == Op::Sync { self.store()?.sync() } else { self.store()?.seal() };
                result.map_err(|e| self.unexpected("sync/seal", e))?;
                self.model.all_durable();
                Ok(())
            }
            Op::Crash(seed) => {
                // A fault armed and not yet fired stays armed, now during recovery.
                let pending = self.armed.take();
                self.recover(Recovery::PowerLoss(*seed), pending, None).map_err(Interrupt::Violation)
            }
            Op::Reopen => {
                let store =
                    self.store.take().ok_or_else(|| Interrupt::Violation("harness: no open store".to_owned()))?;
                store.close().map_err(|e| self.unexpected("close", e))?;
                self.model.all_durable();
                let store = Store::open_with_storage(DIR, self.options.clone(), Arc::new(self.sim.clone()))
                    .map_err(|e| self.unexpected("open after close", e))?;
                self.store = Some(store);
                Ok(())
            }
            Op::FailAfter { calls, fault, recovery } => {
                self.arm(*calls, *fault, *recovery);
                Ok(())
            }
            Op::CloseRacing(part) => self.append_racing_close(index, part),
        }
    }

    /// [`Op::CloseRacing`].
    fn append_racing_close(&mut self, index: usize, part: &PartSpec) -> Step {
        let request = self.request(index, std::slice::from_ref(part));
        let store = self.store.take().ok_or_else(|| Interrupt::Violation("harness: no open store".to_owned()))?;
        let closer = {
            let store = store.clone();
            std::thread::spawn(move || store.close())
        };
        let result = match request.as_slice() {
            [(stream, expected, events)] => self.append_one(&store, stream, *expected, events.clone()),
            _ => return Err(Interrupt::Violation("harness: one part expected".to_owned())),
        };
        drop(store);
        self.stats.close_races += 1;
        let closed = closer.join().map_err(|_| Interrupt::Violation("close racing an append panicked".to_owned()))?;
        match result {
            // Refused by a closing writer: it never took the append, so nothing was written
            // (the model's state must still match after the reopen below).
            Err(Error::Closed) => self.stats.close_races_refused += 1,
            other => {
                let got = self.outcome("append racing close", other.map(|r| vec![r]), Outcome::Appended);
                let want = self.model.predict_append(&request, self.limits());
                self.settle("append racing close", got, want)?;
            }
        }
        closed.map_err(|e| self.unexpected("close racing an append", e))?;
        // A clean close syncs everything.
        self.model.all_durable();
        let store = Store::open_with_storage(DIR, self.options.clone(), Arc::new(self.sim.clone()))
            .map_err(|e| self.unexpected("open after close", e))?;
        self.store = Some(store);
        Ok(())
    }

    fn resolve(&self, stream: &str, expect: Expect) -> ExpectedVersion {
        match expect {
            Expect::Any => ExpectedVersion::Any,
            Expect::NoStream => ExpectedVersion::NoStream,
            Expect::StreamExists => ExpectedVersion::StreamExists,
            Expect::Current => {
                self.model.current().last_version(stream).map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact)
            }
            Expect::Exact(v) => ExpectedVersion::Exact(v),
        }
    }

    fn append(&mut self, index: usize, parts: &[PartSpec], multi: bool) -> Step {
        let request = self.request(index, parts);
        self.submit(request, multi)
    }

    /// The parts of an append, their expected versions resolved against the model.
    fn request(&self, index: usize, parts: &[PartSpec]) -> Vec<Part> {
        parts
            .iter()
            .enumerate()
            .map(|(part_index, part)| {
                let name = stream_name(part.stream);
                let events = part
                    .events
                    .iter()
                    .enumerate()
                    .map(|(i, spec)| new_event(index, part_index * 4 + i, spec))
                    .collect();
                (name.to_owned(), self.resolve(name, part.expect), events)
            })
            .collect()
    }

    fn submit(&mut self, request: Vec<Part>, multi: bool) -> Step {
        let store = self.store()?;
        let result = match request.as_slice() {
            [(stream, expected, events)] if !multi => {
                self.append_one(store, stream, *expected, events.clone()).map(|r| vec![r])
            }
            _ => {
                let parts = request.iter().map(|(s, e, events)| StreamAppend::new(s.as_str(), *e, events.clone()));
                if self.variant.async_appends {
                    poll_to_end(store.append_multi_async(parts))
                } else {
                    store.append_multi(parts)
                }
            }
        };
        let got = self.outcome("append", result, Outcome::Appended);
        let want = self.model.predict_append(&request, self.limits());
        let in_doubt_or_written = match &got {
            Err(Interrupt::Injected) => want.1.is_some(),
            _ => matches!(want.0, Outcome::Appended(_)),
        };
        if in_doubt_or_written {
            self.last_append = Some((request, multi));
        }
        self.settle("append", got, want).map(drop)
    }

    fn read_stream(&mut self, stream: usize, from_version: u64, backward: bool) -> Step {
        let name = stream_name(stream);
        let store = self.store()?;
        let read = if backward {
            store.read_stream_backward(name, Some(from_version))
        } else {
            store.read_stream(name, from_version)
        };
        if self.model.current().deleted.contains(name) {
            return match read {
                Err(Error::StreamDeleted { .. }) => Ok(()),
                Err(error) => Err(self.unexpected("read_stream of a deleted stream", error)),
                Ok(_) => Err(Interrupt::Violation(format!("read_stream of deleted {name} succeeded"))),
            };
        }
        let got = self.collect("read_stream", read)?;
        let stored = self.model.current().streams.get(name).into_iter().flatten().collect();
        self.model
            .check_read(&got, stored, |e| e.version, from_version, backward)
            .map_err(|e| Interrupt::Violation(format!("read_stream({name}, {from_version}, backward {backward}): {e}")))
    }

    fn read_all(&mut self, from_position: u64, backward: bool) -> Step {
        let store = self.store()?;
        let read = if backward { store.read_all_backward(Some(from_position)) } else { store.read_all(from_position) };
        let got = self.collect("read_all", read)?;
        self.model
            .check_read(&got, self.model.current().all_events(), |e| e.position, from_position, backward)
            .map_err(|e| Interrupt::Violation(format!("read_all({from_position}, backward {backward}): {e}")))
    }

    fn collect<I>(&self, what: &str, read: chronicle::Result<I>) -> Result<Vec<RecordedEvent>, Interrupt>
    where
        I: Iterator<Item = chronicle::Result<RecordedEvent>>,
    {
        let mut events = Vec::new();
        for item in read.map_err(|e| self.unexpected(what, e))? {
            events.push(item.map_err(|e| self.unexpected(what, e))?);
        }
        Ok(events)
    }

    /// Every read of every stream.
    fn view(&self) -> Result<View, Interrupt> {
        let store = self.store()?;
        let streams = store.streams().map_err(|e| self.unexpected("streams", e))?;
        let mut per_stream = Vec::with_capacity(STREAMS.len());
        for name in STREAMS {
            let version = match store.stream_version(name) {
                Ok(version) => version,
                Err(Error::StreamDeleted { .. }) => {
                    if !matches!(store.read_stream(name, 0), Err(Error::StreamDeleted { .. }))
                        || !matches!(store.load_snapshot(name), Err(Error::StreamDeleted { .. }))
                    {
                        return Err(Interrupt::Violation(format!("{name} is deleted to stream_version only")));
                    }
                    per_stream.push((name, StreamView::Deleted));
                    continue;
                }
                Err(error) => return Err(self.unexpected("stream_version", error)),
            };
            let events = self.collect("read_stream", store.read_stream(name, 0))?;
            let snapshot = store.load_snapshot(name).map_err(|e| self.unexpected("load_snapshot", e))?;
            let snapshot = snapshot.map(|s| (s.version, s.data.to_vec()));
            per_stream.push((name, StreamView::Live { version, events, snapshot }));
        }
        let all = self.collect("read_all", store.read_all(0))?;
        Ok(View { streams, per_stream, all })
    }

    fn check_everything(&mut self) -> Step {
        let view = self.view()?;
        self.model.check_current(&view).map_err(Interrupt::Violation)?;
        // Reading wrote every coalesced append.
        self.written = self.model.acknowledged_writes();
        Ok(())
    }

    fn arm(&mut self, calls: u64, fault: Fault, recovery: Recovery) {
        self.sim.clear_faults();
        let at = self.sim.calls() + calls.max(1);
        match fault {
            Fault::Stop => self.sim.stop_at(at),
            Fault::Io => self.sim.fail_from(at, InjectedError::Io),
            Fault::NoSpace => self.sim.fail_from(at, InjectedError::NoSpace),
        }
        self.armed = Some(Armed { at, fault, recovery });
    }

    /// An operation (or a recovery's reopen, with the writes it must keep) failed on the
    /// armed fault: recover as the fault says.
    fn fault_fired(&mut self, floor: Option<usize>) -> Result<(), String> {
        let armed = self.armed.take().ok_or("harness: an injected failure without an armed fault")?;
        self.stats.faults_fired += 1;
        self.recover(armed.recovery, None, floor).map_err(|e| format!("after the fault, {:?}: {e}", armed.recovery))
    }

    /// Loses power or restarts, reopens (with `pending` armed again, counting from the
    /// reopen), and checks what the store shows: at least `floor` writes, by default what
    /// the recovery must keep.
    fn recover(&mut self, recovery: Recovery, pending: Option<Armed>, floor: Option<usize>) -> Result<(), String> {
        let pending = pending.map(|armed| (armed.at.saturating_sub(self.sim.calls()), armed));
        self.armed = None;
        let floor = floor.unwrap_or(match recovery {
            Recovery::PowerLoss(_) => self.model.durable_writes(),
            // Coalesced appends not yet written die with the process.
            Recovery::Restart if self.coalescing => self.written.max(self.model.durable_writes()),
            Recovery::Restart => self.model.acknowledged_writes(),
        });
        // The image is taken before the old store closes: nothing it does afterwards counts.
        let image = match recovery {
            Recovery::PowerLoss(seed) => Some(self.sim.crash(seed)),
            Recovery::Restart => None,
        };
        drop(self.store.take());
        match image {
            Some(image) => self.sim = image,
            None => self.sim.clear_faults(),
        }
        if let Some((calls, armed)) = pending {
            self.arm(calls, armed.fault, armed.recovery);
        }
        let opened = Store::open_with_storage(DIR, self.options.clone(), Arc::new(self.sim.clone()))
            .map_err(|e| self.unexpected("reopen", e))
            .map(|store| self.store = Some(store))
            .and_then(|()| self.view());
        let view = match opened {
            Ok(view) => view,
            // The recovery itself failed on the fault: recover from that, keeping as much.
            Err(Interrupt::Injected) => return self.fault_fired(Some(floor)),
            Err(Interrupt::Violation(violation)) => return Err(violation),
        };
        let in_doubt = self.model.acknowledged_writes() < self.model.history_len();
        let acknowledged = self.model.acknowledged_writes();
        let kept = self.model.recover(&view, floor)?;
        // The model starts a new history at the recovered state, all of it written.
        self.written = self.model.acknowledged_writes();
        match recovery {
            Recovery::PowerLoss(_) => self.stats.power_losses += 1,
            Recovery::Restart => self.stats.restarts += 1,
        }
        self.stats.in_doubt_kept += u64::from(in_doubt && kept > acknowledged);
        self.stats.acknowledged_lost += acknowledged.saturating_sub(kept) as u64;
        Ok(())
    }
}

/// Polls `future` with a no-op waker until it is ready, yielding between polls.
fn poll_to_end<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::yield_now();
    }
}

fn stream_name(index: usize) -> &'static str {
    STREAMS[index % STREAMS.len()]
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
    if spec.with_links {
        event = event.with_correlation_id(op as u128 + 1).with_causation_id((index as u128) << 64);
    }
    event
}

// ---------------------------------------------------------------------------------------
// Input encoding
// ---------------------------------------------------------------------------------------

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&byte, rest)) => {
                self.bytes = rest;
                byte
            }
            None => 0,
        }
    }

    fn expect(&mut self) -> Expect {
        match self.byte() {
            0 => Expect::Any,
            1 => Expect::NoStream,
            2 => Expect::StreamExists,
            3 => Expect::Current,
            other => Expect::Exact(u64::from(other - 4)),
        }
    }

    fn part(&mut self) -> PartSpec {
        let stream = usize::from(self.byte()) % STREAMS.len();
        let expect = self.expect();
        let count = self.byte() % 4;
        let events = (0..count)
            .map(|_| {
                let size = self.byte();
                let flags = self.byte();
                EventSpec {
                    data_bytes: if size < 224 { usize::from(size) } else { usize::from(size - 223) * 256 },
                    with_id: flags & 1 != 0,
                    with_metadata: flags & 2 != 0,
                    with_links: flags & 4 != 0,
                }
            })
            .collect();
        PartSpec { stream, expect, events }
    }
}

/// Decodes a fuzz input (layout in the module documentation).
pub fn decode(data: &[u8]) -> (Durability, Vec<Op>) {
    let mut input = Reader { bytes: data };
    let durability = match input.byte() % 3 {
        0 => Durability::Sync,
        1 => Durability::Buffered,
        _ => Durability::Periodic(PERIODIC_INTERVAL),
    };
    let mut ops = Vec::new();
    while !input.bytes.is_empty() && ops.len() < OPS_MAX {
        let op = match input.byte() % 14 {
            0 => Op::Append(input.part()),
            1 => {
                let count = input.byte() % 4;
                Op::AppendMulti((0..count).map(|_| input.part()).collect())
            }
            2 => Op::RetryLast,
            3 => Op::ReadStream {
                stream: usize::from(input.byte()),
                from_version: u64::from(input.byte()),
                backward: input.byte() & 1 != 0,
            },
            4 => Op::ReadAll { from_position: u64::from(input.byte()), backward: input.byte() & 1 != 0 },
            5 => Op::Delete { stream: usize::from(input.byte()), expect: input.expect() },
            6 => {
                let stream = usize::from(input.byte());
                let bits = input.byte();
                Op::Snapshot { stream, back: u64::from(bits & 3), past_end: bits & 0x80 != 0 }
            }
            7 => Op::Compact,
            8 => Op::Sync,
            9 => Op::Seal,
            10 => Op::Crash(u64::from(input.byte())),
            11 => Op::Reopen,
            13 => Op::CloseRacing(input.part()),
            _ => {
                let calls = u64::from(input.byte()) + 1;
                let fault = match input.byte() % 3 {
                    0 => Fault::Stop,
                    1 => Fault::Io,
                    _ => Fault::NoSpace,
                };
                let bits = input.byte();
                let recovery =
                    if bits & 1 != 0 { Recovery::Restart } else { Recovery::PowerLoss(u64::from(bits >> 1)) };
                Op::FailAfter { calls, fault, recovery }
            }
        };
        ops.push(op);
    }
    (durability, ops)
}

/// Encodes operations as a fuzz input (for seed corpora): [`decode`] gives them back, as far
/// as they fit the layout (versions below 252, sizes below 224 or multiples of 256, seeds
/// below 128 for a fault's power loss).
pub fn encode(durability: Durability, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![match durability {
        Durability::Sync => 0,
        Durability::Buffered => 1,
        Durability::Periodic(_) => 2,
    }];
    let expect = |expect: Expect| match expect {
        Expect::Any => 0,
        Expect::NoStream => 1,
        Expect::StreamExists => 2,
        Expect::Current => 3,
        Expect::Exact(v) => (v + 4).min(255) as u8,
    };
    let part = |out: &mut Vec<u8>, part: &PartSpec| {
        out.extend([part.stream as u8, expect(part.expect), part.events.len() as u8]);
        for event in &part.events {
            let size =
                if event.data_bytes < 224 { event.data_bytes as u8 } else { (event.data_bytes / 256 + 223) as u8 };
            let flags = u8::from(event.with_id) | u8::from(event.with_metadata) << 1 | u8::from(event.with_links) << 2;
            out.extend([size, flags]);
        }
    };
    for op in ops {
        match op {
            Op::Append(p) => {
                out.push(0);
                part(&mut out, p);
            }
            Op::AppendMulti(parts) => {
                out.extend([1, parts.len() as u8]);
                for p in parts {
                    part(&mut out, p);
                }
            }
            Op::RetryLast => out.push(2),
            Op::ReadStream { stream, from_version, backward } => {
                out.extend([3, *stream as u8, *from_version as u8, u8::from(*backward)]);
            }
            Op::ReadAll { from_position, backward } => out.extend([4, *from_position as u8, u8::from(*backward)]),
            Op::Delete { stream, expect: e } => out.extend([5, *stream as u8, expect(*e)]),
            Op::Snapshot { stream, back, past_end } => {
                out.extend([6, *stream as u8, (*back as u8 & 3) | u8::from(*past_end) << 7]);
            }
            Op::Compact => out.push(7),
            Op::Sync => out.push(8),
            Op::Seal => out.push(9),
            Op::Crash(seed) => out.extend([10, *seed as u8]),
            Op::Reopen => out.push(11),
            Op::FailAfter { calls, fault, recovery } => {
                let fault = match fault {
                    Fault::Stop => 0,
                    Fault::Io => 1,
                    Fault::NoSpace => 2,
                };
                let recovery = match recovery {
                    Recovery::Restart => 1,
                    Recovery::PowerLoss(seed) => (*seed as u8) << 1,
                };
                out.extend([12, calls.saturating_sub(1).min(255) as u8, fault, recovery]);
            }
            Op::CloseRacing(p) => {
                out.push(13);
                part(&mut out, p);
            }
        }
    }
    out
}
