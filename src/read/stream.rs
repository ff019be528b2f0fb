//! Reading one stream, forward or backward.

use std::sync::Arc;

use super::Direction;
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::format::record::{RecordKind, field};
use crate::index::IndexEntry;
use crate::segment::{Segment, SegmentReader};
use crate::shared::{SegmentList, Shared};
use crate::storage::Storage;

/// The events of one stream in version order (or reverse), from
/// [`Store::read_stream`](crate::Store::read_stream) or
/// [`Store::read_stream_backward`](crate::Store::read_stream_backward).
///
/// Sees the stream as it was when the iterator was created. Each item is checked against
/// its checksum and the index; a mismatch yields `Error::Corruption` and ends the iteration.
///
/// ```
/// use chronicle::{ExpectedVersion, NewEvent, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("s", ExpectedVersion::Any, [NewEvent::new("A", "1"), NewEvent::new("B", "2")])?;
/// let types: Vec<String> = store.read_stream("s", 0)?.map(|e| e.map(|e| e.event_type)).collect::<Result<_, _>>()?;
/// assert_eq!(types, ["A", "B"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct StreamIter {
    segments: SegmentList,
    /// Where damaged index files are rebuilt.
    storage: Arc<dyn Storage>,
    stream: Arc<str>,
    low: u64,
    high: u64,
    backward: bool,
    segments_visited: usize,
    reader: Option<SegmentReader>,
    pending: Vec<IndexEntry>,
    /// Version of the last event returned: each next one must be above it (forward) or
    /// below it (backward), whatever the index files say.
    last_version: Option<u64>,
    /// Event type of the last event returned: a record of the same type (byte for byte)
    /// needs no UTF-8 check of its own.
    last_event_type: String,
    done: bool,
}

impl StreamIter {
    /// Events of `stream` with versions in `[from, to]` (forward) or `[0, from]` walked
    /// downward (backward; `from = None` is the last version).
    pub(crate) fn new(
        shared: Arc<Shared>,
        stream: &str,
        from: u64,
        to: Option<u64>,
        direction: Direction,
    ) -> Result<Self> {
        let backward = direction == Direction::Backward;
        crate::validate::stream_id(stream)?;
        let state = shared.stream_state(stream);
        if state.is_some_and(|s| s.deleted) {
            return Err(Error::StreamDeleted { stream: stream.to_owned() });
        }
        let last = state.and_then(|s| s.last_version);
        let (low, high, done) = match (last, backward) {
            (None, _) => (0, 0, true),
            (Some(last), false) => (from, to.unwrap_or(last).min(last), from > last),
            (Some(last), true) => (0, from.min(last), false),
        };
        Ok(StreamIter {
            segments: shared.segments(),
            storage: Arc::clone(&shared.storage),
            stream: Arc::from(stream),
            low,
            high,
            backward,
            segments_visited: 0,
            reader: None,
            pending: Vec::new(),
            last_version: None,
            last_event_type: String::new(),
            done: done || low > high,
        })
    }

    fn next_segment(&mut self) -> Option<Arc<Segment>> {
        let count = self.segments.len();
        let index = if self.backward { count.checked_sub(self.segments_visited + 1)? } else { self.segments_visited };
        self.segments_visited += 1;
        self.segments.get(index).cloned()
    }

    fn read(&mut self, reader: &SegmentReader, entry: IndexEntry) -> Result<RecordedEvent> {
        let segment = reader.segment();
        let (decoded, record) = reader.read_record(u64::from(entry.offset), Some(entry.record_bytes))?;
        if decoded.kind != RecordKind::Event
            || decoded.version != entry.version
            || decoded.position != entry.position
            || field(record, decoded.stream_id.clone()) != self.stream.as_bytes()
        {
            return Err(Error::corruption(
                &segment.path,
                u64::from(entry.offset),
                "record does not match its index entry",
            ));
        }
        // Within a segment the index keeps versions in order; across segments only the
        // records themselves can say, and two records of one version mean a damaged store.
        let in_order = self
            .last_version
            .is_none_or(|last| if self.backward { decoded.version < last } else { decoded.version > last });
        if !in_order {
            return Err(Error::corruption(
                &segment.path,
                u64::from(entry.offset),
                format!("stream {} has version {} twice or out of order", self.stream, decoded.version),
            ));
        }
        let corrupt = |reason| Error::corruption(&segment.path, u64::from(entry.offset), reason);
        let event_type = field(record, decoded.event_type.clone());
        if event_type != self.last_event_type.as_bytes() {
            let text = std::str::from_utf8(event_type).map_err(|_| corrupt("event type is not UTF-8"))?;
            self.last_event_type = text.to_owned();
        }
        // The stream id matched `self.stream` byte for byte above.
        let stream_id = String::from(&*self.stream);
        super::to_event_with(&decoded, reader, u64::from(entry.offset), stream_id, self.last_event_type.clone())
            .map_err(corrupt)
    }
}

impl Iterator for StreamIter {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if let Some(entry) = self.pending.pop() {
                // Taken out for the read, which also updates the iterator.
                let Some(reader) = self.reader.take() else { break };
                let result = self.read(&reader, entry);
                self.reader = Some(reader);
                match &result {
                    Ok(event) => self.last_version = Some(event.version),
                    Err(_) => self.done = true,
                }
                return Some(result);
            }
            let Some(segment) = self.next_segment() else { break };
            let (stream, low, high, pending) = (&self.stream, self.low, self.high, &mut self.pending);
            let found = segment.lookup(&*self.storage, |index| {
                pending.clear();
                index.stream_entries(stream, low, high, pending)
            });
            if let Err(error) = found {
                self.done = true;
                return Some(Err(error));
            }
            // `pending` is consumed from its end.
            if !self.backward {
                self.pending.reverse();
            }
            if !self.pending.is_empty() {
                match segment.reader() {
                    Ok(reader) => self.reader = Some(reader),
                    Err(error) => {
                        self.done = true;
                        return Some(Err(error));
                    }
                }
            }
        }
        self.done = true;
        None
    }
}
