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
use crate::format::record::{DecodedRecord, text};

/// Builds the caller's view of a verified record.
pub(crate) fn to_event(decoded: &DecodedRecord, record: &Bytes) -> RecordedEvent {
    RecordedEvent {
        stream_id: text(record, decoded.stream_id.clone()).to_owned(),
        version: decoded.version,
        position: decoded.position,
        event_type: text(record, decoded.event_type.clone()).to_owned(),
        data: record.slice(decoded.data.clone()),
        metadata: record.slice(decoded.metadata.clone()),
        id: decoded.id,
        correlation_id: decoded.correlation_id,
        causation_id: decoded.causation_id,
        timestamp: from_unix_micros(decoded.timestamp_us),
    }
}
