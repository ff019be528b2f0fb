//! State shared by the writer thread and every reader: the segment list, the stream table
//! and the published end of the log. The writer is its only mutator.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::index::streams::{StreamState, StreamTable};
use crate::options::Options;
use crate::segment::Segment;
use crate::storage::Storage;

/// The segments in position order; replaced as a whole (copy on write) on roll and
/// compaction, so a reader's snapshot never changes under it.
pub(crate) type SegmentList = Arc<Vec<Arc<Segment>>>;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) options: Options,
    segments: RwLock<SegmentList>,
    streams: RwLock<StreamTable>,
    /// One past the last published position: every position below it is readable.
    next_position: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        dir: PathBuf,
        storage: Arc<dyn Storage>,
        options: Options,
        segments: Vec<Arc<Segment>>,
        streams: StreamTable,
        next_position: u64,
    ) -> Self {
        Shared {
            dir,
            storage,
            options,
            segments: RwLock::new(Arc::new(segments)),
            streams: RwLock::new(streams),
            next_position: AtomicU64::new(next_position),
        }
    }

    pub(crate) fn segments(&self) -> SegmentList {
        Arc::clone(&self.segments.read().unwrap_or_else(|poison| poison.into_inner()))
    }

    pub(crate) fn set_segments(&self, segments: Vec<Arc<Segment>>) {
        *self.segments.write().unwrap_or_else(|poison| poison.into_inner()) = Arc::new(segments);
    }

    pub(crate) fn streams(&self) -> RwLockReadGuard<'_, StreamTable> {
        self.streams.read().unwrap_or_else(|poison| poison.into_inner())
    }

    pub(crate) fn streams_mut(&self) -> RwLockWriteGuard<'_, StreamTable> {
        self.streams.write().unwrap_or_else(|poison| poison.into_inner())
    }

    pub(crate) fn stream_state(&self, stream: &str) -> Option<StreamState> {
        self.streams().get(stream).copied()
    }

    pub(crate) fn next_position(&self) -> u64 {
        self.next_position.load(Ordering::Acquire)
    }

    pub(crate) fn publish_position(&self, next_position: u64) {
        self.next_position.store(next_position, Ordering::Release);
    }
}
