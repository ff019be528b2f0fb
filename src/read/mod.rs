//! The read path: index lookup, then the record from the segment's memory map, checksum
//! verified, returned as zero-copy `Bytes`. Iterators hold a snapshot of the segment list
//! (reference-counted handles) and the log's end at creation, so they never see part of a
//! commit group, never block the writer, and keep working while compaction swaps segments.

mod all;
mod stream;

pub use self::all::AllIter;
pub use self::stream::StreamIter;

use bytes::Bytes;

use crate::clock::from_unix_micros;
use crate::event::RecordedEvent;
use crate::format::record::{DecodedRecord, field};

/// Builds the caller's view of a verified record; the error is a reason for
/// `Error::Corruption` (text that is not UTF-8).
pub(crate) fn to_event(decoded: &DecodedRecord, record: &Bytes) -> Result<RecordedEvent, &'static str> {
    let owned_text = |range: std::ops::Range<usize>| String::from_utf8(field(record, range).to_vec());
    let stream_id = owned_text(decoded.stream_id.clone()).map_err(|_| "stream id is not UTF-8")?;
    let event_type = owned_text(decoded.event_type.clone()).map_err(|_| "event type is not UTF-8")?;
    Ok(RecordedEvent {
        stream_id,
        version: decoded.version,
        position: decoded.position,
        event_type,
        data: record.slice(decoded.data.clone()),
        metadata: record.slice(decoded.metadata.clone()),
        id: decoded.id,
        correlation_id: decoded.correlation_id,
        causation_id: decoded.causation_id,
        timestamp: from_unix_micros(decoded.timestamp_us),
    })
}
