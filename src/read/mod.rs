//! The read path: index lookup, then the record from the segment's memory map, checksum
//! verified, returned as zero-copy `Bytes`. Iterators hold the segment list as it was when they were created
//! (reference-counted handles) and the log's end at creation, so they never see part of a
//! commit group, never block the writer, and keep working while compaction swaps segments.

mod all;
pub(crate) mod filter;
mod filtered;
mod stream;

pub use self::all::AllIter;
pub use self::filter::{FILTER_EVENT_TYPES_MAX, Filter};
pub use self::filtered::FilteredIter;
pub(crate) use self::filtered::Resume;
pub use self::stream::StreamIter;

/// Which way a read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// In increasing version or position order.
    Forward,
    /// In decreasing order.
    Backward,
}

use crate::clock::from_unix_micros;
use crate::event::RecordedEvent;
use crate::format::record::{DecodedRecord, texts};
use crate::segment::SegmentReader;

/// Builds the caller's view of a verified record read by `reader` at `offset`; the error is
/// a reason for `Error::Corruption` (text that is not UTF-8).
pub(crate) fn to_event(
    decoded: &DecodedRecord,
    record: &[u8],
    reader: &SegmentReader,
    offset: u64,
) -> Result<RecordedEvent, &'static str> {
    let (stream_id, event_type) = texts(record, decoded)?;
    to_event_with(decoded, reader, offset, stream_id.to_owned(), event_type.to_owned())
}

/// As [`to_event`], with the record's stream id and event type already checked as text by
/// the caller (a stream read compares the stream id with the one it reads and keeps the
/// last event type, so most records need no UTF-8 check of their own). Always inlined: the
/// replay loops then build the event in place instead of moving it out of a `Result`.
#[inline(always)]
pub(crate) fn to_event_with(
    decoded: &DecodedRecord,
    reader: &SegmentReader,
    offset: u64,
    stream_id: String,
    event_type: String,
) -> Result<RecordedEvent, &'static str> {
    Ok(RecordedEvent {
        stream_id,
        version: decoded.version,
        position: decoded.position,
        event_type,
        data: reader.share(offset, decoded.data.clone()).ok_or("data lies outside the record")?,
        metadata: reader.share(offset, decoded.metadata.clone()).ok_or("metadata lies outside the record")?,
        id: decoded.id,
        correlation_id: decoded.correlation_id,
        causation_id: decoded.causation_id,
        timestamp: from_unix_micros(decoded.timestamp_us),
    })
}

/// The borrowed view of a verified event record (`record`, decoded as `decoded`), its
/// stream id and event type already checked as text; the error is a reason for
/// `Error::Corruption`.
#[inline]
pub(crate) fn to_view_with<'a>(
    decoded: &DecodedRecord,
    record: &'a [u8],
    stream_id: &'a str,
    event_type: &'a str,
) -> Result<crate::EventView<'a>, &'static str> {
    let bytes = |range: std::ops::Range<usize>| record.get(range).ok_or("field lies outside the record");
    Ok(crate::EventView {
        stream_id,
        version: decoded.version,
        position: decoded.position,
        event_type,
        data: bytes(decoded.data.clone())?,
        metadata: bytes(decoded.metadata.clone())?,
        id: decoded.id,
        correlation_id: decoded.correlation_id,
        causation_id: decoded.causation_id,
        timestamp: from_unix_micros(decoded.timestamp_us),
    })
}
