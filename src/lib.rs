//! # chronicle — an embedded event store
//!
//! Events live in one directory of append-only, checksummed segment files
//! (`segment-format.md` at the repository root describes every byte). A stream index,
//! memory-mapped once a segment is sealed, finds any stream's events without scanning.
//!
//! **Write path** ([`Store::append`]): the caller validates its events
//! (`validate`), sends them over a bounded queue to the writer thread (`writer`),
//! which gathers every pending request into one commit group, checks expected versions in
//! order, assigns versions and positions, encodes (`format::record`), writes the group with
//! one write and one `fdatasync`, updates the index, publishes the new end of the log and
//! wakes every caller at once. Without `Durability::Sync`, an append that finds the queue
//! empty and the writer free commits the same way on its own thread.
//!
//! **Read path** ([`Store::read_stream`], [`Store::read_all`], [`Store::read_all_with`]):
//! the index (`index`) gives the record offsets, the segment's memory map (`segment`) gives
//! the bytes, the record's CRC is verified, and the event's data comes back as zero-copy
//! [`bytes::Bytes`] (or, with `read_all_with`, borrowed without any copy).
//!
//! The architecture (crates, module tree, threads, invariants) is `docs/design.md`.
//!
//! **Open** (`recovery`): lock, list segments, read index file headers (each part of an
//! index is verified when first used), start from the stream-table checkpoint of the last
//! clean close where it still applies, scan only the unindexed tail of the last segment and
//! cut a torn trailing commit group.
//!
//! ```
//! use chronicle::{ExpectedVersion, NewEvent, Store};
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! store.append("order-1", ExpectedVersion::NoStream, [NewEvent::new("Placed", "{}")])?;
//! store.append("order-1", ExpectedVersion::Exact(0), [NewEvent::new("Paid", "{}")])?;
//! let events: Vec<_> = store.read_stream("order-1", 0)?.collect::<Result<_, _>>()?;
//! assert_eq!(events.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod backend;
mod clock;
mod compaction;
mod error;
mod event;
mod format;
mod in_memory;
mod index;
#[cfg(feature = "__internal")]
#[doc(hidden)]
pub mod internal;
mod layout;
mod metrics;
mod notify;
mod ops;
mod options;
mod read;
mod readonly;
mod recovery;
mod retention;
mod segment;
mod shared;
mod snapshot;
mod stats;
pub mod storage;
mod store;
mod subscription;
mod sync;
#[cfg(feature = "typed")]
pub mod typed;
mod validate;
mod writer;

pub use crate::backend::{EventStore, FollowStore, LogSubscription, SubscriptionStop, check_append, check_stream_id};
pub use crate::compaction::{AUTO_COMPACTION_CHECK_INTERVAL, CompactionReport};
pub use crate::error::{Error, Result};
pub use crate::event::{AppendResult, EventView, ExpectedVersion, NewEvent, RecordedEvent, StreamAppend, StreamInfo};
pub use crate::in_memory::IN_MEMORY_DIR;
pub use crate::metrics::{HISTOGRAM_BUCKETS, HistogramSnapshot};
pub use crate::ops::{BackupReport, Problem, RestoreReport, VERIFY_PROBLEMS_MAX, VerifyReport, restore};
pub use crate::options::{
    BATCH_BYTES_MAX_DEFAULT, BATCH_EVENTS_MAX, BATCH_STREAMS_MAX, COALESCED_BYTES_MAX, Durability,
    EVENT_BYTES_MAX_DEFAULT, EVENT_TYPE_BYTES_MAX, GROUP_BYTES_MAX, MAPPED_SEGMENTS_DEFAULT, Options,
    SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, STREAM_ID_BYTES_MAX, WRITER_QUEUE_DEPTH_MAX,
};
pub use crate::read::{AllIter, FILTER_EVENT_TYPES_MAX, Filter, FilteredIter, StreamIter};
pub use crate::readonly::READ_ONLY_REFRESH_INTERVAL;
pub use crate::retention::Retention;
pub use crate::snapshot::{SNAPSHOT_BYTES_MAX, SNAPSHOTS_KEPT, Snapshot};
pub use crate::stats::{Health, SegmentInfo, Stats};

/// The on-disk format versions this build reads and writes, one per kind of file
/// (`segment-format.md` §9).
pub mod format_versions {
    /// Segment headers and records (`segment-*.log`) this build writes; it also reads version 1.
    pub const SEGMENT: u32 = crate::format::SEGMENT_FORMAT_VERSION;
    /// Index files (`segment-*.idx`, derived).
    pub const INDEX: u32 = crate::index::file::INDEX_FORMAT_VERSION;
    /// The stream-table checkpoint (`streams.chk`, derived).
    pub const STREAM_CHECKPOINT: u32 = crate::index::checkpoint::CHECKPOINT_FORMAT_VERSION;
    /// Snapshot files (`snapshot-*.snap`).
    pub const SNAPSHOT: u32 = crate::format::snapshot_file::SNAPSHOT_FORMAT_VERSION;
    /// The retention table (`retention.tbl`).
    pub const RETENTION: u32 = crate::retention::RETENTION_FORMAT_VERSION;
}
pub use crate::store::Store;
pub use crate::subscription::{
    CONSUMER_NAME_BYTES_MAX, FOLLOW_BATCH_WINDOW, FOLLOW_BATCH_WINDOW_MAX, FOLLOW_WAKEUPS_PER_SECOND_MAX,
    PARK_REASON_BYTES_MAX, PARKED_EVENTS_MAX, PROJECTION_BATCH_EVENTS_MAX, ParkedEvent, Projection, ProjectionError,
    ProjectionRunner, StopHandle, Subscription,
};
pub use crate::writer::{AppendCondition, AppendFuture};
