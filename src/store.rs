//! The public facade: `Store`, a cheap cloneable handle to one open store directory.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, bounded};

use crate::compaction::retention::{Retention, RetentionTable};
use crate::compaction::{self, CompactionReport, CompactorRequest};
use crate::error::{Error, Result};
use crate::event::{AppendResult, EventView, ExpectedVersion, NewEvent, StreamAppend};
use crate::options::{BATCH_STREAMS_MAX, Durability, Options};
use crate::read::{AllIter, StreamIter};
use crate::recovery::recover;
use crate::segment::cache::MapCache;
use crate::segment::naming::LOCK_FILE;
use crate::shared::Shared;
use crate::snapshot::{Snapshot, Snapshots};
use crate::storage::{FileSystem, LockError, LockGuard, Storage};
use crate::writer::validate::{self, WritePart};
use crate::writer::{self, Request, Writer, WriterHandle};

/// How long an append without fsync polls for its answer before sleeping.
const CALLER_SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// The version of the first event of `stream` still stored (retention may have discarded
/// earlier ones).
pub(crate) fn first_stored_version(shared: &Arc<Shared>, stream: &str) -> Option<u64> {
    StreamIter::new(Arc::clone(shared), stream, 0, None, false).ok()?.next()?.ok().map(|e| e.version)
}

/// Depth of the queue in front of the compaction thread (nudges beyond it are dropped).
const COMPACTOR_QUEUE_DEPTH_MAX: usize = 16;

/// An open event store: one directory, one writer thread, any number of readers.
///
/// `Store` is `Clone + Send + Sync`; clones share the same store. The store shuts down when
/// the last clone drops (errors are logged) or at [`Store::close`] (errors are returned).
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
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    writer: Arc<WriterHandle>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// Dropped at shutdown to stop the compaction thread.
    compactor: Mutex<Option<(Sender<CompactorRequest>, JoinHandle<()>)>>,
    /// Declared last: released only after the writer thread has stopped.
    _lock: LockGuardDebug,
}

struct LockGuardDebug(#[allow(dead_code)] LockGuard);

impl std::fmt::Debug for LockGuardDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard")
    }
}

impl Handle {
    fn shutdown(&self) -> Result<()> {
        // Stop compaction first: it may be waiting for nothing but must not outlive the lock;
        // a running one stops at its next chunk.
        self.shared.mark_closing();
        if let Some((sender, thread)) = self.compactor.lock().unwrap_or_else(|poison| poison.into_inner()).take() {
            drop(sender);
            if thread.join().is_err() {
                tracing::error!("compaction thread panicked");
            }
        }
        let Some(thread) = self.writer_thread.lock().unwrap_or_else(|poison| poison.into_inner()).take() else {
            return Ok(());
        };
        let result = self.writer.call(&self.shared, |reply| Request::Shutdown { reply });
        if thread.join().is_err() {
            tracing::error!("writer thread panicked");
        }
        result
    }
}

impl Drop for Handle {
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
    /// system: for fault-injection and crash tests, or an in-memory store.
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
        storage.create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let lock = match storage.lock(&dir.join(LOCK_FILE)) {
            Ok(lock) => lock,
            Err(LockError::Held) => return Err(Error::Locked { dir }),
            Err(LockError::Io(e)) => return Err(Error::io("lock", dir.join(LOCK_FILE), e)),
        };
        let cache = MapCache::new(Arc::clone(&storage), options.mapped_segments_max);
        let recovered = recover(&cache, &dir, &options)?;
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
        let handle = Handle {
            shared: Arc::clone(&shared),
            writer,
            writer_thread: Mutex::new(Some(writer_thread)),
            compactor: Mutex::new(None),
            _lock: LockGuardDebug(lock),
        };
        // From here on, dropping `handle` shuts the writer down cleanly.
        let compactor_thread = compaction::spawn(shared, compactor_requests)?;
        *handle.compactor.lock().unwrap_or_else(|poison| poison.into_inner()) = Some((compactor, compactor_thread));
        Ok(Store { handle: Arc::new(handle) })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    fn submit(&self, parts: Vec<WritePart>) -> Result<Vec<AppendResult>> {
        validate::batch(&self.shared().options, &parts)?;
        // Without an fsync to wait for, the answer comes within microseconds: poll for it
        // rather than sleep. With Sync the wait is a whole fsync, so sleep at once.
        let spin = (self.shared().options.durability != Durability::Sync).then_some(CALLER_SPIN);
        writer::append(self.shared(), &self.handle.writer, parts, spin)
    }

    /// Appends `events` to `stream` as one atomic batch, if the stream's version satisfies
    /// `expected`. Returns the versions and positions assigned.
    ///
    /// Retrying an append whose events carry ids ([`NewEvent::with_id`]) after it already
    /// succeeded returns the original result and writes nothing.
    ///
    /// # Errors
    /// [`Error::WrongExpectedVersion`] (nothing written), [`Error::StreamDeleted`],
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
        let part = validate::events_part(&self.shared().options, stream, expected, events.into_iter().collect())?;
        let mut results = self.submit(vec![part])?;
        results.pop().ok_or_else(|| Error::invalid("append produced no result"))
    }

    /// Appends to several streams atomically: either every part is written (in one commit
    /// group, positions contiguous in the given order) or none is. Each part has its own
    /// expected version. Returns one result per part, in order.
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

    /// Reads `stream` from `from_version` on, in version order. A missing stream reads as
    /// empty; versions discarded by retention are skipped.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`] for an invalid stream id. Items
    /// are [`Error::Corruption`] if a record fails its checksum.
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
        StreamIter::new(Arc::clone(self.shared()), stream, from_version, None, false)
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
        StreamIter::new(Arc::clone(self.shared()), stream, from_version.unwrap_or(u64::MAX), None, true)
    }

    /// Reads every event in global position order from `from_position` on.
    ///
    /// # Errors
    /// None at creation today; items are [`Error::Corruption`] if a record fails its checksum.
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
        Ok(AllIter::new(self.shared(), Some(from_position), false))
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
        AllIter::new(self.shared(), Some(from_position), false).visit(visit)
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
        Ok(AllIter::new(self.shared(), from_position, true))
    }

    /// The version of the stream's last event; `None` if the stream has no event.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`] for an invalid stream id.
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
        validate::stream_id(stream)?;
        match self.shared().stream_state(stream) {
            Some(state) if state.deleted => Err(Error::StreamDeleted { stream: stream.to_owned() }),
            Some(state) => Ok(state.last_version),
            None => Ok(None),
        }
    }

    /// Every stream id with at least one event and no tombstone, sorted.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for stores whose stream list lives elsewhere.
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
        self.handle.writer.call(self.shared(), |reply| Request::Sync { reply })
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
        self.handle.writer.call(self.shared(), |reply| Request::Seal { reply })
    }

    fn nudge_compactor(&self) {
        if let Some((sender, _)) = &*self.handle.compactor.lock().unwrap_or_else(|poison| poison.into_inner()) {
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
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// assert_eq!(store.load_snapshot("nothing-yet")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>> {
        validate::stream_id(stream)?;
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
    /// # Errors
    /// [`Error::WrongExpectedVersion`], [`Error::StreamDeleted`] if already deleted, and the
    /// write-path errors of [`Store::append`].
    ///
    /// ```
    /// use chronicle::{Error, ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("user-9", ExpectedVersion::Any, [NewEvent::new("Registered", "bob")])?;
    /// store.delete_stream("user-9", ExpectedVersion::Exact(0))?;
    /// assert!(matches!(store.read_stream("user-9", 0), Err(Error::StreamDeleted { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_stream(&self, stream: &str, expected: ExpectedVersion) -> Result<()> {
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
    ///
    /// ```
    /// use chronicle::{Retention, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.set_stream_retention("metrics-1", Retention::MaxCount(100))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_stream_retention(&self, stream: &str, retention: Retention) -> Result<()> {
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
        self.seal()?;
        let (reply, answer) = bounded(1);
        let sent = match &*self.handle.compactor.lock().unwrap_or_else(|poison| poison.into_inner()) {
            Some((sender, _)) => sender.send(CompactorRequest::Compact { reply }).is_ok(),
            None => false,
        };
        if !sent {
            return Err(Error::Closed);
        }
        answer.recv().map_err(|_| Error::Closed)?
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
    /// remains. Other clones get [`Error::Closed`] on writes afterwards.
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
        self.handle.shutdown()
    }
}
