//! The public facade: `Store`, a cheap cloneable handle to one open store directory. This
//! file opens, closes and appends; `read.rs`, `follow.rs` and `maintain.rs` hold the rest.

mod follow;
mod maintain;
mod read;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, bounded};

use crate::compaction::{self, CompactionReport, CompactorRequest};
use crate::error::{Error, Result};
use crate::event::{AppendResult, EventView, ExpectedVersion, NewEvent, StreamAppend, StreamInfo};
use crate::layout::LOCK_FILE;
use crate::ops::{BackupReport, VerifyReport};
use crate::options::{BATCH_STREAMS_MAX, Durability, Options};
use crate::read::{AllIter, Direction, Filter, FilteredIter, StreamIter};
use crate::readonly::Follower;
use crate::recovery::{Recovered, recover};
use crate::retention::{Retention, RetentionTable};
use crate::segment::cache::MapCache;
use crate::shared::Shared;
use crate::snapshot::{Snapshot, Snapshots};
use crate::stats::{Health, SegmentInfo, Stats};
use crate::storage::read_only::ReadOnlyStorage;
use crate::storage::{FileSystem, LockError, LockGuard, Storage};
use crate::subscription::{ParkedEvent, Projection, ProjectionRunner, Subscription, consumer, park};
use crate::sync;
use crate::validate::{self, WritePart};
use crate::writer::{self, AppendCondition, AppendFuture, Request, Writer, WriterFront};

/// How long an append without fsync polls for its answer before sleeping.
const CALLER_SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// The version of the first event of `stream` still stored (retention may have discarded
/// earlier ones).
pub(crate) fn first_stored_version(shared: &Arc<Shared>, stream: &str) -> Option<u64> {
    StreamIter::new(Arc::clone(shared), stream, 0, None, Direction::Forward).ok()?.next()?.ok().map(|e| e.version)
}

/// The result of an append of one part: the writer answers n parts with n results.
fn only_result(mut results: Vec<AppendResult>) -> Result<AppendResult> {
    debug_assert_eq!(results.len(), 1, "one part, one result");
    results.pop().ok_or_else(|| Error::internal("the writer answered an append of one stream with no result"))
}

/// Depth of the queue in front of the compaction thread (nudges beyond it are dropped).
const COMPACTOR_QUEUE_DEPTH_MAX: usize = 16;

/// An open event store: one directory, one writer thread, any number of readers.
///
/// `Store` is `Clone + Send + Sync`; clones share the same store. The store shuts down when
/// the last clone drops (errors are logged) or at [`Store::close`] (errors are returned);
/// once `close` has begun every method of every clone returns [`Error::Closed`].
///
/// ```
/// use chronicle::{ExpectedVersion, NewEvent, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let written = store.append("order-42", ExpectedVersion::NoStream, [NewEvent::new("OrderPlaced", r#"{"total":42}"#)])?;
/// assert_eq!(written.first_version, 0);
/// for event in store.read_stream("order-42", 0)? {
///     let event = event?;
///     println!("{} v{}: {}", event.stream_id, event.version, event.event_type);
/// }
/// store.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
struct StoreInner {
    shared: Arc<Shared>,
    /// `None` for a read-only store.
    writer: Option<Arc<WriterFront>>,
    /// `Some` for a read-only store: how it follows the writer's files.
    follower: Option<Arc<Follower>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// Dropped at shutdown to stop the compaction thread.
    compactor: Mutex<Option<(Sender<CompactorRequest>, JoinHandle<()>)>>,
    /// Held (shared) by calls that write files outside the writer thread (snapshots, the
    /// retention table) from their closed check to their last write; shutdown takes it
    /// exclusively once after marking the store closing, so no such write happens after it.
    direct_writes: RwLock<()>,
    /// Declared last: released only after the writer thread has stopped. A read-only store
    /// takes no lock.
    _lock: Option<LockGuardDebug>,
}

struct LockGuardDebug(#[allow(dead_code)] LockGuard);

impl std::fmt::Debug for LockGuardDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard")
    }
}

impl StoreInner {
    fn shutdown(&self) -> Result<()> {
        // Stop compaction first: it may be waiting for nothing but must not outlive the lock;
        // a running one stops at its next chunk.
        self.shared.mark_closing();
        // Wait for snapshot and retention writes that passed their closed check; later ones
        // see the flag and write nothing.
        drop(sync::write(&self.direct_writes));
        if let Some((sender, thread)) = sync::lock(&self.compactor).take() {
            drop(sender);
            if thread.join().is_err() {
                tracing::error!("compaction thread panicked");
            }
        }
        let Some(thread) = sync::lock(&self.writer_thread).take() else {
            return Ok(());
        };
        let Some(writer) = &self.writer else { return Ok(()) };
        let result = writer.call(&self.shared, |reply| Request::Shutdown { reply });
        if thread.join().is_err() {
            tracing::error!("writer thread panicked");
        }
        result
    }
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::error!(%error, "closing the store failed");
        }
    }
}

impl Store {
    /// Opens (creating if missing) the store in `dir` with default [`Options`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (nothing created) if `dir` is empty, or if it or one of its
    /// ancestors exists and is not a directory (the message names the path);
    /// [`Error::Locked`] if another `Store` holds the directory; [`Error::Corruption`] if a
    /// segment is damaged anywhere but its torn tail; [`Error::Io`] on file-system failure.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path().join("events"))?;
    /// # let _ = store;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, Options::default())
    }

    /// Opens (creating if missing) the store in `dir` with `options`.
    ///
    /// # Errors
    /// As [`Store::open`], plus [`Error::InvalidInput`] for inconsistent options.
    ///
    /// ```
    /// use chronicle::{Durability, Options, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open_with(dir.path(), Options::default().durability(Durability::Buffered))?;
    /// # let _ = store;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        Store::open_with_storage(dir, options, Arc::new(FileSystem))
    }

    /// Opens the store in `dir` through `storage` instead of the operating system's file
    /// system: for fault-injection and crash tests (any implementation of [`Storage`]).
    ///
    /// # Errors
    /// As [`Store::open_with`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use chronicle::{Options, Store, storage::FileSystem};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open_with_storage(dir.path(), Options::default(), Arc::new(FileSystem))?;
    /// # let _ = store;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_with_storage(dir: impl AsRef<Path>, options: Options, storage: Arc<dyn Storage>) -> Result<Store> {
        options.validate()?;
        let dir: PathBuf = dir.as_ref().to_path_buf();
        let _span = tracing::info_span!("open", dir = %dir.display()).entered();
        if dir.as_os_str().is_empty() {
            // `create_dir_all("")` succeeds, and the LOCK file would land in the working
            // directory.
            return Err(Error::invalid("store directory path is empty"));
        }
        storage.create_dir_all(&dir).map_err(|e| match e.kind() {
            // The path, or one of its ancestors, exists as something other than a directory.
            std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => {
                Error::invalid(format!("store path {} is not a directory ({e})", dir.display()))
            }
            _ => Error::io("create directory", &dir, e),
        })?;
        let lock = match storage.lock(&dir.join(LOCK_FILE)) {
            Ok(lock) => lock,
            Err(LockError::Held) => return Err(Error::Locked { dir }),
            Err(LockError::Io(e)) => return Err(Error::io("lock", dir.join(LOCK_FILE), e)),
        };
        let cache = MapCache::new(Arc::clone(&storage), options.mapped_segments_max);
        let recovered = recover(&cache, &dir, &options)?;
        tracing::info!(
            segments = recovered.segments.len(),
            streams = recovered.streams.len(),
            end_position = recovered.next_position,
            "recovered"
        );
        let snapshots = Snapshots::open(Arc::clone(&storage), &dir)?;
        let retention = RetentionTable::open(Arc::clone(&storage), &dir)?;
        let active = recovered
            .segments
            .last()
            .cloned()
            .ok_or_else(|| Error::corruption(&dir, 0, "no segment after recovery"))?;
        let shared = Arc::new(Shared::new(dir, cache, options, recovered, snapshots, retention));
        let active_file = active
            .append_file()
            .ok_or_else(|| Error::corruption(&active.path, 0, "the last segment was opened without its file"))?;
        let (writer, writer_thread) = writer::spawn(Writer::new(Arc::clone(&shared), active, active_file))?;
        let (compactor, compactor_requests) = bounded(COMPACTOR_QUEUE_DEPTH_MAX);
        let inner = StoreInner {
            shared: Arc::clone(&shared),
            writer: Some(writer),
            follower: None,
            writer_thread: Mutex::new(Some(writer_thread)),
            compactor: Mutex::new(None),
            direct_writes: RwLock::new(()),
            _lock: Some(LockGuardDebug(lock)),
        };
        // From here on, dropping `inner` shuts the writer down cleanly.
        let compactor_thread = compaction::spawn(shared, compactor_requests)?;
        *sync::lock(&inner.compactor) = Some((compactor, compactor_thread));
        Ok(Store { inner: Arc::new(inner) })
    }

    /// Opens the store in `dir` for reading only, whether or not another process (or this
    /// one) holds it open for writing.
    ///
    /// A read-only store never writes, truncates or removes anything in `dir`: it takes no
    /// lock and creates no `LOCK` file, repairs nothing (a torn tail is ignored, not cut; a
    /// damaged index file is rebuilt in memory only) and refuses every write with
    /// [`Error::ReadOnly`]. It sees every event committed before it opened, and follows the
    /// writer: each read call first reads what was committed since the last refresh when
    /// that was [`READ_ONLY_REFRESH_INTERVAL`](crate::READ_ONLY_REFRESH_INTERVAL) or longer
    /// ago ([`Store::refresh`] at once), publishing only whole commit groups whose records
    /// verify. It survives the writer's rolls, compactions (segments it mapped stay
    /// readable after their files are removed), crashes and restarts. `segment-format.md`
    /// §11 says what it relies on.
    ///
    /// Every sealed segment it lists stays mapped (two maps, no descriptor each) until it
    /// leaves the view: a reader in another process cannot delay the writer's removals.
    ///
    /// # Errors
    /// [`Error::Io`] if `dir` is missing or unreadable; [`Error::Corruption`] if a sealed
    /// segment is damaged where its index cannot be rebuilt, or segments overlap or leave a
    /// hole in the positions (after retrying a few listings, in case the writer was
    /// mid-change).
    ///
    /// ```
    /// use chronicle::{Error, ExpectedVersion, NewEvent, Store};
    /// let dir = tempfile::tempdir()?;
    /// let writer = Store::open(dir.path())?;
    /// writer.append("s", ExpectedVersion::Any, [NewEvent::new("T", "1")])?;
    /// let reader = Store::open_read_only(dir.path())?;
    /// assert_eq!(reader.read_all(0)?.count(), 1);
    /// writer.append("s", ExpectedVersion::Any, [NewEvent::new("T", "2")])?;
    /// reader.refresh()?;
    /// assert_eq!(reader.stream_version("s")?, Some(1));
    /// assert!(matches!(reader.append("s", ExpectedVersion::Any, [NewEvent::new("T", "")]), Err(Error::ReadOnly { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Store> {
        let dir: PathBuf = dir.as_ref().to_path_buf();
        if dir.as_os_str().is_empty() {
            return Err(Error::invalid("store directory path is empty"));
        }
        let options = Options::default();
        let storage: Arc<dyn Storage> = Arc::new(ReadOnlyStorage::new(Arc::new(FileSystem)));
        match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(Error::invalid(format!("store path {} is not a directory", dir.display()))),
            Err(error) => return Err(Error::io("open store directory", &dir, error)),
        }
        let cache = MapCache::new_read_only(Arc::clone(&storage), options.mapped_segments_max);
        let snapshots = Snapshots::open(Arc::clone(&storage), &dir)?;
        let retention = RetentionTable::open(Arc::clone(&storage), &dir)?;
        let empty =
            Recovered { segments: Vec::new(), streams: Default::default(), next_position: 0, next_segment_id: 0 };
        let shared = Arc::new(Shared::new(dir, cache, options, empty, snapshots, retention));
        let follower = Arc::new(Follower::new());
        follower.refresh(&shared)?;
        let inner = StoreInner {
            shared,
            writer: None,
            follower: Some(follower),
            writer_thread: Mutex::new(None),
            compactor: Mutex::new(None),
            direct_writes: RwLock::new(()),
            _lock: None,
        };
        Ok(Store { inner: Arc::new(inner) })
    }

    /// Whether this store was opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.writer.is_none()
    }

    /// A read-only store: reads what the writer committed since the last refresh (new bytes
    /// of the active segment, rolls, compaction swaps) now, rather than at the next read
    /// call after [`READ_ONLY_REFRESH_INTERVAL`](crate::READ_ONLY_REFRESH_INTERVAL). A
    /// writable store is always current: `Ok(())`.
    ///
    /// # Errors
    /// As [`Store::open_read_only`]; [`Error::Closed`].
    pub fn refresh(&self) -> Result<()> {
        self.ensure_open()?;
        match &self.inner.follower {
            Some(follower) => follower.refresh(self.shared()),
            None => Ok(()),
        }
    }

    /// Before a read: a read-only store refreshes when due.
    fn follow(&self) -> Result<()> {
        self.ensure_open()?;
        match &self.inner.follower {
            Some(follower) => follower.refresh_if_due(self.shared()),
            None => Ok(()),
        }
    }

    /// The writer, or [`Error::ReadOnly`] naming `operation`.
    fn writer(&self, operation: &'static str) -> Result<&Arc<WriterFront>> {
        self.inner.writer.as_ref().ok_or_else(|| Error::ReadOnly { dir: self.shared().dir.clone(), operation })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// [`Error::Closed`] once [`Store::close`] (on any clone) has begun.
    /// Also writes the appends `Options::coalesce_writes` has acknowledged but not yet
    /// written: every call but an append sees every acknowledged append (an atomic load when
    /// there are none).
    fn ensure_open(&self) -> Result<()> {
        self.ensure_open_for_append()?;
        match &self.inner.writer {
            Some(writer) => writer.write_coalesced(),
            None => Ok(()),
        }
    }

    /// [`Error::Closed`] once [`Store::close`] has begun; leaves coalesced appends waiting
    /// (an append joins them).
    fn ensure_open_for_append(&self) -> Result<()> {
        if self.shared().closing() { Err(Error::Closed) } else { Ok(()) }
    }

    fn submit(&self, parts: Vec<WritePart>) -> Result<Vec<AppendResult>> {
        self.submit_if(parts, None)
    }

    fn submit_if(&self, parts: Vec<WritePart>, condition: Option<AppendCondition>) -> Result<Vec<AppendResult>> {
        let writer = self.writer("append")?;
        validate::batch(&self.shared().options, &parts)?;
        // Without an fsync to wait for, the answer comes within microseconds: poll for it
        // rather than sleep. With Sync the wait is a whole fsync, so sleep at once.
        let spin = (self.shared().options.durability != Durability::Sync).then_some(CALLER_SPIN);
        writer::append(self.shared(), writer, parts, condition, spin)
    }

    /// Submits validated parts without waiting: the future of [`Store::append_async`] and
    /// its siblings.
    fn submit_async<T>(
        &self,
        parts: Result<Vec<WritePart>>,
        condition: Option<AppendCondition>,
        finish: fn(Vec<AppendResult>) -> Result<T>,
    ) -> AppendFuture<T> {
        let submitted = parts.and_then(|parts| {
            let writer = self.writer("append")?;
            validate::batch(&self.shared().options, &parts)?;
            Ok(writer::submit(writer, parts, condition, writer::AnswerSlot::for_task()))
        });
        match submitted {
            Ok(submitted) => AppendFuture::submitted(submitted, self.shared(), finish),
            Err(error) => AppendFuture::answered(Err(error), finish),
        }
    }

    /// The one part of [`Store::append`], validated.
    fn append_part(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<Vec<WritePart>> {
        self.ensure_open_for_append()?;
        self.writer("append")?;
        Ok(vec![validate::events_part(&self.shared().options, stream, expected, events)?])
    }

    /// The parts of [`Store::append_multi`] (`operation`) and [`Store::append_if`], validated.
    fn multi_parts(
        &self,
        operation: &'static str,
        parts: impl IntoIterator<Item = StreamAppend>,
    ) -> Result<Vec<WritePart>> {
        self.ensure_open_for_append()?;
        self.writer(operation)?;
        let options = &self.shared().options;
        let mut validated = Vec::new();
        for part in parts {
            if validated.len() >= BATCH_STREAMS_MAX {
                return Err(Error::invalid(format!("{operation} has more than {BATCH_STREAMS_MAX} streams")));
            }
            validated.push(validate::events_part(options, &part.stream, part.expected, part.events)?);
        }
        if validated.is_empty() {
            return Err(Error::invalid(format!("{operation} has no streams")));
        }
        Ok(validated)
    }

    /// Appends `events` to `stream` as one atomic batch, if the stream's version satisfies
    /// `expected`. Returns the versions and positions assigned.
    ///
    /// # Idempotent retries
    /// When **every** event carries an id ([`NewEvent::with_id`]), retrying an append that
    /// already succeeded returns the original [`AppendResult`] and writes nothing, under
    /// every [`ExpectedVersion`]. With `n` events, the writer thread recognises a retry (in
    /// commit order, so a retry racing its original writes once):
    /// - under [`NoStream`](ExpectedVersion::NoStream) and [`Exact(v)`](ExpectedVersion::Exact),
    ///   when the version check fails and versions `v + 1 ..= v + n` (from 0 for `NoStream`)
    ///   hold these ids in this order — even if other events were appended after them;
    /// - under [`Any`](ExpectedVersion::Any) and
    ///   [`StreamExists`](ExpectedVersion::StreamExists), when the stream's `n` most recent
    ///   events hold these ids in this order.
    ///
    /// Not detected: under `Any`/`StreamExists`, a retry that comes after another append to
    /// the same stream (its events are then no longer the most recent: they are written
    /// again — use `NoStream`/`Exact` where that matters); ids that are not among the `n`
    /// most recent events; ids used in another stream (ids are compared per stream, and no
    /// index of ids is kept); appends where some event has no id. An append under
    /// `Any`/`StreamExists` of which **some** ids are among the stream's `n` most recent
    /// events and others are not (or are in another order) is neither a retry nor a new
    /// append: it fails with [`Error::WrongExpectedVersion`] and writes nothing, because
    /// writing it would store an id twice. Appends without ids are never looked up, so they
    /// pay nothing for this. If the events to compare cannot be read (I/O error, damaged
    /// record), no retry is recognised (a warning is logged). For [`Store::append_multi`], the call is a retry only if every
    /// part is; if some parts are retries and others not, it fails with
    /// `WrongExpectedVersion` naming the first part that is a retry.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let event = || NewEvent::new("Deposited", "5").with_id(0x7);
    /// let first = store.append("account-1", ExpectedVersion::Any, [event()])?;
    /// let retry = store.append("account-1", ExpectedVersion::Any, [event()])?; // e.g. after a timeout
    /// assert_eq!(retry, first);
    /// assert_eq!(store.stream_version("account-1")?, Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::WrongExpectedVersion`] (nothing written; also for a partial retry, above),
    /// [`Error::StreamDeleted`],
    /// [`Error::InvalidInput`] (empty or oversized stream id, no events, empty event type,
    /// event or batch over the limits), [`Error::Poisoned`] after an earlier write or fsync
    /// failure, [`Error::Io`] if this batch's write or fsync failed, [`Error::Closed`].
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let result = store.append("account-1", ExpectedVersion::NoStream, [NewEvent::new("Opened", "{}")])?;
    /// assert_eq!(result.last_version, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> Result<AppendResult> {
        let parts = self.append_part(stream, expected, events.into_iter().collect())?;
        self.submit(parts).and_then(only_result)
    }

    /// Appends to several streams atomically: either every part is written (in one commit
    /// group, positions contiguous in the given order) or none is. Each part has its own
    /// expected version. Returns one result per part, in order.
    ///
    /// Retries are recognised as for [`Store::append`], and only for the call as a whole.
    ///
    /// # Errors
    /// As [`Store::append`]; the first part whose expected version fails is reported. A
    /// stream may appear only once per call.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store, StreamAppend};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let results = store.append_multi([
    ///     StreamAppend::new("account-1", ExpectedVersion::Any, [NewEvent::new("Debited", "5")]),
    ///     StreamAppend::new("account-2", ExpectedVersion::Any, [NewEvent::new("Credited", "5")]),
    /// ])?;
    /// assert_eq!(results[1].first_position, results[0].last_position + 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append_multi(&self, parts: impl IntoIterator<Item = StreamAppend>) -> Result<Vec<AppendResult>> {
        let parts = self.multi_parts("append_multi", parts)?;
        self.submit(parts)
    }

    /// Appends to one or more streams atomically (as [`Store::append_multi`]) only if no
    /// event matching `condition.filter` was committed after `condition.after_position`
    /// (a "dynamic consistency boundary": decide on what a filtered read showed, then
    /// append only if nothing relevant happened since). The condition is evaluated on the
    /// writer inside its critical section, against committed events and the earlier
    /// batches of the same commit group, so of two racing appends whose conditions each
    /// exclude the other's events, at most one succeeds. Each part's expected version is
    /// checked as well.
    ///
    /// # Errors
    /// [`Error::ConditionFailed`] naming the first conflicting event's position (nothing
    /// written); [`Error::InvalidInput`] for a filter built from bad input; otherwise as
    /// [`Store::append_multi`].
    ///
    /// ```
    /// use chronicle::{AppendCondition, Error, ExpectedVersion, Filter, NewEvent, Store, StreamAppend};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let seat = Filter::category("seat").with_event_types(["SeatBooked"]);
    /// // Nothing booked yet (no matching event at all): book it.
    /// let book = |who: &str| [StreamAppend::new("seat-12A", ExpectedVersion::Any, [NewEvent::new("SeatBooked", who.to_owned())])];
    /// store.append_if(AppendCondition::new(seat.clone(), None), book("ann"))?;
    /// // A second decision taken on the same (now stale) read fails.
    /// let late = store.append_if(AppendCondition::new(seat, None), book("bob"));
    /// assert!(matches!(late, Err(Error::ConditionFailed { position: 0, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append_if(
        &self,
        condition: AppendCondition,
        parts: impl IntoIterator<Item = StreamAppend>,
    ) -> Result<Vec<AppendResult>> {
        self.ensure_open_for_append()?;
        condition.filter.validate()?;
        let parts = self.multi_parts("append_if", parts)?;
        self.submit_if(parts, Some(condition))
    }

    /// [`Store::append`] without blocking: submits the append now and returns a future of
    /// its result, completed by the writer thread (see [`AppendFuture`]: no thread waits,
    /// no runtime needed, dropping the future does not cancel the append). Expected
    /// versions, idempotent retries and errors are exactly those of [`Store::append`]; an
    /// input error or a closed store resolves the future at once.
    ///
    /// Inside an async runtime this does not block the executor thread for the fsync. It
    /// blocks only if [`WRITER_QUEUE_DEPTH_MAX`](crate::WRITER_QUEUE_DEPTH_MAX) requests are
    /// queued already (backpressure, until the writer takes one), and under a durability
    /// other than `Sync` an append that finds the writer free commits on the calling thread
    /// (microseconds, no fsync) and the future is ready at once.
    ///
    /// # Errors
    /// The future resolves to the errors of [`Store::append`].
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let written = store.append_async("order-7", ExpectedVersion::NoStream, [NewEvent::new("Placed", "{}")]).await?;
    /// assert_eq!(written.last_version, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn append_async(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> AppendFuture<AppendResult> {
        let parts = self.append_part(stream, expected, events.into_iter().collect());
        self.submit_async(parts, None, only_result)
    }

    /// [`Store::append_multi`] without blocking, as [`Store::append_async`] is to
    /// [`Store::append`].
    ///
    /// # Errors
    /// The future resolves to the errors of [`Store::append_multi`].
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store, StreamAppend};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let results = store
    ///     .append_multi_async([
    ///         StreamAppend::new("account-1", ExpectedVersion::Any, [NewEvent::new("Debited", "5")]),
    ///         StreamAppend::new("account-2", ExpectedVersion::Any, [NewEvent::new("Credited", "5")]),
    ///     ])
    ///     .await?;
    /// assert_eq!(results.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn append_multi_async(&self, parts: impl IntoIterator<Item = StreamAppend>) -> AppendFuture<Vec<AppendResult>> {
        let parts = self.multi_parts("append_multi", parts);
        self.submit_async(parts, None, Ok)
    }

    /// [`Store::append_if`] without blocking, as [`Store::append_async`] is to
    /// [`Store::append`]. The condition is evaluated by the writer in commit order, as for
    /// the blocking call.
    ///
    /// # Errors
    /// The future resolves to the errors of [`Store::append_if`].
    ///
    /// ```
    /// use chronicle::{AppendCondition, ExpectedVersion, Filter, NewEvent, Store, StreamAppend};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let seat = Filter::category("seat").with_event_types(["SeatBooked"]);
    /// let book = [StreamAppend::new("seat-1A", ExpectedVersion::Any, [NewEvent::new("SeatBooked", "ann")])];
    /// store.append_if_async(AppendCondition::new(seat, None), book).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn append_if_async(
        &self,
        condition: AppendCondition,
        parts: impl IntoIterator<Item = StreamAppend>,
    ) -> AppendFuture<Vec<AppendResult>> {
        let parts = self
            .ensure_open_for_append()
            .and_then(|()| condition.filter.validate())
            .and_then(|()| self.multi_parts("append_if", parts));
        self.submit_async(parts, Some(condition), Ok)
    }

    /// Whether the store serves: [`Health::Ok`], [`Health::Poisoned`] with the failure that
    /// poisoned it (reopen to recover), or [`Health::Closed`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// assert_eq!(store.health(), chronicle::Health::Ok);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn health(&self) -> Health {
        if self.shared().closing() {
            return Health::Closed;
        }
        match self.shared().metrics.poisoned() {
            Some(cause) => Health::Poisoned { cause: cause.to_string() },
            None => Health::Ok,
        }
    }

    /// The store's directory.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// assert_eq!(store.path(), dir.path());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.shared().dir
    }

    /// Shuts the store down: stops a running compaction at its next chunk (its `compact`
    /// call returns [`Error::Closed`]), finishes queued appends, syncs, writes the index
    /// checkpoint and the stream-table checkpoint so the next open reads no segment contents
    /// and one small file of streams, stops the writer and releases the lock once no clone
    /// remains.
    ///
    /// From the moment `close` begins, **every** method on every clone returns
    /// [`Error::Closed`] — reads ([`Store::read_stream`], [`Store::read_all`],
    /// [`Store::read_all_with`], [`Store::stream_version`], [`Store::stream_info`],
    /// [`Store::streams`], [`Store::load_snapshot`]) as well as writes — and nothing is
    /// written any more outside the shutdown itself: a [`Store::save_snapshot`] or
    /// [`Store::set_stream_retention`] already past its check finishes before shutdown goes
    /// on, a later one writes nothing. Calls racing `close` return either their answer or
    /// `Closed`, never hang. Iterators created before the close ([`StreamIter`],
    /// [`AllIter`]) keep the segments they read alive and run to their end. Calling
    /// `close` on another clone afterwards returns `Ok(())` (only the first close reports the
    /// shutdown's outcome); [`Store::path`] keeps answering. Dropping the last clone closes
    /// the same way, logging errors instead of returning them.
    ///
    /// # Errors
    /// The final fsync's error, or [`Error::Poisoned`] if the store had failed earlier.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// store.close()?;
    /// let again = chronicle::Store::open(dir.path())?;
    /// # let _ = again;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(self) -> Result<()> {
        self.inner.shutdown()
    }
}
