//! Deciding what compaction discards: events of deleted streams, and events that a
//! stream's retention rule releases (never a stream's last event).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::unix_micros_now;
use crate::error::Result;
use crate::index::streams::StreamState;
use crate::index::{IndexEntry, SegmentIndex, StreamEntries};
use crate::options::Durability;
use crate::retention::Retention;
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

/// Plans a compaction of every sealed segment (all but the last), in position order;
/// segments with nothing to discard have an empty discard set.
///
/// # Errors
/// [`Error::Corruption`] if a sealed segment's index is damaged and the segment cannot be
/// indexed again.
pub(crate) fn plan(shared: &Shared) -> Result<Vec<SegmentPlan>> {
    let segments = shared.segments();
    let default_retention = shared.options.retention;
    let now_us = unix_micros_now();
    let mut snapshot_versions: HashMap<String, Option<u64>> = HashMap::new();
    // Streams are judged by durable state only: a crash must never bring back fewer events
    // (or no tombstone) than the ones that made durable events discardable. Under Sync every
    // published event is durable, so the published state is used; otherwise only what the
    // sealed segments hold (they are synced when sealed). One view of the state (and
    // rules) serves every segment, so appends and rule changes during planning cannot make
    // it judge segments inconsistently.
    let sealed: Vec<(Arc<Segment>, u64, Vec<StreamEntries>)> = segments
        .windows(2)
        .filter_map(|pair| match pair {
            [segment, next] => Some((segment, next.header.base_position)),
            _ => None,
        })
        .map(|(segment, end)| {
            let streams = segment.lookup(&*shared.storage, SegmentIndex::all_streams)?;
            Ok((Arc::clone(segment), end, streams))
        })
        .collect::<Result<_>>()?;
    let published_is_durable = shared.options.durability == Durability::Sync;
    let mut states: HashMap<String, (StreamState, Retention)> = HashMap::new();
    for (_, _, streams) in &sealed {
        for (stream, entries, tombstone) in streams {
            let (state, _) = states.entry(stream.clone()).or_insert_with(|| {
                let retention = shared.retention.get(stream).unwrap_or(default_retention);
                let published = shared.stream_state(stream).filter(|_| published_is_durable);
                (published.unwrap_or_default(), retention)
            });
            if !published_is_durable {
                state.merge(entries.last().map(|e| e.version), *tombstone);
            }
        }
    }
    let mut plans = Vec::new();
    for (segment, end_position, streams) in sealed {
        let mut discard = HashSet::new();
        let mut discard_bytes = 0u64;
        let reader = segment.reader().ok();
        for (stream, entries, _) in streams {
            let Some(&(state, retention)) = states.get(&stream) else { continue };
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
                let snapshot = *snapshot_versions.entry(stream.clone()).or_insert_with(|| {
                    // Discarding up to an older (fallback) snapshot never removes events it
                    // needs, so any valid snapshot will do here.
                    let first = || None;
                    shared.snapshots.load(&stream, first).ok().flatten().map(|s| s.version)
                });
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
        plans.push(SegmentPlan { segment, end_position, discard, discard_bytes });
    }
    Ok(plans)
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

impl SegmentPlan {
    /// Bytes of the records that survive.
    pub(crate) fn survivor_bytes(&self) -> u64 {
        let records =
            self.segment.committed_len().saturating_sub(crate::format::segment_header::SEGMENT_HEADER_BYTES as u64);
        records.saturating_sub(self.discard_bytes)
    }
}

/// Groups consecutive plans into runs, each rewritten as one segment: a run grows while its
/// survivors fit in one segment, and only runs that discard something are kept. Segments
/// emptied by compaction thus merge into a neighbour instead of lingering as empty files,
/// while the positions stay tiled by segments (recovery checks it).
pub(crate) fn runs(plans: Vec<SegmentPlan>, segment_bytes: u64) -> Vec<Vec<SegmentPlan>> {
    let payload = segment_bytes.saturating_sub(crate::format::segment_header::SEGMENT_HEADER_BYTES as u64);
    let mut runs: Vec<Vec<SegmentPlan>> = Vec::new();
    let mut current: Vec<SegmentPlan> = Vec::new();
    let mut current_bytes = 0u64;
    for plan in plans {
        let bytes = plan.survivor_bytes();
        if !current.is_empty() && current_bytes + bytes > payload {
            runs.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += bytes;
        current.push(plan);
    }
    runs.push(current);
    runs.retain(|run| run.iter().any(|plan| !plan.discard.is_empty()));
    runs
}
