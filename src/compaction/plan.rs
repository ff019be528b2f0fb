//! Deciding what compaction discards: events of deleted streams, and events that a
//! stream's retention rule releases (never a stream's last event).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::retention::Retention;
use crate::clock::unix_micros_now;
use crate::index::IndexEntry;
use crate::index::streams::StreamState;
use crate::segment::{Segment, SegmentReader};
use crate::shared::Shared;

/// One sealed segment and the records to drop from it.
pub(crate) struct SegmentPlan {
    pub(crate) segment: Arc<Segment>,
    /// End (exclusive) of the positions the segment covers: the next segment's base.
    pub(crate) end_position: u64,
    /// Offsets of the records to drop.
    pub(crate) discard: HashSet<u32>,
    pub(crate) discard_bytes: u64,
}

/// Plans a compaction of every sealed segment (all but the last); segments with nothing to
/// discard are left out.
pub(crate) fn plan(shared: &Shared) -> Vec<SegmentPlan> {
    let segments = shared.segments();
    let default_retention = shared.options.retention;
    let now_us = unix_micros_now();
    let mut snapshot_versions: HashMap<String, Option<u64>> = HashMap::new();
    // Each stream's state and retention rule as first seen, used for every segment: appends
    // and rule changes go on while the plan is made, and judging an older segment by an
    // older last version (or rule) than a newer one would discard a newer event while
    // keeping older ones (a gap in the middle of the stream). The first-seen state releases
    // no more than is releasable.
    let mut states: HashMap<String, Option<(StreamState, Retention)>> = HashMap::new();
    let mut plans = Vec::new();
    for pair in segments.windows(2) {
        let [segment, next] = pair else { continue };
        let mut discard = HashSet::new();
        let mut discard_bytes = 0u64;
        let reader = segment.reader().ok();
        for (stream, entries) in segment.index().all_streams() {
            let first_seen = states.entry(stream.clone()).or_insert_with(|| {
                let retention = shared.retention.get(&stream).unwrap_or(default_retention);
                shared.stream_state(&stream).map(|state| (state, retention))
            });
            let Some((state, retention)) = *first_seen else { continue };
            let Some(last_version) = state.last_version else { continue };
            let releasable = |entry: &IndexEntry| -> bool {
                if state.deleted {
                    return true;
                }
                if entry.version >= last_version {
                    return false;
                }
                match retention {
                    Retention::KeepAll => false,
                    Retention::MaxCount(count) => entry.version.saturating_add(count.max(1)) <= last_version,
                    Retention::BeforeSnapshot => false,
                    Retention::MaxAge(age) => {
                        reader.as_ref().is_some_and(|reader| record_older_than(reader, entry, now_us, age))
                    }
                }
            };
            let mut released: Vec<&IndexEntry> = entries.iter().filter(|e| releasable(e)).collect();
            if !state.deleted && retention == Retention::BeforeSnapshot {
                let snapshot = *snapshot_versions
                    .entry(stream.clone())
                    .or_insert_with(|| shared.snapshots.load(&stream).map(|s| s.version));
                if let Some(snapshot) = snapshot {
                    released.extend(entries.iter().filter(|e| e.version <= snapshot && e.version < last_version));
                }
            }
            for entry in released {
                if discard.insert(entry.offset) {
                    discard_bytes += u64::from(entry.record_bytes);
                }
            }
        }
        if !discard.is_empty() {
            plans.push(SegmentPlan {
                segment: Arc::clone(segment),
                end_position: next.header.base_position,
                discard,
                discard_bytes,
            });
        }
    }
    plans
}

/// Whether the record's commit timestamp is older than `age`. Reads only the timestamp
/// field; the record's checksum is verified when compaction copies or drops it.
fn record_older_than(reader: &SegmentReader, entry: &IndexEntry, now_us: u64, age: Duration) -> bool {
    let age_us = u64::try_from(age.as_micros()).unwrap_or(u64::MAX);
    let Ok((decoded, _)) = reader.read_record(u64::from(entry.offset), Some(entry.record_bytes)) else {
        return false;
    };
    decoded.timestamp_us.saturating_add(age_us) < now_us
}
