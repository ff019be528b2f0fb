//! The bound on memory maps. At most `mapped_segments_max` sealed segments keep their maps
//! (of the segment file and of its index file) between reads; any other is mapped again when
//! a reader needs it, as RocksDB's table cache bounds its open tables. A CLOCK (second
//! chance) sweep picks the segment to unmap: a hit only sets a flag, so the hot read path
//! takes no lock and writes no shared counter.
//!
//! Descriptors need no cache: a map outlives its descriptor, so every file but the active
//! segment's is closed as soon as it is mapped (see `Segment`).
//!
//! Unmapping never pulls bytes from under a reader: views are reference-counted `Bytes`, so a
//! reader (or an event it returned) keeps its map until it drops it; the cache only drops
//! the segment's own reference.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::Segment;
use crate::storage::Storage;
use crate::sync;

/// The maps of a store's sealed segments: which are mapped, and which to unmap next.
#[derive(Debug)]
pub(crate) struct MapCache {
    /// Where sealed segments and index files are opened again to be mapped.
    pub(crate) storage: Arc<dyn Storage>,
    mapped_segments_max: usize,
    clock: Mutex<Clock>,
    /// A read-only store's: derived files (index files) are never written.
    pub(crate) read_only: bool,
}

#[derive(Debug, Default)]
struct Clock {
    /// Sealed segments that may hold maps, each listed once.
    listed: Vec<Weak<Segment>>,
    /// Where the sweep continues.
    hand: usize,
}

/// One segment's share of the cache's bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Residency {
    /// In the cache's list (changed only under the cache's lock).
    listed: AtomicBool,
    /// Read since the sweep last passed it.
    referenced: AtomicBool,
    /// Replaced by compaction: its files are gone, so its maps must stay for the iterators
    /// that still read it; it leaves the list and stays mapped until it drops.
    pinned: AtomicBool,
}

impl Residency {
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned.load(Ordering::Acquire)
    }

    pub(crate) fn pin(&self) {
        self.pinned.store(true, Ordering::Release);
    }
}

impl MapCache {
    pub(crate) fn new(storage: Arc<dyn Storage>, mapped_segments_max: usize) -> Arc<Self> {
        // Options::validate refuses 0; one keeps the sweep's arithmetic meaningful anyway.
        let mapped_segments_max = mapped_segments_max.max(1);
        Arc::new(MapCache { storage, mapped_segments_max, clock: Mutex::new(Clock::default()), read_only: false })
    }

    /// The cache of a read-only store: it writes no index file.
    pub(crate) fn new_read_only(storage: Arc<dyn Storage>, mapped_segments_max: usize) -> Arc<Self> {
        let mapped_segments_max = mapped_segments_max.max(1);
        Arc::new(MapCache { storage, mapped_segments_max, clock: Mutex::new(Clock::default()), read_only: true })
    }

    /// Marks a segment's maps as used (a hit): one relaxed load, and a store only on the
    /// first hit since the sweep last passed.
    pub(crate) fn touch(residency: &Residency) {
        if !residency.referenced.load(Ordering::Relaxed) {
            residency.referenced.store(true, Ordering::Relaxed);
        }
    }

    /// Lists `segment` (sealed, a map of it just loaded) and unmaps others until at most
    /// `mapped_segments_max` are listed. Called without any of the segment's locks held:
    /// unmapping a victim takes the victim's.
    pub(crate) fn admit(&self, segment: &Segment) {
        let mut clock = sync::lock(&self.clock);
        segment.residency.referenced.store(true, Ordering::Relaxed);
        if segment.residency.listed.swap(true, Ordering::AcqRel) {
            return;
        }
        clock.listed.push(segment.me.clone());
        // Each step removes an entry or moves the hand past one; after two full turns every
        // second chance is spent, so the loop ends within three, evicting unconditionally.
        let mut steps = 0usize;
        let second_chances = 2 * clock.listed.len();
        while clock.listed.len() > self.mapped_segments_max && steps < 3 * second_chances + 3 {
            steps += 1;
            if clock.hand >= clock.listed.len() {
                clock.hand = 0;
            }
            let hand = clock.hand;
            let Some(candidate) = clock.listed.get(hand).map(Weak::upgrade) else { break };
            let Some(candidate) = candidate else {
                // Dropped: its maps went with it.
                clock.listed.swap_remove(hand);
                continue;
            };
            if std::ptr::eq(&*candidate, segment) {
                clock.hand += 1;
                continue;
            }
            let residency = &candidate.residency;
            if !residency.is_pinned() && steps <= second_chances && residency.referenced.swap(false, Ordering::Relaxed)
            {
                clock.hand += 1;
                continue;
            }
            residency.listed.store(false, Ordering::Release);
            clock.listed.swap_remove(hand);
            // A pinned segment keeps its maps; it just stops counting against the bound.
            if !residency.is_pinned() {
                candidate.unmap();
            }
        }
    }
}
