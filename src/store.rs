//! The public facade: `Store`, a cheap cloneable handle to one open store directory.

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
use crate::writer::{self, AppendCondition, Request, Writer, WriterFront};

/// How long an append without fsync polls for its answer before sleeping.
const CALLER_SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// The version of the first event of `stream` still stored (retention may have discarded
/// earlier ones).
pub(crate) fn first_stored_version(shared: &Arc<Shared>, stream: &str) -> Option<u64> {
    StreamIter::new(Arc::clone(shared), stream, 0, None, Direction::Forward).ok()?.next()?.ok().map(|e| e.version)
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
    fn ensure_open(&self) -> Result<()> {
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
        self.ensure_open()?;
        self.writer("append")?;
        let part = validate::events_part(&self.shared().options, stream, expected, events.into_iter().collect())?;
        let mut results = self.submit(vec![part])?;
        // The writer answers an append of n parts with n results.
        debug_assert_eq!(results.len(), 1, "one part, one result");
        results.pop().ok_or_else(|| Error::internal("the writer answered an append of one stream with no result"))
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
        self.ensure_open()?;
        self.writer("append_multi")?;
        let options = &self.shared().options;
        let mut validated = Vec::new();
        for part in parts {
            if validated.len() >= BATCH_STREAMS_MAX {
                return Err(Error::invalid(format!("append_multi has more than {BATCH_STREAMS_MAX} streams")));
            }
            validated.push(validate::events_part(options, &part.stream, part.expected, part.events)?);
        }
        if validated.is_empty() {
            return Err(Error::invalid("append_multi has no streams"));
        }
        self.submit(validated)
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
        self.ensure_open()?;
        condition.filter.validate()?;
        let options = &self.shared().options;
        let mut validated = Vec::new();
        for part in parts {
            if validated.len() >= BATCH_STREAMS_MAX {
                return Err(Error::invalid(format!("append_if has more than {BATCH_STREAMS_MAX} streams")));
            }
            validated.push(validate::events_part(options, &part.stream, part.expected, part.events)?);
        }
        if validated.is_empty() {
            return Err(Error::invalid("append_if has no streams"));
        }
        self.submit_if(validated, Some(condition))
    }

    /// Reads `stream` from `from_version` on, in version order. A missing stream reads as
    /// empty; versions discarded by retention are skipped.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`] for an invalid stream id. Items
    /// are [`Error::Corruption`] if a record fails its checksum.
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("s", ExpectedVersion::Any, (0..3).map(|i| NewEvent::new("T", vec![i])))?;
    /// let versions: Vec<u64> = store.read_stream("s", 1)?.map(|e| e.unwrap().version).collect();
    /// assert_eq!(versions, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_stream(&self, stream: &str, from_version: u64) -> Result<StreamIter> {
        self.follow()?;
        StreamIter::new(Arc::clone(self.shared()), stream, from_version, None, Direction::Forward)
    }

    /// Reads `stream` backward from `from_version` (`None`: from its last event) down to
    /// its first.
    ///
    /// # Errors
    /// As [`Store::read_stream`].
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("s", ExpectedVersion::Any, (0..3).map(|i| NewEvent::new("T", vec![i])))?;
    /// let versions: Vec<u64> = store.read_stream_backward("s", None)?.map(|e| e.unwrap().version).collect();
    /// assert_eq!(versions, [2, 1, 0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_stream_backward(&self, stream: &str, from_version: Option<u64>) -> Result<StreamIter> {
        self.follow()?;
        StreamIter::new(Arc::clone(self.shared()), stream, from_version.unwrap_or(u64::MAX), None, Direction::Backward)
    }

    /// Reads every event in global position order from `from_position` on.
    ///
    /// # Errors
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone; items are
    /// [`Error::Corruption`] if a record fails its checksum.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("a", ExpectedVersion::Any, [NewEvent::new("T", "")])?;
    /// assert_eq!(store.read_all(0)?.count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all(&self, from_position: u64) -> Result<AllIter> {
        self.follow()?;
        Ok(AllIter::new(self.shared(), Some(from_position), Direction::Forward))
    }

    /// Calls `visit` with every event from `from_position` on, in position order, each as a
    /// borrowed [`EventView`] straight from the memory map: checksums are verified as with
    /// [`Store::read_all`], but nothing is copied or allocated per event, which makes this
    /// the fastest way to rebuild a read model from the whole log. `visit` returns
    /// [`ControlFlow::Break`] to stop early. Sees the log as it was when called.
    ///
    /// # Errors
    /// [`Error::Corruption`] at the first record that fails its checks (events before it have
    /// been visited).
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// for amount in [5u8, 7, 9] {
    ///     store.append("account-1", ExpectedVersion::Any, [NewEvent::new("Deposited", vec![amount])])?;
    /// }
    /// let mut balance = 0u64;
    /// store.read_all_with(0, |event| {
    ///     balance += u64::from(event.data[0]);
    ///     if balance > 10 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    /// })?;
    /// assert_eq!(balance, 12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all_with(
        &self,
        from_position: u64,
        visit: impl FnMut(&EventView<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        self.follow()?;
        AllIter::new(self.shared(), Some(from_position), Direction::Forward).visit(visit)
    }

    /// Reads the events matching `filter` in position order from `from_position` on.
    /// Stream, category and prefix conditions are answered from the segments' stream
    /// indexes (only matching records are read); event types are checked on each record
    /// read. Events of deleted streams and events discarded by retention are skipped.
    /// Sees the log as it was when called.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if `filter` was built from bad input (an empty list of
    /// event types, an empty category or prefix, an invalid stream id);
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone. Items are
    /// [`Error::Corruption`] if a record fails its checksum.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, Filter, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("order-1", ExpectedVersion::Any, [NewEvent::new("OrderPlaced", "{}")])?;
    /// store.append("order-2", ExpectedVersion::Any, [NewEvent::new("OrderShipped", "{}")])?;
    /// let shipped = store.read_all_filtered(0, Filter::event_types(["OrderShipped"]))?;
    /// assert_eq!(shipped.map(|e| e.unwrap().stream_id).collect::<Vec<_>>(), ["order-2"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all_filtered(&self, from_position: u64, filter: Filter) -> Result<FilteredIter> {
        self.ensure_open()?;
        filter.validate()?;
        Ok(FilteredIter::new(self.shared(), from_position, None, filter))
    }

    /// Follows the log: the events matching `filter` from `from_position` on, first those
    /// already committed, then each one as it commits, in position order, each exactly
    /// once (see [`Subscription`]). Under [`Durability::Sync`] only durable events are
    /// delivered. A position beyond the end waits for the log to reach it.
    ///
    /// The subscription does not keep the store open: closing it, or dropping its last
    /// clone, ends every subscription (`next()` returns `None`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a filter built from bad input; [`Error::Closed`].
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, Filter, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let mut orders = store.subscribe(0, Filter::category("order"))?;
    /// store.append("order-7", ExpectedVersion::Any, [NewEvent::new("OrderPlaced", "{}")])?;
    /// let event = orders.next().unwrap()?;
    /// assert_eq!(event.stream_id, "order-7");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe(&self, from_position: u64, filter: Filter) -> Result<Subscription> {
        self.ensure_open()?;
        filter.validate()?;
        let subscription = match (&self.inner.writer, &self.inner.follower) {
            (Some(writer), _) => Subscription::new(self.shared(), writer, from_position, filter),
            (None, Some(follower)) => Subscription::following(self.shared(), follower, from_position, filter),
            (None, None) => return Err(Error::internal("a store with neither a writer nor a follower")),
        };
        Ok(subscription)
    }

    /// A durable consumer: a subscription that starts just after the last position
    /// acknowledged ([`Subscription::ack`]) under `name` (at 0 the first time) and keeps its
    /// checkpoint in the store directory (`consumer-{name}.chk`). Delivery is
    /// at-least-once: after a crash or restart the consumer resumes at or before its first
    /// unacknowledged event. One live subscription per name.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a name that is empty, over
    /// [`CONSUMER_NAME_BYTES_MAX`](crate::CONSUMER_NAME_BYTES_MAX) bytes, or holds anything
    /// but ASCII letters, digits, `_`, `-`, `.` (or starts with `.`), and for a bad filter;
    /// [`Error::ConsumerInUse`] if another live subscription has this name;
    /// [`Error::Corruption`] if its checkpoint file is damaged; [`Error::Io`];
    /// [`Error::Closed`].
    ///
    /// ```
    /// use chronicle::{Error, Filter, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let billing = store.subscribe_durable("billing", Filter::all())?;
    /// assert!(matches!(store.subscribe_durable("billing", Filter::all()), Err(Error::ConsumerInUse { .. })));
    /// drop(billing);
    /// assert!(store.subscribe_durable("billing", Filter::all()).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe_durable(&self, name: &str, filter: Filter) -> Result<Subscription> {
        self.ensure_open()?;
        consumer::validate_name(name)?;
        filter.validate()?;
        // A durable consumer writes its checkpoint: only the writing store has one.
        Subscription::durable(self.shared(), self.writer("subscribe_durable")?, name, filter)
    }

    /// The last position acknowledged by durable consumer `name`; `None` if it never
    /// acknowledged one (or was deleted).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an invalid name (as [`Store::subscribe_durable`]);
    /// [`Error::Corruption`] for a damaged checkpoint; [`Error::Io`]; [`Error::Closed`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// assert_eq!(store.consumer_position("billing")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn consumer_position(&self, name: &str) -> Result<Option<u64>> {
        self.ensure_open()?;
        consumer::validate_name(name)?;
        consumer::read(&*self.shared().storage, &self.shared().dir, name)
    }

    /// Deletes durable consumer `name`'s checkpoint: a later
    /// [`Store::subscribe_durable`] with this name starts at 0. Deleting a consumer that
    /// has no checkpoint is not an error.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an invalid name; [`Error::ConsumerInUse`] while a live
    /// subscription holds the name (nothing deleted); [`Error::Io`]; [`Error::Closed`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// store.delete_consumer("billing")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_consumer(&self, name: &str) -> Result<()> {
        let _writing = sync::read(&self.inner.direct_writes);
        self.ensure_open()?;
        consumer::validate_name(name)?;
        // Held while removing, so no subscription can claim the name meanwhile.
        let _claim = consumer::ConsumerClaim::take(self.shared(), name)?;
        let _parking = sync::lock(&self.shared().park_lock);
        park::remove(&*self.shared().storage, &self.shared().dir, name)?;
        consumer::remove(&*self.shared().storage, &self.shared().dir, name)
    }

    /// Runs `projection` on a background thread: loads its saved `(version, position)`,
    /// resets it if the version changed (rebuilding from position 0), then applies every
    /// matching event in batches (at most
    /// [`PROJECTION_BATCH_EVENTS_MAX`](crate::PROJECTION_BATCH_EVENTS_MAX)), each saved by
    /// the projection together with its checkpoint. [`ProjectionRunner::wait_for`] reads
    /// your own writes; [`ProjectionRunner::stop`] returns the projection. The runner ends
    /// when the store closes.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the projection's error if `load` or `reset` failed,
    /// or for a bad filter; [`Error::Closed`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use chronicle::{ExpectedVersion, Filter, NewEvent, Projection, ProjectionError, RecordedEvent, Store};
    /// #[derive(Default)]
    /// struct OrderCount { count: u64, saved: Option<(u32, u64)> }
    /// impl Projection for OrderCount {
    ///     fn name(&self) -> &str { "order-count" }
    ///     fn version(&self) -> u32 { 1 }
    ///     fn filter(&self) -> Filter { Filter::category("order") }
    ///     fn load(&mut self) -> Result<Option<(u32, u64)>, ProjectionError> { Ok(self.saved) }
    ///     fn reset(&mut self) -> Result<(), ProjectionError> { self.count = 0; Ok(()) }
    ///     fn apply(&mut self, events: &[RecordedEvent], version: u32, through: u64) -> Result<(), ProjectionError> {
    ///         self.count += events.len() as u64; // a real one writes state + checkpoint in one transaction
    ///         self.saved = Some((version, through));
    ///         Ok(())
    ///     }
    /// }
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let runner = store.run_projection(OrderCount::default())?;
    /// let written = store.append("order-1", ExpectedVersion::Any, [NewEvent::new("Placed", "")])?;
    /// assert!(runner.wait_for(written.last_position, Duration::from_secs(10))?);
    /// assert_eq!(runner.stop()?.count, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_projection<P: Projection>(&self, projection: P) -> Result<ProjectionRunner<P>> {
        self.ensure_open()?;
        ProjectionRunner::start(projection, |from, filter| self.subscribe(from, filter))
    }

    /// The events durable consumer `name` parked ([`Subscription::park`]), by position.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an invalid name; [`Error::Corruption`] if the parked
    /// list is damaged; [`Error::Io`]; [`Error::Closed`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// assert!(store.parked_events("mailer")?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parked_events(&self, name: &str) -> Result<Vec<ParkedEvent>> {
        self.ensure_open()?;
        consumer::validate_name(name)?;
        let _parking = sync::lock(&self.shared().park_lock);
        park::read(&*self.shared().storage, &self.shared().dir, name)
    }

    /// Takes the event at `position` out of consumer `name`'s parked list and returns it,
    /// to be handled again (`None` if deletion or retention discarded it meanwhile; it is
    /// taken out of the list either way). Works whether or not a subscription of `name`
    /// is live.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an invalid name or a position that is not parked
    /// (nothing changed); [`Error::Corruption`]; [`Error::Io`] (the list is unchanged);
    /// [`Error::Closed`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// assert!(store.unpark("mailer", 3).is_err()); // nothing parked
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unpark(&self, name: &str, position: u64) -> Result<Option<crate::RecordedEvent>> {
        let _writing = sync::read(&self.inner.direct_writes);
        self.ensure_open()?;
        consumer::validate_name(name)?;
        let _parking = sync::lock(&self.shared().park_lock);
        let (storage, dir) = (&*self.shared().storage, &self.shared().dir);
        let mut parked = park::read(storage, dir, name)?;
        let Ok(at) = parked.binary_search_by_key(&position, |p| p.position) else {
            return Err(Error::invalid(format!("consumer {name:?} has no parked event at position {position}")));
        };
        let stream = Filter::stream(parked.get(at).map(|p| p.stream_id.clone()).unwrap_or_default());
        let event =
            FilteredIter::new(self.shared(), position, Some(position.saturating_add(1)), stream).next().transpose()?;
        parked.remove(at);
        park::write(storage, dir, name, &parked)?;
        Ok(event)
    }

    /// Reads every event in reverse position order from `from_position` (`None`: the last).
    ///
    /// # Errors
    /// As [`Store::read_all`].
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("a", ExpectedVersion::Any, [NewEvent::new("T", ""), NewEvent::new("U", "")])?;
    /// let positions: Vec<u64> = store.read_all_backward(None)?.map(|e| e.unwrap().position).collect();
    /// assert_eq!(positions, [1, 0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all_backward(&self, from_position: Option<u64>) -> Result<AllIter> {
        self.follow()?;
        Ok(AllIter::new(self.shared(), from_position, Direction::Backward))
    }

    /// The version of the stream's last event; `None` if the stream has no event.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`] for an invalid stream id.
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// assert_eq!(store.stream_version("s")?, None);
    /// store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "")])?;
    /// assert_eq!(store.stream_version("s")?, Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        self.follow()?;
        validate::stream_id(stream)?;
        match self.shared().stream_state(stream) {
            Some(state) if state.deleted => Err(Error::StreamDeleted { stream: stream.to_owned() }),
            Some(state) => Ok(state.last_version),
            None => Ok(None),
        }
    }

    /// The stream's first stored and last versions; `None` if the stream has no event.
    ///
    /// `first_version` is above 0 when retention ([`Retention::MaxCount`],
    /// [`Retention::MaxAge`], [`Retention::BeforeSnapshot`]) let compaction discard the oldest
    /// events: a [`Store::read_stream`] from 0 then starts there. Check it before rebuilding
    /// state from the events alone.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`] for an invalid stream id,
    /// [`Error::Corruption`] if the first stored event fails its checksum, [`Error::Closed`].
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// assert_eq!(store.stream_info("s")?, None);
    /// store.append("s", ExpectedVersion::Any, [NewEvent::new("A", ""), NewEvent::new("B", "")])?;
    /// let info = store.stream_info("s")?.expect("two events");
    /// assert_eq!((info.first_version, info.last_version), (0, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream_info(&self, stream: &str) -> Result<Option<StreamInfo>> {
        self.ensure_open()?;
        if self.stream_version(stream)?.is_none() {
            return Ok(None);
        }
        // First the first stored version, then the last: versions only grow and the last
        // event is never discarded, so the pair read this way always has first <= last.
        let first =
            StreamIter::new(Arc::clone(self.shared()), stream, 0, None, Direction::Forward)?.next().transpose()?;
        let last = self.stream_version(stream)?;
        match (first, last) {
            (Some(first), Some(last_version)) => {
                Ok(Some(StreamInfo { first_version: first.version, last_version: last_version.max(first.version) }))
            }
            _ => Ok(None),
        }
    }

    /// Every stream id with at least one event and no tombstone, sorted.
    ///
    /// # Errors
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("b", ExpectedVersion::Any, [NewEvent::new("T", "")])?;
    /// store.append("a", ExpectedVersion::Any, [NewEvent::new("T", "")])?;
    /// assert_eq!(store.streams()?, ["a", "b"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn streams(&self) -> Result<Vec<String>> {
        self.follow()?;
        let mut names: Vec<String> = self
            .shared()
            .streams()
            .iter()
            .filter(|(_, state)| !state.deleted && state.last_version.is_some())
            .map(|(name, _)| name.to_string())
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    /// Makes everything appended so far durable (fdatasync), whatever the durability mode.
    ///
    /// # Errors
    /// [`Error::Io`] if the fsync failed (the store is then poisoned), [`Error::Poisoned`],
    /// [`Error::Closed`].
    ///
    /// ```
    /// use chronicle::{Durability, ExpectedVersion, NewEvent, Options, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open_with(dir.path(), Options::default().durability(Durability::Buffered))?;
    /// store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "")])?;
    /// store.sync()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sync(&self) -> Result<()> {
        self.ensure_open()?;
        self.writer("sync")?.call(self.shared(), |reply| Request::Sync { reply })
    }

    /// Seals the active segment (if it holds any event) so that everything appended so far
    /// lives in sealed, immutable segments; the next append starts a new segment.
    ///
    /// # Errors
    /// As [`Store::sync`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// store.seal()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seal(&self) -> Result<()> {
        self.ensure_open()?;
        self.writer("seal")?.call(self.shared(), |reply| Request::Seal { reply })
    }

    fn nudge_compactor(&self) {
        if let Some((sender, _)) = &*sync::lock(&self.inner.compactor) {
            // A full queue already holds a nudge or a compaction: dropping this one loses nothing.
            let _ = sender.try_send(CompactorRequest::Nudge);
        }
    }

    /// Saves `state` as the snapshot of `stream` at `version` (events up to and including
    /// it), atomically: temporary file, fsync, rename, directory fsync. The newest
    /// [`SNAPSHOTS_KEPT`](crate::SNAPSHOTS_KEPT) snapshots per stream are kept. Without
    /// [`Durability::Sync`] the log is synced first, so a snapshot never outlives a power loss
    /// that takes the events it covers.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if the stream does not have `version` yet or the state is over
    /// [`SNAPSHOT_BYTES_MAX`](crate::SNAPSHOT_BYTES_MAX); [`Error::StreamDeleted`];
    /// [`Error::Io`]; the errors of [`Store::sync`].
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("cart", ExpectedVersion::Any, [NewEvent::new("Added", "apple")])?;
    /// store.save_snapshot("cart", 0, b"[apple]")?;
    /// assert!(store.save_snapshot("cart", 1, b"too new").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save_snapshot(&self, stream: &str, version: u64, state: &[u8]) -> Result<()> {
        let _writing = sync::read(&self.inner.direct_writes);
        self.ensure_open()?;
        self.writer("save_snapshot")?;
        validate::stream_id(stream)?;
        match self.shared().stream_state(stream) {
            Some(s) if s.deleted => return Err(Error::StreamDeleted { stream: stream.to_owned() }),
            Some(s) if s.last_version.is_some_and(|last| version <= last) => {}
            Some(s) => {
                return Err(Error::invalid(format!(
                    "snapshot of stream {stream:?} at version {version}, but its last version is {:?}",
                    s.last_version
                )));
            }
            None => {
                return Err(Error::invalid(format!("snapshot of stream {stream:?}, which has no events")));
            }
        }
        // The snapshot must never be durable before the events it covers: after a power loss
        // it would describe versions the stream no longer has (and later, different events
        // would reuse them). Under Sync every published event is durable already.
        if self.shared().options.durability != Durability::Sync {
            self.sync()?;
        }
        self.shared().snapshots.save(stream, version, state)?;
        // A delete_stream (and a compaction erasing its snapshots) may have run while the file
        // was written: a deleted stream must not keep a snapshot.
        if self.shared().stream_state(stream).is_some_and(|s| s.deleted) {
            self.shared().snapshots.remove_stream(stream)?;
            return Err(Error::StreamDeleted { stream: stream.to_owned() });
        }
        self.nudge_compactor();
        Ok(())
    }

    /// The newest valid snapshot of `stream`, or `None`. A snapshot file that fails its
    /// checksum is skipped (and logged) in favour of the previous one, provided the events
    /// after that one are still stored.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`] for an invalid stream id;
    /// [`Error::Corruption`] naming the damaged newest snapshot when the previous one cannot
    /// stand in because [`Retention::BeforeSnapshot`] discarded the events after it;
    /// [`Error::Io`] if a snapshot file could not be read (never taken for a damaged one).
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// assert_eq!(store.load_snapshot("nothing-yet")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>> {
        self.follow()?;
        validate::stream_id(stream)?;
        if self.is_read_only() {
            self.shared().snapshots.rescan()?;
        }
        if self.shared().stream_state(stream).is_some_and(|s| s.deleted) {
            return Err(Error::StreamDeleted { stream: stream.to_owned() });
        }
        self.shared().snapshots.load(stream, || first_stored_version(self.shared(), stream))
    }

    /// Deletes `stream` if its version satisfies `expected`: a tombstone record is appended
    /// through the normal write path. Afterwards reads, appends and snapshot calls on the
    /// stream return [`Error::StreamDeleted`] and it leaves [`Store::streams`]. Its events and
    /// snapshots are erased from the directory by the next [`Store::compact`].
    ///
    /// **Deletion is permanent**: there is no undelete, and the stream id can never be used
    /// again (the tombstone is kept for ever, also through compaction). Deleting a stream that
    /// never had an event still tombstones its id under [`ExpectedVersion::Any`] or
    /// [`ExpectedVersion::NoStream`] — a typo in the id burns that id. Pass
    /// [`ExpectedVersion::StreamExists`] (or `Exact(last)`) to delete only a stream that has
    /// events: a missing one is then [`Error::WrongExpectedVersion`] and nothing is written.
    ///
    /// # Errors
    /// [`Error::WrongExpectedVersion`], [`Error::StreamDeleted`] if already deleted, and the
    /// write-path errors of [`Store::append`].
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone.
    ///
    /// ```
    /// use chronicle::{Error, ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("user-9", ExpectedVersion::Any, [NewEvent::new("Registered", "bob")])?;
    /// store.delete_stream("user-9", ExpectedVersion::Exact(0))?;
    /// assert!(matches!(store.read_stream("user-9", 0), Err(Error::StreamDeleted { .. })));
    /// // Guarded against a typo: "usr-9" has no event, so nothing is deleted.
    /// assert!(matches!(
    ///     store.delete_stream("usr-9", ExpectedVersion::StreamExists),
    ///     Err(Error::WrongExpectedVersion { .. })
    /// ));
    /// assert!(store.stream_version("usr-9")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_stream(&self, stream: &str, expected: ExpectedVersion) -> Result<()> {
        self.ensure_open()?;
        self.writer("delete_stream")?;
        let part = validate::tombstone_part(stream, expected)?;
        self.submit(vec![part])?;
        self.nudge_compactor();
        Ok(())
    }

    /// Sets which events of `stream` compaction may discard; persists across reopen.
    /// Streams without a rule follow [`Options::retention`].
    ///
    /// # Errors
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`] for an invalid stream id,
    /// [`Error::Io`] if the retention table could not be written.
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone.
    ///
    /// ```
    /// use chronicle::{Retention, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.set_stream_retention("metrics-1", Retention::MaxCount(100))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_stream_retention(&self, stream: &str, retention: Retention) -> Result<()> {
        let _writing = sync::read(&self.inner.direct_writes);
        self.ensure_open()?;
        self.writer("set_stream_retention")?;
        validate::stream_id(stream)?;
        if self.shared().stream_state(stream).is_some_and(|s| s.deleted) {
            return Err(Error::StreamDeleted { stream: stream.to_owned() });
        }
        self.shared().retention.set(stream, retention)?;
        self.nudge_compactor();
        Ok(())
    }

    /// Seals the active segment, then rewrites every sealed segment without the events that
    /// deletion and retention made discardable, and removes deleted streams' snapshots. Runs
    /// on the compaction thread and waits for it; appends and reads go on meanwhile. After it
    /// returns, no byte of a deleted stream's events or snapshots remains in the directory.
    ///
    /// # Errors
    /// [`Error::Io`] if a file could not be written (the store is unchanged: the swap happens
    /// only after the new segment is durable); [`Error::Corruption`] if a record to copy
    /// fails its checksum; [`Error::Closed`] if the store is closed meanwhile (closing does
    /// not wait for a long compaction: it stops at its next 64 KiB chunk, and the segments
    /// it already swapped stay compacted); the errors of [`Store::seal`].
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Retention, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("s", ExpectedVersion::Any, (0..10).map(|i| NewEvent::new("T", vec![i])))?;
    /// store.set_stream_retention("s", Retention::MaxCount(3))?;
    /// let report = store.compact()?;
    /// assert_eq!(report.events_removed, 7);
    /// let first = store.read_stream("s", 0)?.next().unwrap()?;
    /// assert_eq!(first.version, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compact(&self) -> Result<CompactionReport> {
        self.ensure_open()?;
        self.writer("compact")?;
        self.seal()?;
        let (reply, answer) = bounded(1);
        let sent = match &*sync::lock(&self.inner.compactor) {
            Some((sender, _)) => sender.send(CompactorRequest::Compact { reply }).is_ok(),
            None => false,
        };
        if !sent {
            return Err(Error::Closed);
        }
        answer.recv().map_err(|_| Error::Closed)?
    }

    /// Checks every byte of the store: every record's checksum and framing in every
    /// segment, each index file against the index its segment's records give (byte for
    /// byte), and every snapshot file. Problems are reported, not repaired; a read-only store
    /// verifies what it sees after a refresh. Reads as fast as the disk allows (one pass).
    ///
    /// # Errors
    /// [`Error::Closed`]; a read-only store's refresh errors. Damage is in the report, not
    /// an error.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "x")])?;
    /// let report = store.verify()?;
    /// assert!(report.is_clean() && report.records == 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_with_progress(|_, _| {})
    }

    /// As [`Store::verify`], calling `progress(bytes_done, bytes_total)` after each segment.
    ///
    /// # Errors
    /// As [`Store::verify`].
    pub fn verify_with_progress(&self, progress: impl FnMut(u64, u64)) -> Result<VerifyReport> {
        self.follow()?;
        Ok(crate::ops::verify::verify(self.shared(), progress))
    }

    /// Writes a consistent copy of the store, at one position, to `dest` (which must not
    /// exist) while appends go on; works on a read-only store too, so a backup can be taken
    /// by another process while the writer runs. Sealed segments are hard-linked where the
    /// file system allows, else copied; the active segment is copied up to a commit-group
    /// boundary; snapshots, the retention table and the store's other files are copied. The
    /// copy is fsynced, verified (every checksum), and renamed to `dest` only then: an
    /// interrupted backup leaves a temporary `.NAME.backup-*.tmp` directory beside `dest`
    /// (safe to delete), never a `dest` that looks whole. Restore with [`crate::restore`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if `dest` exists; [`Error::Io`]; [`Error::Corruption`] if the
    /// copy fails verification (a damaged store is not backed up silently); [`Error::Closed`].
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path().join("live"))?;
    /// store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "x")])?;
    /// let report = store.backup(dir.path().join("backup"))?;
    /// assert_eq!(report.end_position, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        self.follow()?;
        crate::ops::backup::backup(self.shared(), dest.as_ref())
    }

    /// The store's counters now (see [`Stats`]): atomics and the segment list, no I/O.
    /// Works after close too.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "x")])?;
    /// let stats = store.stats();
    /// assert_eq!((stats.end_position, stats.streams), (1, 1));
    /// assert!(stats.fsyncs >= 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Stats {
        use std::sync::atomic::Ordering::Relaxed;
        let shared = self.shared();
        let metrics = &shared.metrics;
        let segments = shared.segments();
        let fsync_micros = metrics.fsync_micros.snapshot();
        Stats {
            read_only: self.is_read_only(),
            end_position: shared.next_position(),
            streams: shared.stream_count() as u64,
            segments: segments.len() as u64,
            bytes: segments.iter().map(|s| s.committed_len()).sum(),
            fsyncs: metrics.fsyncs.load(Relaxed),
            fsync_p50_micros: fsync_micros.quantile_upper_bound(0.5),
            fsync_p99_micros: fsync_micros.quantile_upper_bound(0.99),
            fsync_micros,
            commit_groups: metrics.groups.load(Relaxed),
            commit_group_records: metrics.group_records.snapshot(),
            writer_queue_depth: self.inner.writer.as_ref().map_or(0, |w| w.queue_depth()),
            compactions: metrics.compactions.load(Relaxed),
            compaction_running: metrics.compaction_running.load(Relaxed),
            compaction_runs_done: metrics.compaction_runs_done.load(Relaxed),
            compaction_runs_total: metrics.compaction_runs_total.load(Relaxed),
            subscribers: self.shared().subscribers.load(std::sync::atomic::Ordering::Relaxed),
            refreshes: self.inner.follower.as_deref().map_or(0, Follower::refreshes),
        }
    }

    /// Every segment file in position order, with its header fields and committed bytes.
    ///
    /// # Errors
    /// [`Error::Closed`]; a read-only store's refresh errors.
    pub fn segment_files(&self) -> Result<Vec<SegmentInfo>> {
        self.follow()?;
        let segments = self.shared().segments();
        let count = segments.len();
        Ok(segments
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentInfo {
                path: s.path.clone(),
                id: s.id(),
                base_position: s.header.base_position,
                compacted_end_position: (s.header.compacted_end_position != 0)
                    .then_some(s.header.compacted_end_position),
                bytes: s.committed_len(),
                active: i + 1 == count,
                created_unix_ms: s.header.created_unix_ms,
            })
            .collect())
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
