//! Checks a caller's append against the limits, on the caller's thread, before anything
//! reaches the writer. Every rejection is `Error::InvalidInput` saying what is wrong.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::event::{ExpectedVersion, NewEvent};
use crate::format::record::encoded_len;
use crate::options::{BATCH_EVENTS_MAX, EVENT_TYPE_BYTES_MAX, Options, STREAM_ID_BYTES_MAX};

/// One stream's part of a validated append.
#[derive(Debug)]
pub(crate) struct WritePart {
    pub(crate) stream: Arc<str>,
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: Vec<NewEvent>,
    /// Write a tombstone instead of events.
    pub(crate) tombstone: bool,
    /// Every event carries a caller-given id, so the append may be a retry (computed once
    /// here, so appends without ids pay nothing for idempotency checks in the writer).
    pub(crate) all_ids: bool,
    pub(crate) encoded_bytes: usize,
}

/// Checks a stream id.
pub(crate) fn stream_id(stream: &str) -> Result<()> {
    if stream.is_empty() {
        return Err(Error::invalid("stream id is empty"));
    }
    if stream.len() > STREAM_ID_BYTES_MAX {
        return Err(Error::invalid(format!(
            "stream id is {} bytes, above the limit of {STREAM_ID_BYTES_MAX} bytes",
            stream.len()
        )));
    }
    Ok(())
}

/// Validates one stream's events and measures their encoding.
pub(crate) fn events_part(
    options: &Options,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<WritePart> {
    let encoded_bytes = events_bytes(options, stream, &events)?;
    let all_ids = events.iter().all(|e| e.id.is_some());
    Ok(WritePart { stream: Arc::from(stream), expected, events, tombstone: false, all_ids, encoded_bytes })
}

/// Checks one stream's events against the limits; returns their encoded size.
pub(crate) fn events_bytes(options: &Options, stream: &str, events: &[NewEvent]) -> Result<usize> {
    stream_id(stream)?;
    if events.is_empty() {
        return Err(Error::invalid(format!("append to stream {stream:?} has no events")));
    }
    if events.len() > BATCH_EVENTS_MAX {
        return Err(Error::invalid(format!(
            "append to stream {stream:?} has {} events, above the limit of {BATCH_EVENTS_MAX}",
            events.len()
        )));
    }
    let event_limit = options.effective_event_bytes_max();
    let mut encoded_bytes = 0usize;
    for (i, event) in events.iter().enumerate() {
        if event.event_type.is_empty() {
            return Err(Error::invalid(format!("event {i} of stream {stream:?} has an empty event type")));
        }
        if event.event_type.len() > EVENT_TYPE_BYTES_MAX {
            return Err(Error::invalid(format!(
                "event {i} of stream {stream:?} has an event type of {} bytes, above the limit of {EVENT_TYPE_BYTES_MAX}",
                event.event_type.len()
            )));
        }
        let len = encoded_len(
            stream.len(),
            event.event_type.len(),
            event.metadata.len(),
            event.data.len(),
            event.correlation_id.is_some(),
            event.causation_id.is_some(),
        );
        if len > event_limit {
            return Err(Error::invalid(format!(
                "event {i} of stream {stream:?} encodes to {len} bytes, above event_bytes_max ({event_limit} bytes)"
            )));
        }
        encoded_bytes += len;
    }
    Ok(encoded_bytes)
}

/// A tombstone part.
pub(crate) fn tombstone_part(stream: &str, expected: ExpectedVersion) -> Result<WritePart> {
    stream_id(stream)?;
    Ok(WritePart {
        stream: Arc::from(stream),
        expected,
        events: Vec::new(),
        tombstone: true,
        all_ids: false,
        encoded_bytes: encoded_len(stream.len(), 0, 0, 0, false, false),
    })
}

/// Checks the whole append (all parts) against the batch limit and for duplicate streams.
pub(crate) fn batch(options: &Options, parts: &[WritePart]) -> Result<()> {
    batch_totals(options, parts.iter().map(|p| (&*p.stream, p.encoded_bytes, p.events.len())))
}

/// [`batch`] over `(stream, encoded bytes, events)` of each part.
pub(crate) fn batch_totals<'a>(
    options: &Options,
    parts: impl Iterator<Item = (&'a str, usize, usize)> + Clone,
) -> Result<()> {
    let total: usize = parts.clone().map(|(_, bytes, _)| bytes).sum();
    let limit = options.effective_batch_bytes_max();
    if total > limit {
        return Err(Error::invalid(format!("append encodes to {total} bytes, above batch_bytes_max ({limit} bytes)")));
    }
    let events: usize = parts.clone().map(|(_, _, events)| events).sum();
    if events > BATCH_EVENTS_MAX {
        return Err(Error::invalid(format!("append has {events} events, above the limit of {BATCH_EVENTS_MAX}")));
    }
    let mut streams: Vec<&str> = parts.map(|(stream, _, _)| stream).collect();
    streams.sort_unstable();
    if let Some(pair) = streams.windows(2).find(|pair| pair.first() == pair.get(1)) {
        return Err(Error::invalid(format!(
            "stream {:?} appears twice in one append_multi",
            pair.first().copied().unwrap_or_default()
        )));
    }
    Ok(())
}
