//! The live tail shared by subscriptions: the events just committed, decoded once and
//! handed to every live subscriber as reference-counted batches.
//!
//! Without it, each of N live subscribers scans (reads, checksums, decodes) every record of
//! the tail itself: N decodes per event. With it, the first subscriber that finds the tail
//! short of the published end reads the new records (one scan, all events, bounded to
//! [`TAIL_BATCH_POSITIONS_MAX`] positions) and appends them as one `Arc<TailBatch>`; the
//! others take the batch covering their position and only filter and clone what matches.
//!
//! Nothing here runs on the writer's thread: the writer still only publishes and notifies.
//! The window is bounded ([`TAIL_EVENTS_MAX`] events; older batches are dropped). A
//! subscriber behind the window, or far behind the published end, gets `None` and reads the
//! segments itself, as before, so it is never dropped; each subscriber holds at most one
//! batch, so memory stays bounded by the window plus one batch per subscriber.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use crate::event::RecordedEvent;
use crate::read::filter::category_of;
use crate::read::{Filter, FilteredIter, Resume};
use crate::shared::Shared;
use crate::sync;

/// At most this many positions are read into one batch.
pub(crate) const TAIL_BATCH_POSITIONS_MAX: u64 = 2048;

/// The window keeps at most about this many events (older batches are dropped first).
pub(crate) const TAIL_EVENTS_MAX: usize = 16_384;

/// A subscriber more than this many positions behind the published end reads the segments
/// itself (through the index where its filter allows) instead of extending the tail.
const TAIL_LAG_POSITIONS_MAX: u64 = TAIL_EVENTS_MAX as u64;

/// Every event of positions `from..to` (deleted streams' events left out), in order.
#[derive(Debug)]
pub(crate) struct TailBatch {
    pub(crate) to: u64,
    pub(crate) events: Vec<RecordedEvent>,
    /// Indexes into `events` by stream category, so that a subscriber with a category
    /// condition visits only its category's events, not every event of the batch. Built by
    /// the first such subscriber: without one (every subscriber takes all events, or an
    /// event-type condition only) nobody pays for hashing each event's category.
    by_category: OnceLock<HashMap<Box<str>, Vec<u32>>>,
}

impl TailBatch {
    fn new(to: u64, mut events: Vec<RecordedEvent>) -> Self {
        for event in &mut events {
            own_payload(event);
        }
        TailBatch { to, events, by_category: OnceLock::new() }
    }

    /// The indexes of the events of `category`.
    pub(crate) fn of_category(&self, category: &str) -> &[u32] {
        let by_category = self.by_category.get_or_init(|| {
            let mut by_category: HashMap<Box<str>, Vec<u32>> = HashMap::new();
            for (at, event) in self.events.iter().enumerate() {
                // A batch holds at most TAIL_BATCH_POSITIONS_MAX events: the index fits.
                let at = u32::try_from(at).unwrap_or(u32::MAX);
                let category = category_of(&event.stream_id);
                match by_category.get_mut(category) {
                    Some(list) => list.push(at),
                    None => {
                        by_category.insert(category.into(), vec![at]);
                    }
                }
            }
            by_category
        });
        by_category.get(category).map_or(&[], Vec::as_slice)
    }
}

/// Gives `event` a payload of its own. A decoded event's `data` and `metadata` share the
/// reference count of the whole segment's mapping, so every subscriber's clone and drop of
/// every batch event would update that one counter, from every core at once (the cache line
/// bounces between them); copied here once per event, each event's counter is touched only
/// by the subscribers delivering that event.
fn own_payload(event: &mut RecordedEvent) {
    if !event.data.is_empty() {
        event.data = Bytes::copy_from_slice(&event.data);
    }
    if !event.metadata.is_empty() {
        event.metadata = Bytes::copy_from_slice(&event.metadata);
    }
}

#[derive(Debug, Default)]
pub(crate) struct LiveTail {
    state: Mutex<TailState>,
}

#[derive(Debug, Default)]
struct TailState {
    /// Contiguous: each batch starts where the previous one ends.
    batches: VecDeque<(u64, Arc<TailBatch>)>,
    events: usize,
    /// Where the scan that built the last batch stopped.
    resume: Option<Resume>,
}

impl LiveTail {
    /// The batch covering `position`, reading the log into a new one if `position` is where
    /// the tail ends and something is published past it; `None` if the subscriber should
    /// read the segments itself (behind the window, far behind the end, or a damaged
    /// record, which its own read then reports).
    pub(crate) fn batch_at(&self, shared: &Arc<Shared>, position: u64) -> Option<Arc<TailBatch>> {
        let mut state = sync::lock(&self.state);
        if state.batches.front().is_some_and(|(from, _)| position < *from) {
            return None;
        }
        let at = state.batches.partition_point(|(_, batch)| batch.to <= position);
        if let Some((_, batch)) = state.batches.get(at) {
            return Some(Arc::clone(batch));
        }
        if state.batches.back().is_some_and(|(_, batch)| batch.to != position) {
            // The tail stopped being extended and the subscriber is past it: start anew.
            *state = TailState::default();
        }
        let published = shared.next_position();
        if published <= position || published - position > TAIL_LAG_POSITIONS_MAX {
            return None;
        }
        let to = published.min(position.saturating_add(TAIL_BATCH_POSITIONS_MAX));
        let mut scan = FilteredIter::resuming(shared, position, Some(to), Filter::all(), state.resume.take());
        let mut events = Vec::new();
        for item in scan.by_ref() {
            match item {
                Ok(event) => events.push(event),
                Err(_) => return None,
            }
        }
        let batch = Arc::new(TailBatch::new(scan.examined(), events));
        if batch.to <= position {
            return None;
        }
        state.resume = scan.resume();
        state.events += batch.events.len();
        state.batches.push_back((position, Arc::clone(&batch)));
        while state.events > TAIL_EVENTS_MAX && state.batches.len() > 1 {
            if let Some((_, dropped)) = state.batches.pop_front() {
                state.events -= dropped.events.len();
            }
        }
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_category_index_is_built_on_first_use_and_lists_each_category_in_order() {
        let events = ["order-1", "cart-1", "order-2", "order"]
            .iter()
            .enumerate()
            .map(|(at, stream)| RecordedEvent::new(*stream, 0, at as u64, "T", "x"))
            .collect();
        let batch = TailBatch::new(4, events);
        assert!(batch.by_category.get().is_none(), "no subscriber asked for a category yet");
        assert_eq!(batch.of_category("order"), [0, 2, 3]);
        assert_eq!(batch.of_category("cart"), [1]);
        assert!(batch.of_category("none").is_empty());
    }
}
