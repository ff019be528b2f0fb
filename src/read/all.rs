//! Reading the whole log in global position order, forward or backward.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use std::ops::ControlFlow;

use super::Direction;
use crate::event::EventView;
use crate::format::record::{self, DecodeError, DecodedRecord, RecordKind};
use crate::format::segment_header::SEGMENT_HEADER_BYTES;
use crate::segment::SegmentReader;
use crate::shared::{SegmentList, Shared};

/// Every event of the store in position order (or reverse), from
/// [`Store::read_all`](crate::Store::read_all) or
/// [`Store::read_all_backward`](crate::Store::read_all_backward).
///
/// Sees the log as it was when the iterator was created. Records are checksum-verified as
/// they are read; a failure yields `Error::Corruption` and ends the iteration.
///
/// ```
/// use chronicle::{ExpectedVersion, NewEvent, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("a", ExpectedVersion::Any, [NewEvent::new("A", "")])?;
/// store.append("b", ExpectedVersion::Any, [NewEvent::new("B", "")])?;
/// let positions: Vec<u64> = store.read_all(0)?.map(|e| e.map(|e| e.position)).collect::<Result<_, _>>()?;
/// assert_eq!(positions, [0, 1]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AllIter {
    segments: SegmentList,
    /// Index into `segments` of the segment being read.
    segment_index: usize,
    /// Forward: offset of the next record. Backward: unused.
    offset: u64,
    /// Which records are returned.
    selection: Selection,
    /// One past the last position published when the iterator was created.
    end: u64,
    backward: bool,
    /// Reader of the segment at `segment_index`.
    reader: Option<SegmentReader>,
    /// Backward: offsets of the current segment's records still to return.
    backlog: Vec<u64>,
    backlog_ready: bool,
    done: bool,
}

/// Which records an [`AllIter`] returns: events (not tombstones) at positions in
/// `[low, high]`, of streams not deleted when it was created.
#[derive(Debug)]
struct Selection {
    low: u64,
    high: u64,
    /// Streams deleted when the iterator was created: their events are skipped.
    deleted: Arc<std::collections::HashSet<Arc<str>>>,
}

/// What a forward scan of one segment found next.
// Boxing the event would cost an allocation per event; the value never leaves the inlined
// scan loop, so its size costs nothing.
#[allow(clippy::large_enum_variant)]
enum Next<'r> {
    /// An event to return.
    Event(Found<'r>),
    /// The segment's committed bytes are exhausted: the next segment follows.
    SegmentEnd,
    /// A record past the log's end as the iterator saw it: nothing more to return.
    LogEnd,
}

/// An event record found by a forward scan: checksum verified, its texts checked.
struct Found<'r> {
    /// Where the record starts in its segment.
    offset: u64,
    decoded: DecodedRecord,
    /// The record's bytes.
    record: &'r [u8],
    stream_id: &'r str,
    event_type: &'r str,
}

/// The owned event of `found`, read by `reader` (see [`super::to_event_with`]).
#[inline(always)]
fn owned_event(found: &Found<'_>, reader: &SegmentReader) -> Result<RecordedEvent> {
    let (stream_id, event_type) = (found.stream_id.to_owned(), found.event_type.to_owned());
    super::to_event_with(&found.decoded, reader, found.offset, stream_id, event_type)
        .map_err(|reason| Error::corruption(&reader.segment().path, found.offset, reason))
}

impl Selection {
    #[inline]
    fn is_deleted(&self, stream: &str) -> bool {
        !self.deleted.is_empty() && self.deleted.contains(stream)
    }

    /// Reads `reader`'s records forward from `*offset` (moved past each record read) to
    /// the next one to return. `last_segment` says whether `reader` reads the last segment
    /// of the iterator's list, the only one that may hold positions past its end.
    ///
    /// The one loop over a segment's bytes of both forward APIs: the checksum state is
    /// prepared once per reader, and the stream id and event type are checked as text in
    /// one pass, only for records that are returned or tested for deletion.
    #[inline]
    fn next_in_segment<'r>(&self, reader: &'r SegmentReader, offset: &mut u64, last_segment: bool) -> Result<Next<'r>> {
        let bytes = reader.bytes();
        loop {
            let at = *offset;
            let Some(rest) = usize::try_from(at).ok().and_then(|start| bytes.get(start..)).filter(|r| !r.is_empty())
            else {
                return Ok(Next::SegmentEnd);
            };
            let corruption = |reason: &'static str| Error::corruption(&reader.segment().path, at, reason);
            let decoded =
                record::decode_salted(rest, reader.crc(), record::RECORD_BYTES_MAX).map_err(|error| match error {
                    DecodeError::Incomplete => corruption("record runs past the committed length"),
                    DecodeError::Invalid(reason) => corruption(reason),
                })?;
            // `decode_salted` checked that the record lies inside `rest`.
            let record = rest.get(..decoded.record_bytes).unwrap_or_default();
            *offset = at + decoded.record_bytes as u64;
            if decoded.position > self.high {
                if !last_segment {
                    return Err(corruption("record position is past the end of the log"));
                }
                return Ok(Next::LogEnd);
            }
            if decoded.position < self.low || decoded.kind != RecordKind::Event {
                continue;
            }
            let (stream_id, event_type) = record::texts(record, &decoded).map_err(corruption)?;
            if self.is_deleted(stream_id) {
                continue;
            }
            return Ok(Next::Event(Found { offset: at, decoded, record, stream_id, event_type }));
        }
    }
}

impl AllIter {
    pub(crate) fn new(shared: &Arc<Shared>, from: Option<u64>, direction: Direction) -> Self {
        let backward = direction == Direction::Backward;
        // Segments first: every record of a segment that is not the last of this list was
        // published before `end` is read, so only the last one may hold positions past it.
        let segments = shared.segments();
        let end = shared.next_position();
        let (low, high) = if backward {
            (0, from.unwrap_or(u64::MAX).min(end.saturating_sub(1)))
        } else {
            (from.unwrap_or(0), end.saturating_sub(1))
        };
        let start = if backward { high } else { low };
        let segment_index = segments.partition_point(|s| s.header.base_position <= start).saturating_sub(1);
        let offset = segments
            .get(segment_index)
            // Where to start is only a shortcut: an index that cannot say scans from the top.
            .and_then(|s| s.lookup(&*shared.storage, |index| index.scan_start(start)).ok().flatten())
            .map_or(SEGMENT_HEADER_BYTES as u64, u64::from);
        AllIter {
            segments,
            segment_index,
            offset,
            selection: Selection { low, high, deleted: shared.deleted_streams() },
            end,
            backward,
            reader: None,
            backlog: Vec::new(),
            backlog_ready: false,
            done: end == 0 || low > high,
        }
    }

    /// Makes `self.reader` read the current segment; `None` past the last segment.
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

    /// The next event forward, as an owned `RecordedEvent`.
    #[inline]
    fn forward(&mut self) -> Option<Result<RecordedEvent>> {
        loop {
            // Forward, the reader is dropped at each segment's end: one present is current.
            if self.reader.is_none()
                && let Err(error) = self.ensure_reader()?
            {
                return Some(Err(error));
            }
            let reader = self.reader.as_ref()?;
            let last_segment = self.segment_index + 1 >= self.segments.len();
            match self.selection.next_in_segment(reader, &mut self.offset, last_segment) {
                Ok(Next::Event(found)) => return Some(owned_event(&found, reader)),
                Ok(Next::SegmentEnd) => {
                    self.reader = None;
                    self.segment_index += 1;
                    self.offset = SEGMENT_HEADER_BYTES as u64;
                }
                Ok(Next::LogEnd) => return None,
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// Calls `visit` with a borrowed view of each event, forward, until it breaks or the
    /// log ends. See [`Store::read_all_with`](crate::Store::read_all_with).
    pub(crate) fn visit(mut self, mut visit: impl FnMut(&EventView<'_>) -> ControlFlow<()>) -> Result<()> {
        if self.done {
            return Ok(());
        }
        while let Some(segment) = self.segments.get(self.segment_index) {
            let reader = segment.reader()?;
            let last_segment = self.segment_index + 1 >= self.segments.len();
            loop {
                match self.selection.next_in_segment(&reader, &mut self.offset, last_segment)? {
                    Next::Event(found) => {
                        let view = super::to_view_with(&found.decoded, found.record, found.stream_id, found.event_type)
                            .map_err(|reason| Error::corruption(&reader.segment().path, found.offset, reason))?;
                        if visit(&view).is_break() {
                            return Ok(());
                        }
                    }
                    Next::SegmentEnd => break,
                    Next::LogEnd => return Ok(()),
                }
            }
            self.segment_index += 1;
            self.offset = SEGMENT_HEADER_BYTES as u64;
        }
        Ok(())
    }

    fn backward(&mut self) -> Option<Result<RecordedEvent>> {
        loop {
            if !self.backlog_ready {
                if let Err(error) = self.ensure_reader()? {
                    return Some(Err(error));
                }
                let reader = self.reader.as_ref()?;
                // Records cannot be walked backwards, so list this segment's offsets first.
                let mut offset = SEGMENT_HEADER_BYTES as u64;
                let mut backlog = Vec::new();
                while offset < reader.len() {
                    let (decoded, _) = match reader.read_record(offset, None) {
                        Ok(read) => read,
                        Err(error) => return Some(Err(error)),
                    };
                    if decoded.position > self.selection.high {
                        // Every record of a segment before the last was published before
                        // `end` was read: one past it is damage, as forward reading says.
                        if decoded.position >= self.end && self.segment_index + 1 < self.segments.len() {
                            let path = &reader.segment().path;
                            return Some(Err(Error::corruption(
                                path,
                                offset,
                                "record position is past the end of the log",
                            )));
                        }
                        break;
                    }
                    if decoded.kind == RecordKind::Event && decoded.position >= self.selection.low {
                        backlog.push(offset);
                    }
                    offset += decoded.record_bytes as u64;
                }
                self.backlog = backlog;
                self.backlog_ready = true;
            }
            if let Some(offset) = self.backlog.pop() {
                if let Err(error) = self.ensure_reader()? {
                    return Some(Err(error));
                }
                let reader = self.reader.as_ref()?;
                let path = &reader.segment().path;
                let event = reader.read_record(offset, None).and_then(|(decoded, record)| {
                    super::to_event(&decoded, record, reader, offset)
                        .map_err(|reason| Error::corruption(path, offset, reason))
                });
                match event {
                    Ok(event) if self.selection.is_deleted(&event.stream_id) => continue,
                    event => return Some(event),
                }
            }
            self.segment_index = self.segment_index.checked_sub(1)?;
            self.backlog_ready = false;
        }
    }
}

impl Iterator for AllIter {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = if self.backward { self.backward() } else { self.forward() };
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}
