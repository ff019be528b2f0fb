//! The public facade: `Store`, a cheap cloneable handle to one open store directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, bounded};

use crate::error::{Error, Result};
use crate::event::{AppendResult, ExpectedVersion, NewEvent, StreamAppend};
use crate::options::{BATCH_STREAMS_MAX, Options, WRITER_QUEUE_DEPTH_MAX};
use crate::read::{AllIter, StreamIter};
use crate::recovery::recover;
use crate::segment::naming::LOCK_FILE;
use crate::shared::Shared;
use crate::storage::{FileSystem, LockError, LockGuard, Storage};
use crate::writer::validate::{self, WritePart};
use crate::writer::{self, Request, Writer};

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
    requests: Sender<Request>,
    writer: Mutex<Option<JoinHandle<()>>>,
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
        let Some(thread) = self.writer.lock().unwrap_or_else(|poison| poison.into_inner()).take() else {
            return Ok(());
        };
        let (reply, answer) = bounded(1);
        let result = match self.requests.send(Request::Shutdown { reply }) {
            Ok(()) => answer.recv().unwrap_or(Err(Error::Closed)),
            Err(_) => Err(Error::Closed),
        };
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
        let recovered = recover(&storage, &dir, &options)?;
        let active = recovered
            .segments
            .last()
            .cloned()
            .ok_or_else(|| Error::corruption(&dir, 0, "no segment after recovery"))?;
        let shared = Arc::new(Shared::new(
            dir,
            storage,
            options,
            recovered.segments,
            recovered.streams,
            recovered.next_position,
        ));
        let (requests, receiver) = bounded(WRITER_QUEUE_DEPTH_MAX);
        let thread = writer::spawn(Writer::new(Arc::clone(&shared), active, recovered.next_segment_id), receiver)?;
        Ok(Store {
            handle: Arc::new(Handle {
                shared,
                requests,
                writer: Mutex::new(Some(thread)),
                _lock: LockGuardDebug(lock),
            }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    fn submit(&self, parts: Vec<WritePart>) -> Result<Vec<AppendResult>> {
        validate::batch(&self.shared().options, &parts)?;
        let (reply, answer) = bounded(1);
        self.handle.requests.send(Request::Append { parts, reply }).map_err(|_| Error::Closed)?;
        answer.recv().map_err(|_| Error::Closed)?
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
        let (reply, answer) = bounded(1);
        self.handle.requests.send(Request::Sync { reply }).map_err(|_| Error::Closed)?;
        answer.recv().map_err(|_| Error::Closed)?
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
        let (reply, answer) = bounded(1);
        self.handle.requests.send(Request::Seal { reply }).map_err(|_| Error::Closed)?;
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

    /// Shuts the store down: finishes queued appends, syncs, writes the index checkpoint so
    /// the next open reads no segment contents, stops the writer and releases the lock once
    /// no clone remains. Other clones get [`Error::Closed`] on writes afterwards.
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
