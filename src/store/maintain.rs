//! Keeping a store: sync and seal, snapshots, deletion and retention, compaction, verification, backup, stats.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Store {
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
}
