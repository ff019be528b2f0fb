//! Reading the events that match a [`Filter`] in position order, up to a fixed end.
//!
//! With a stream condition (stream, category, prefix), each segment's stream index gives
//! the entries of the matching streams, merged in position order; with event-type
//! conditions alone, the index's event-type section gives the entries of those types. Only
//! those records are read (and checksum-verified). Without any condition (all events), and
//! for a short live tail of the last segment, records are scanned one by one like
//! `read_all`, and only matching records become events. Either way the iterator tracks the position it has examined up to, which is
//! what a subscription resumes from.
//!
//! Damage in records the index lets it skip is not reported: every record returned is
//! read in full and its checksum verified (and checked against its index entry), but a
//! record never read is not checked. That is the point of the index (a 1 % read must not
//! cost a full scan); `read_all`, `Store::verify` and `chronicle verify` find damage
//! anywhere, and in scan mode (no condition, or the live tail) every record is checked.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::filter::Filter;
use crate::error::{Error, Result};
use crate::event::{EventView, RecordedEvent};
use crate::format::record::{DecodedRecord, RecordKind, field, texts};
use crate::format::segment_header::SEGMENT_HEADER_BYTES;
use crate::index::IndexEntry;
use crate::segment::SegmentReader;
use crate::shared::{SegmentList, Shared};
use crate::storage::Storage;

/// The events matching a [`Filter`], in position order, from
/// [`Store::read_all_filtered`](crate::Store::read_all_filtered).
///
/// Sees the log as it was when created. Every event returned is checksum-verified; a
/// failure yields `Error::Corruption` and ends the iteration.
///
/// ```
/// use chronicle::{ExpectedVersion, Filter, NewEvent, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("order-1", ExpectedVersion::Any, [NewEvent::new("OrderPlaced", "{}")])?;
/// store.append("user-1", ExpectedVersion::Any, [NewEvent::new("Registered", "{}")])?;
/// let orders = store.read_all_filtered(0, Filter::category("order"))?.count();
/// assert_eq!(orders, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FilteredIter {
    storage: Arc<dyn Storage>,
    segments: SegmentList,
    segment_index: usize,
    filter: Filter,
    /// Next position to examine: every position below it has been returned or skipped.
    low: u64,
    /// One past the last position this iterator reads.
    end: u64,
    deleted: Arc<HashSet<Arc<str>>>,
    reader: Option<SegmentReader>,
    /// Index mode: the current segment's matching entries, and how many were taken.
    pending: Vec<IndexEntry>,
    taken: usize,
    loaded: bool,
    /// Scan mode: offset of the next record in the current segment (`None`: not started).
    offset: Option<u64>,
    /// Whether the current segment is read through its index (decided per segment).
    indexed: Option<bool>,
    /// Where the scan of the last segment stopped at the end.
    resume_at: Option<Resume>,
    done: bool,
}

/// Where a scan stopped: the next record of segment `segment_id` lies at `offset` and has a
/// position of at least `position`. A subscription passes it to its next round, which then
/// starts there without an index lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resume {
    segment_id: u64,
    offset: u64,
    position: u64,
}

/// A range of at most this many positions in the last segment is scanned record by record
/// even with a stream condition: cheaper than walking the active segment's stream table,
/// and it leaves the writer's index lock alone (a live subscriber reads a few new records
/// per commit).
const SCAN_POSITIONS_MAX: u64 = 4096;

impl FilteredIter {
    /// Events matching `filter` with `from <= position < min(to, published end)`.
    pub(crate) fn new(shared: &Arc<Shared>, from: u64, to: Option<u64>, filter: Filter) -> Self {
        // The end first, then the segments: every position below the end lies in a segment
        // already in the list (a new segment is listed before anything in it is published).
        let published = shared.next_position();
        let end = to.map_or(published, |to| to.min(published));
        let segments = shared.segments();
        let segment_index = segments.partition_point(|s| s.header.base_position <= from).saturating_sub(1);
        FilteredIter {
            storage: Arc::clone(&shared.storage),
            segments,
            segment_index,
            filter,
            low: from,
            end,
            deleted: shared.deleted_streams(),
            reader: None,
            pending: Vec::new(),
            taken: 0,
            loaded: false,
            offset: None,
            indexed: None,
            resume_at: None,
            done: from >= end,
        }
    }

    /// As [`FilteredIter::new`], starting where a previous scan stopped if `resume` still
    /// describes the segment and position this iterator starts at.
    pub(crate) fn resuming(
        shared: &Arc<Shared>,
        from: u64,
        to: Option<u64>,
        filter: Filter,
        resume: Option<Resume>,
    ) -> Self {
        let mut iter = FilteredIter::new(shared, from, to, filter);
        if let Some(resume) = resume
            && resume.position == from
            && iter.segments.get(iter.segment_index).is_some_and(|s| s.id() == resume.segment_id)
            && iter.segments.len() == iter.segment_index + 1
        {
            iter.indexed = Some(false);
            iter.offset = Some(resume.offset);
        }
        iter
    }

    /// Where this iterator's scan stopped, once it has ended at its end.
    pub(crate) fn resume(&self) -> Option<Resume> {
        self.resume_at.filter(|r| self.done && self.low == self.end && r.position == self.end)
    }

    /// Notes that the scan stopped at `offset` of the current segment, the last one.
    fn stopped_at(&mut self, offset: u64) {
        if let Some(segment) = self.segments.get(self.segment_index)
            && self.segment_index + 1 == self.segments.len()
        {
            self.resume_at = Some(Resume { segment_id: segment.id(), offset, position: self.end });
        }
    }

    /// Every position below this one has been returned or skipped (as not matching,
    /// deleted or discarded); after the iterator ends, its end.
    pub(crate) fn examined(&self) -> u64 {
        self.low
    }

    fn is_deleted(&self, stream: &str) -> bool {
        !self.deleted.is_empty() && self.deleted.contains(stream)
    }

    /// Moves to the next segment; `false` past the last one or the end.
    fn next_segment(&mut self) -> bool {
        self.segment_index += 1;
        self.loaded = false;
        self.offset = None;
        self.indexed = None;
        self.pending.clear();
        self.taken = 0;
        self.segments.get(self.segment_index).is_some_and(|s| s.header.base_position < self.end)
    }

    fn finish(&mut self) {
        self.low = self.low.max(self.end);
        self.done = true;
    }

    fn ensure_reader(&mut self) -> Option<Result<()>> {
        let segment = self.segments.get(self.segment_index)?;
        if self.reader.as_ref().is_none_or(|r| !Arc::ptr_eq(r.segment(), segment)) {
            match segment.reader() {
                Ok(reader) => self.reader = Some(reader),
                Err(error) => return Some(Err(error)),
            }
        }
        Some(Ok(()))
    }

    /// Index mode: the next matching event, segment by segment.
    fn next_indexed<T>(&mut self, make: &mut impl MakeItem<T>) -> Option<Result<Result<T>, Switch>> {
        loop {
            let segment = self.segments.get(self.segment_index)?;
            if segment.header.base_position >= self.end {
                return None;
            }
            if !self.loaded {
                let (filter, deleted) = (&self.filter, &self.deleted);
                let matches = |s: &str| filter.matches_stream(s) && (deleted.is_empty() || !deleted.contains(s));
                let (low, end, pending) = (self.low, self.end, &mut self.pending);
                let by_type = if filter.has_stream_condition() { None } else { filter.type_list() };
                let found = segment.lookup(&*self.storage, |index| {
                    pending.clear();
                    match by_type {
                        Some(types) => index.type_entries(types, low, end, pending),
                        None => index.matching_entries(filter.exact_stream(), &matches, low, end, pending),
                    }
                });
                if let Err(error) = found {
                    return Some(Ok(Err(error)));
                }
                self.loaded = true;
                self.taken = 0;
            }
            let Some(entry) = self.pending.get(self.taken).copied() else {
                // The next segment may be read the other way: back to `next`.
                return if self.next_segment() { Some(Err(Switch)) } else { None };
            };
            self.taken += 1;
            if let Err(error) = self.ensure_reader()? {
                return Some(Ok(Err(error)));
            }
            let reader = self.reader.as_ref()?;
            let offset = u64::from(entry.offset);
            let path = &reader.segment().path;
            let (decoded, record) = match reader.read_record(offset, Some(entry.record_bytes)) {
                Ok(read) => read,
                Err(error) => return Some(Ok(Err(error))),
            };
            if decoded.position != entry.position || decoded.kind != RecordKind::Event {
                return Some(Ok(Err(Error::corruption(path, offset, "record differs from its index entry"))));
            }
            self.low = decoded.position + 1;
            if !self.filter.matches_type(field(record, decoded.event_type.clone())) {
                continue;
            }
            match self.matching_event(&decoded, record, reader, offset, make) {
                Some(item) => return Some(Ok(item)),
                None => continue,
            }
        }
    }

    /// The item `make` builds of a record whose type matched: `None` if its stream is deleted
    /// or does not match (an index is only a cache: the record itself decides). Its stream id
    /// and event type are checked as text once, for the filter and the item alike.
    #[inline]
    fn matching_event<T>(
        &self,
        decoded: &DecodedRecord,
        record: &[u8],
        reader: &SegmentReader,
        offset: u64,
        make: &mut impl MakeItem<T>,
    ) -> Option<Result<T>> {
        let corrupt = |reason| Error::corruption(&reader.segment().path, offset, reason);
        let (stream, event_type) = match texts(record, decoded) {
            Ok(texts) => texts,
            Err(reason) => return Some(Err(corrupt(reason))),
        };
        if self.is_deleted(stream) || !self.filter.matches_stream(stream) {
            return None;
        }
        Some(make(decoded, record, reader, offset, stream, event_type).map_err(corrupt))
    }

    /// Scan mode: every record of each segment in order; matching events are returned.
    fn next_scanned<T>(&mut self, make: &mut impl MakeItem<T>) -> Option<Result<Result<T>, Switch>> {
        loop {
            let segment = Arc::clone(self.segments.get(self.segment_index)?);
            if segment.header.base_position >= self.end {
                return None;
            }
            if let Err(error) = self.ensure_reader()? {
                return Some(Ok(Err(error)));
            }
            let offset = match self.offset {
                Some(offset) => offset,
                None => {
                    let low = self.low;
                    // Where to start is only a shortcut: an index that cannot say scans from the top.
                    segment
                        .lookup(&*self.storage, |index| index.scan_start(low))
                        .ok()
                        .flatten()
                        .map_or(SEGMENT_HEADER_BYTES as u64, u64::from)
                }
            };
            let reader = self.reader.as_ref()?;
            if offset >= reader.len() {
                self.stopped_at(offset);
                // The next segment may be read the other way: back to `next`.
                return if self.next_segment() { Some(Err(Switch)) } else { None };
            }
            let (decoded, record) = match reader.read_record(offset, None) {
                Ok(read) => read,
                Err(error) => return Some(Ok(Err(error))),
            };
            self.offset = Some(offset + decoded.record_bytes as u64);
            if decoded.position >= self.end {
                self.stopped_at(offset);
                return None;
            }
            if decoded.position < self.low {
                continue;
            }
            self.low = decoded.position + 1;
            if decoded.kind != RecordKind::Event || !self.filter.matches_type(field(record, decoded.event_type.clone()))
            {
                continue;
            }
            if let Some(item) = self.matching_event(&decoded, record, reader, offset, make) {
                return Some(Ok(item));
            }
        }
    }
}

/// The current segment is done and the iterator moved to the next one.
struct Switch;

/// What the iterator builds of each matching record (checked, its texts validated): an owned
/// event for [`Iterator::next`], a visit of the borrowed view for [`FilteredIter::visit`]. The
/// error is a reason for `Error::Corruption`.
trait MakeItem<T>: FnMut(&DecodedRecord, &[u8], &SegmentReader, u64, &str, &str) -> Result<T, &'static str> {}

impl<T, F> MakeItem<T> for F where
    F: FnMut(&DecodedRecord, &[u8], &SegmentReader, u64, &str, &str) -> Result<T, &'static str>
{
}

impl FilteredIter {
    /// Calls `visit` with every matching event as a borrowed [`EventView`] straight from the
    /// memory map, in position order, with the checks of the iterator and nothing copied or
    /// allocated per event; `visit` returns [`ControlFlow::Break`] to stop early.
    pub(crate) fn visit(mut self, mut visit: impl FnMut(&EventView<'_>) -> ControlFlow<()>) -> Result<()> {
        let mut make =
            |decoded: &DecodedRecord, record: &[u8], _: &SegmentReader, _: u64, stream: &str, event_type: &str| {
                super::to_view_with(decoded, record, stream, event_type).map(|view| visit(&view))
            };
        loop {
            match self.step(&mut make) {
                Some(Ok(ControlFlow::Continue(()))) => {}
                Some(Ok(ControlFlow::Break(()))) | None => return Ok(()),
                Some(Err(error)) => return Err(error),
            }
        }
    }

    /// The next matching record's item, or the error that ends the iteration.
    fn step<T>(&mut self, make: &mut impl MakeItem<T>) -> Option<Result<T>> {
        if self.done {
            return None;
        }
        let item = loop {
            let indexed = *self.indexed.get_or_insert_with(|| {
                let last = self.segment_index + 1 >= self.segments.len();
                let by_index = self.filter.has_stream_condition() || self.filter.type_list().is_some();
                by_index && (!last || self.end - self.low > SCAN_POSITIONS_MAX)
            });
            let step = if indexed { self.next_indexed(make) } else { self.next_scanned(make) };
            match step {
                Some(Err(Switch)) => continue,
                Some(Ok(item)) => break Some(item),
                None => break None,
            }
        };
        match &item {
            Some(Ok(_)) => {}
            Some(Err(_)) => self.done = true,
            None => self.finish(),
        }
        item
    }
}

impl Iterator for FilteredIter {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(&mut |decoded: &DecodedRecord,
                        _: &[u8],
                        reader: &SegmentReader,
                        offset,
                        stream: &str,
                        event_type: &str| {
            super::to_event_with(decoded, reader, offset, stream.to_owned(), event_type.to_owned())
        })
    }
}
