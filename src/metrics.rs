//! Counters the engine keeps for [`Store::stats`](crate::Store::stats) and
//! [`Store::health`](crate::Store::health): atomics only, so reading them costs nothing
//! measurable and updating them costs the writer a few relaxed adds per commit group.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::Error;
use crate::sync;

/// Buckets of a [`Histogram`]: bucket `i` counts values in `[2^(i-1), 2^i)` (bucket 0:
/// the value 0), the last one everything larger.
pub const HISTOGRAM_BUCKETS: usize = 24;

/// A fixed-bucket histogram with power-of-two bounds.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; HISTOGRAM_BUCKETS],
}

impl Histogram {
    pub(crate) fn record(&self, value: u64) {
        let bucket = (u64::BITS - value.leading_zeros()) as usize;
        if let Some(counter) = self.buckets.get(bucket.min(HISTOGRAM_BUCKETS - 1)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut counts = [0u64; HISTOGRAM_BUCKETS];
        for (count, bucket) in counts.iter_mut().zip(&self.buckets) {
            *count = bucket.load(Ordering::Relaxed);
        }
        HistogramSnapshot { counts }
    }
}

/// The counts of a histogram at one moment. Bucket `i` holds values below `2^i` (and at
/// least `2^(i-1)`); the last bucket also holds everything larger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistogramSnapshot {
    /// Count per bucket.
    pub counts: [u64; HISTOGRAM_BUCKETS],
}

impl HistogramSnapshot {
    /// Values recorded.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// An upper bound of the `q` quantile (0.0 to 1.0): the upper bound of the bucket it
    /// falls in (so within a factor of two); 0 when nothing was recorded.
    pub fn quantile_upper_bound(&self, q: f64) -> u64 {
        let total = self.total();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return if i == 0 { 0 } else { (1u64 << i) - 1 };
            }
        }
        u64::MAX
    }
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) fsyncs: AtomicU64,
    /// fdatasync durations in microseconds.
    pub(crate) fsync_micros: Histogram,
    /// Records per commit group.
    pub(crate) group_records: Histogram,
    pub(crate) groups: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) compaction_running: AtomicBool,
    pub(crate) compaction_runs_total: AtomicU64,
    pub(crate) compaction_runs_done: AtomicU64,
    poison: Mutex<Option<Arc<Error>>>,
}

impl Metrics {
    pub(crate) fn record_fsync(&self, took: Duration) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_micros.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    pub(crate) fn record_group(&self, records: usize) {
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.group_records.record(records as u64);
    }

    pub(crate) fn set_poisoned(&self, cause: &Arc<Error>) {
        sync::lock(&self.poison).get_or_insert_with(|| Arc::clone(cause));
    }

    pub(crate) fn poisoned(&self) -> Option<Arc<Error>> {
        sync::lock(&self.poison).clone()
    }
}
