//! State shared by the writer thread and every reader: the segment list, the stream table
//! and the published end of the log. The writer is its only mutator.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};

use crate::error::Error;

use crate::index::streams::{StreamState, StreamTable};
use crate::metrics::Metrics;
use crate::notify::CommitNotifier;
use crate::options::Options;
use crate::recovery::Recovered;
use crate::retention::RetentionTable;
use crate::segment::Segment;
use crate::segment::cache::MapCache;
use crate::snapshot::Snapshots;
use crate::storage::Storage;
use crate::sync;

/// The segments in position order; replaced as a whole (copy on write) on roll and
/// compaction, so a reader's snapshot never changes under it.
pub(crate) type SegmentList = Arc<Vec<Arc<Segment>>>;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) storage: Arc<dyn Storage>,
    /// The bound on sealed segments' maps, shared by every segment of the store.
    pub(crate) cache: Arc<MapCache>,
    pub(crate) options: Options,
    segments: RwLock<SegmentList>,
    streams: RwLock<StreamTable>,
    deleted: RwLock<Arc<HashSet<Arc<str>>>>,
    /// One past the last published position: every position below it is readable.
    next_position: AtomicU64,
    /// Next segment id, shared by the writer (new segments) and compaction (rewrites).
    next_segment_id: AtomicU64,
    pub(crate) snapshots: Snapshots,
    pub(crate) retention: RetentionTable,
    writer_stopped: AtomicBool,
    /// Set when the store starts to close: a running compaction stops at its next chunk.
    closing: AtomicBool,
    /// Counters for `Store::stats` and `Store::health`.
    pub(crate) metrics: Metrics,
    /// Where followers of the log (subscriptions) wait for commits, stop and close.
    pub(crate) notifier: CommitNotifier,
    /// Live subscriptions, for `Store::stats`.
    pub(crate) subscribers: AtomicU64,
    /// The failure that poisoned the writer: followers stop waiting for commits that will
    /// never come.
    poison: OnceLock<Arc<Error>>,
    /// Names of the durable consumers with a live subscription (exclusive per name).
    pub(crate) live_consumers: Mutex<HashSet<String>>,
    /// Held while a consumer's parked-events file is read and rewritten.
    pub(crate) park_lock: Mutex<()>,
}

impl Shared {
    pub(crate) fn new(
        dir: PathBuf,
        cache: Arc<MapCache>,
        options: Options,
        recovered: Recovered,
        snapshots: Snapshots,
        retention: RetentionTable,
    ) -> Self {
        Shared {
            dir,
            storage: Arc::clone(&cache.storage),
            cache,
            options,
            segments: RwLock::new(Arc::new(recovered.segments)),
            deleted: RwLock::new(Arc::new(
                recovered.streams.iter().filter(|(_, state)| state.deleted).map(|(name, _)| Arc::clone(name)).collect(),
            )),
            streams: RwLock::new(recovered.streams),
            next_position: AtomicU64::new(recovered.next_position),
            next_segment_id: AtomicU64::new(recovered.next_segment_id),
            snapshots,
            retention,
            writer_stopped: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            metrics: Metrics::default(),
            notifier: CommitNotifier::default(),
            subscribers: AtomicU64::new(0),
            poison: OnceLock::new(),
            live_consumers: Mutex::new(HashSet::new()),
            park_lock: Mutex::new(()),
        }
    }

    /// Set when the writer thread has exited: no request will be answered any more.
    pub(crate) fn mark_writer_stopped(&self) {
        // SeqCst, paired with the load in `writer_stopped`: a caller that queued a request and
        // then sees `false` is sure the stopping writer has yet to drain the queue.
        self.writer_stopped.store(true, Ordering::SeqCst);
        self.notifier.notify();
    }

    pub(crate) fn writer_stopped(&self) -> bool {
        self.writer_stopped.load(Ordering::SeqCst)
    }

    /// Asks long-running background work (compaction) to stop soon: the store is closing.
    pub(crate) fn mark_closing(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.notifier.notify();
    }

    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Records the failure that poisoned the writer (the first one) and wakes followers.
    pub(crate) fn mark_poisoned(&self, cause: &Arc<Error>) {
        let _ = self.poison.set(Arc::clone(cause));
        self.notifier.notify();
    }

    /// The failure that poisoned the writer, if any.
    pub(crate) fn poison(&self) -> Option<Arc<Error>> {
        self.poison.get().cloned()
    }

    pub(crate) fn segments(&self) -> SegmentList {
        Arc::clone(&sync::read(&self.segments))
    }

    /// Replaces the segment list with `change` applied to a copy of it. The write lock is
    /// held throughout, so the writer's roll and compaction's swap never lose each other's
    /// change.
    pub(crate) fn update_segments(&self, change: impl FnOnce(&mut Vec<Arc<Segment>>)) {
        let mut guard = sync::write(&self.segments);
        let mut segments: Vec<Arc<Segment>> = guard.iter().cloned().collect();
        change(&mut segments);
        *guard = Arc::new(segments);
    }

    pub(crate) fn allocate_segment_id(&self) -> u64 {
        self.next_segment_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The deleted streams (shared, copied only when a stream is deleted): `read_all` skips
    /// their events without scanning the stream table each time an iterator is created.
    pub(crate) fn deleted_streams(&self) -> Arc<HashSet<Arc<str>>> {
        Arc::clone(&sync::read(&self.deleted))
    }

    /// Publishes a commit group's stream changes (writer thread only).
    pub(crate) fn publish_streams(&self, changes: impl Iterator<Item = (Arc<str>, StreamState)>) {
        let mut newly_deleted = Vec::new();
        let mut streams = sync::write(&self.streams);
        for (stream, state) in changes {
            if state.deleted {
                newly_deleted.push(Arc::clone(&stream));
            }
            streams.insert(stream, state);
        }
        drop(streams);
        if !newly_deleted.is_empty() {
            let mut deleted = sync::write(&self.deleted);
            let mut copy: HashSet<Arc<str>> = (**deleted).clone();
            copy.extend(newly_deleted);
            *deleted = Arc::new(copy);
        }
    }

    pub(crate) fn streams(&self) -> RwLockReadGuard<'_, StreamTable> {
        sync::read(&self.streams)
    }

    /// Streams in the stream table (deleted ones included).
    pub(crate) fn stream_count(&self) -> usize {
        self.streams().len()
    }

    pub(crate) fn stream_state(&self, stream: &str) -> Option<StreamState> {
        self.streams().get(stream).copied()
    }

    pub(crate) fn next_position(&self) -> u64 {
        // SeqCst, paired with the store in `publish_position` and the notifier's count of
        // waiters (see `notify`): a follower that counted itself then reads this sees the end.
        self.next_position.load(Ordering::SeqCst)
    }

    /// Publishes the end of the log: every position below `next_position` is committed
    /// (under `Durability::Sync`, durable). The writer calls [`Shared::notify_followers`]
    /// once the rest of the group (the stream table) is published too.
    pub(crate) fn publish_position(&self, next_position: u64) {
        self.next_position.store(next_position, Ordering::SeqCst);
    }

    /// Wakes the followers of the log after a commit: O(1) when nobody waits, one
    /// `notify_all` otherwise (see `notify.rs`).
    pub(crate) fn notify_followers(&self) {
        self.notifier.notify();
    }
}
