//! Reading one stream, forward or backward: owned events ([`StreamIter`]) or borrowed views
//! ([`StreamIter::visit`]), both through the same checks.

use std::ops::ControlFlow;
use std::sync::Arc;

use super::Direction;
use crate::error::{Error, Result};
use crate::event::{EventView, RecordedEvent};
use crate::format::record::{DecodedRecord, RecordKind, field};
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
    /// The current segment's entries still to read, the next one last.
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

    /// The entry of the next event to read, looking up the next segments' entries (and
    /// taking a reader of the segment) once the current one's are read; `None` at the end.
    /// An error ends the iteration.
    #[inline]
    fn next_entry(&mut self) -> Option<Result<IndexEntry>> {
        // The common case inline: the next entry of the segment being read.
        match self.pending.pop() {
            Some(entry) if !self.done => Some(Ok(entry)),
            _ => self.next_segment_entry(),
        }
    }

    /// [`StreamIter::next_entry`] once the current segment's entries are read.
    fn next_segment_entry(&mut self) -> Option<Result<IndexEntry>> {
        while !self.done {
            if let Some(entry) = self.pending.pop() {
                return Some(Ok(entry));
            }
            if let Err(error) = self.load_segment()? {
                self.done = true;
                return Some(Err(error));
            }
        }
        None
    }

    /// Looks up the stream's entries in the next segment; `None` if there is none.
    fn load_segment(&mut self) -> Option<Result<()>> {
        let segment = self.next_segment()?;
        let (stream, low, high, pending) = (&self.stream, self.low, self.high, &mut self.pending);
        let found = segment.lookup(&*self.storage, |index| {
            pending.clear();
            index.stream_entries(stream, low, high, pending)
        });
        if let Err(error) = found {
            return Some(Err(error));
        }
        // `pending` is consumed from its end.
        if !self.backward {
            self.pending.reverse();
        }
        self.reader = None;
        if !self.pending.is_empty() {
            match segment.reader() {
                Ok(reader) => self.reader = Some(reader),
                Err(error) => return Some(Err(error)),
            }
        }
        Some(Ok(()))
    }

    /// Calls `visit` with a borrowed view of each event until it breaks or the stream ends.
    /// See [`Store::read_stream_with`](crate::Store::read_stream_with).
    pub(crate) fn visit(mut self, mut visit: impl FnMut(&EventView<'_>) -> ControlFlow<()>) -> Result<()> {
        while let Some(entry) = self.next_entry() {
            let entry = entry?;
            let Some(reader) = &self.reader else { break };
            let (decoded, record) = verified_record(reader, entry, &self.stream, self.last_version, self.backward)?;
            remember_event_type(&mut self.last_event_type, field(record, decoded.event_type.clone()), reader, entry)?;
            self.last_version = Some(decoded.version);
            // Both texts equal the record's bytes: the stream id was compared with the one
            // asked for, the event type is the one `remember_event_type` checked.
            let view = super::to_view_with(&decoded, record, &self.stream, &self.last_event_type)
                .map_err(|reason| Error::corruption(&reader.segment().path, u64::from(entry.offset), reason))?;
            if visit(&view).is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// The owned event of `entry`, read through `reader` and checked as [`verified_record`]
/// says; `last_event_type` as [`remember_event_type`] keeps it.
#[inline]
fn owned_event(
    reader: &SegmentReader,
    entry: IndexEntry,
    stream: &str,
    last_event_type: &mut String,
    last_version: Option<u64>,
    backward: bool,
) -> Result<RecordedEvent> {
    let (decoded, record) = verified_record(reader, entry, stream, last_version, backward)?;
    remember_event_type(last_event_type, field(record, decoded.event_type.clone()), reader, entry)?;
    // The stream id matched `stream` byte for byte.
    super::to_event_with(&decoded, reader, u64::from(entry.offset), String::from(stream), last_event_type.clone())
        .map_err(|reason| Error::corruption(&reader.segment().path, u64::from(entry.offset), reason))
}

/// Reads and verifies the record of `entry` through `reader` and checks it against the
/// entry and the stream read (`stream`, whose last version returned is `last_version`,
/// read `backward` or not).
#[inline]
fn verified_record<'r>(
    reader: &'r SegmentReader,
    entry: IndexEntry,
    stream: &str,
    last_version: Option<u64>,
    backward: bool,
) -> Result<(DecodedRecord, &'r [u8])> {
    let offset = u64::from(entry.offset);
    let (decoded, record) = reader.read_record(offset, Some(entry.record_bytes))?;
    let path = &reader.segment().path;
    if decoded.kind != RecordKind::Event
        || decoded.version != entry.version
        || decoded.position != entry.position
        || field(record, decoded.stream_id.clone()) != stream.as_bytes()
    {
        return Err(Error::corruption(path, offset, "record does not match its index entry"));
    }
    // Within a segment the index keeps versions in order; across segments only the
    // records themselves can say, and two records of one version mean a damaged store.
    let in_order =
        last_version.is_none_or(|last| if backward { decoded.version < last } else { decoded.version > last });
    if !in_order {
        return Err(Error::corruption(
            path,
            offset,
            format!("stream {stream} has version {} twice or out of order", decoded.version),
        ));
    }
    Ok((decoded, record))
}

/// Makes `last` the event type `bytes` of the record of `entry`, checked as UTF-8 unless it
/// is the same as the last one byte for byte.
#[inline]
fn remember_event_type(last: &mut String, bytes: &[u8], reader: &SegmentReader, entry: IndexEntry) -> Result<()> {
    if bytes != last.as_bytes() {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            Error::corruption(&reader.segment().path, u64::from(entry.offset), "event type is not UTF-8")
        })?;
        text.clone_into(last);
    }
    Ok(())
}

impl Iterator for StreamIter {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = match self.next_entry()? {
            Ok(entry) => entry,
            Err(error) => return Some(Err(error)),
        };
        let Some(reader) = &self.reader else {
            // Entries are only pending with a reader of their segment.
            self.done = true;
            return None;
        };
        let result =
            owned_event(reader, entry, &self.stream, &mut self.last_event_type, self.last_version, self.backward);
        match &result {
            Ok(event) => self.last_version = Some(event.version),
            Err(_) => self.done = true,
        }
        Some(result)
    }
}
