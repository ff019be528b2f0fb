//! What [`Store::stats`](crate::Store::stats) and [`Store::health`](crate::Store::health)
//! report.

use crate::metrics::HistogramSnapshot;

/// A store's counters at one moment. Reading them costs a few atomic loads and one pass
/// over the segment list's lengths: cheap enough to poll every second.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Opened with [`Store::open_read_only`](crate::Store::open_read_only).
    pub read_only: bool,
    /// The published end of the log: one past the last committed position. Events in the
    /// store are at most this many (deletion and retention remove some after compaction).
    pub end_position: u64,
    /// Streams known (deleted ones included).
    pub streams: u64,
    /// Segment files.
    pub segments: u64,
    /// Committed bytes in segment files.
    pub bytes: u64,
    /// fdatasync calls on the active segment since open.
    pub fsyncs: u64,
    /// Upper bound of the median fdatasync, in microseconds (from `fsync_micros`).
    pub fsync_p50_micros: u64,
    /// Upper bound of the 99th-percentile fdatasync, in microseconds.
    pub fsync_p99_micros: u64,
    /// fdatasync durations in microseconds, power-of-two buckets.
    pub fsync_micros: HistogramSnapshot,
    /// Commit groups written since open.
    pub commit_groups: u64,
    /// Records per commit group, power-of-two buckets.
    pub commit_group_records: HistogramSnapshot,
    /// Requests waiting in the writer's queue now.
    pub writer_queue_depth: usize,
    /// Compactions completed since open.
    pub compactions: u64,
    /// A compaction is running now.
    pub compaction_running: bool,
    /// Runs of segments the running (or last) compaction has rewritten.
    pub compaction_runs_done: u64,
    /// Runs the running (or last) compaction planned.
    pub compaction_runs_total: u64,
    /// Live subscriptions (every `Subscription` not yet dropped, durable ones included).
    pub subscribers: u64,
    /// A read-only store's refreshes since open (0 for a writable store).
    pub refreshes: u64,
}

/// One segment file, as [`Store::segment_files`](crate::Store::segment_files) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The file.
    pub path: std::path::PathBuf,
    /// Its id (in its name and header).
    pub id: u64,
    /// Position of its first record (or of the range it covers).
    pub base_position: u64,
    /// For a segment written by compaction, the end of the position range it replaced.
    pub compacted_end_position: Option<u64>,
    /// Committed bytes (the whole file once sealed).
    pub bytes: u64,
    /// The last segment, which appends go to.
    pub active: bool,
    /// When the segment was created, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
}

/// Whether a store can serve, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Serving reads (and writes, unless read-only).
    Ok,
    /// A write or fsync failed: the store refuses writes until reopened (reads still work).
    Poisoned {
        /// The failure, as [`Error::Poisoned`](crate::Error::Poisoned) reports it.
        cause: String,
    },
    /// [`Store::close`](crate::Store::close) has begun.
    Closed,
}

impl Health {
    /// `"ok"`, `"poisoned"` or `"closed"`.
    pub fn status(&self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Poisoned { .. } => "poisoned",
            Health::Closed => "closed",
        }
    }
}
