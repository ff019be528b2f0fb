//! Reading the whole log in global position order, forward or backward.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use std::ops::ControlFlow;

use super::Direction;
use crate::event::EventView;
use crate::format::record::{DecodedRecord, RecordKind, field};
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
    /// Positions in `[low, high]` are returned.
    low: u64,
    high: u64,
    /// One past the last position published when the iterator was created.
    end: u64,
    backward: bool,
    /// Reader of the segment at `segment_index`.
    reader: Option<SegmentReader>,
    /// Backward: offsets of the current segment's records still to return.
    backlog: Vec<u64>,
    backlog_ready: bool,
    /// Streams deleted when the iterator was created: their events are skipped.
    deleted: Arc<std::collections::HashSet<Arc<str>>>,
    done: bool,
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
            low,
            high,
            end,
            backward,
            reader: None,
            backlog: Vec::new(),
            backlog_ready: false,
            deleted: shared.deleted_streams(),
            done: end == 0 || low > high,
        }
    }

    fn is_deleted(&self, stream: &str) -> bool {
        !self.deleted.is_empty() && self.deleted.contains(stream)
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

    /// Advances to the next event record to return (position in range, not a tombstone, not
    /// of a deleted stream) and returns its offset in the current reader's segment.
    fn forward_record(&mut self) -> Option<Result<(DecodedRecord, u64)>> {
        loop {
            if let Err(error) = self.ensure_reader()? {
                return Some(Err(error));
            }
            let reader = self.reader.as_ref()?;
            if self.offset >= reader.len() {
                self.segment_index += 1;
                self.offset = SEGMENT_HEADER_BYTES as u64;
                continue;
            }
            let offset = self.offset;
            let (decoded, record) = match reader.read_record(offset, None) {
                Ok(read) => read,
                Err(error) => return Some(Err(error)),
            };
            self.offset += decoded.record_bytes as u64;
            if decoded.position > self.high {
                if self.segment_index + 1 < self.segments.len() {
                    let path = &reader.segment().path;
                    return Some(Err(Error::corruption(path, offset, "record position is past the end of the log")));
                }
                return None;
            }
            if decoded.position < self.low || decoded.kind != RecordKind::Event {
                continue;
            }
            if !self.deleted.is_empty()
                && std::str::from_utf8(field(record, decoded.stream_id.clone())).is_ok_and(|s| self.deleted.contains(s))
            {
                continue;
            }
            return Some(Ok((decoded, offset)));
        }
    }

    fn forward(&mut self) -> Option<Result<RecordedEvent>> {
        let (decoded, offset) = match self.forward_record()? {
            Ok(found) => found,
            Err(error) => return Some(Err(error)),
        };
        let reader = self.reader.as_ref()?;
        let event = reader
            .record(offset, decoded.record_bytes)
            .ok_or("record lies outside the segment")
            .and_then(|record| super::to_event(&decoded, record, reader, offset))
            .map_err(|reason| Error::corruption(&reader.segment().path, offset, reason));
        Some(event)
    }

    /// Calls `visit` with a borrowed view of each event, forward, until it breaks or the
    /// log ends. See [`Store::read_all_with`](crate::Store::read_all_with).
    pub(crate) fn visit(mut self, mut visit: impl FnMut(&EventView<'_>) -> ControlFlow<()>) -> Result<()> {
        while let Some(found) = self.forward_record() {
            let (decoded, offset) = found?;
            let Some(reader) = self.reader.as_ref() else { break };
            let record = reader.record(offset, decoded.record_bytes);
            let view = record.ok_or("record lies outside the segment").and_then(|r| super::to_view(&decoded, r));
            let view = view.map_err(|reason| Error::corruption(&reader.segment().path, offset, reason))?;
            if visit(&view).is_break() {
                break;
            }
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
                    if decoded.position > self.high {
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
                    if decoded.kind == RecordKind::Event && decoded.position >= self.low {
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
                    Ok(event) if self.is_deleted(&event.stream_id) => continue,
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
