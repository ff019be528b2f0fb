//! Which events a command or HTTP request selects, and reading them from the store in
//! bounded steps. `Source` is where new events come from; today it polls the read-only store,
//! and a subscription can take its place without changing its callers.

use std::time::Duration;

use chronicle::{RecordedEvent, Store};

/// Conditions on an event; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub(crate) stream: Option<String>,
    pub(crate) event_type: Option<String>,
    /// The stream's category: its id up to the first `-`.
    pub(crate) category: Option<String>,
    pub(crate) stream_prefix: Option<String>,
}

/// The category of a stream id: up to its first `-` (the whole id without one).
pub(crate) fn category(stream: &str) -> &str {
    stream.split_once('-').map_or(stream, |(c, _)| c)
}

impl Filter {
    pub(crate) fn matches(&self, e: &RecordedEvent) -> bool {
        self.stream.as_ref().is_none_or(|s| *s == e.stream_id)
            && self.event_type.as_ref().is_none_or(|t| *t == e.event_type)
            && self.category.as_ref().is_none_or(|c| c == category(&e.stream_id))
            && self.stream_prefix.as_ref().is_none_or(|p| e.stream_id.starts_with(p.as_str()))
    }
}

/// Reads matching events from `from` on: at most `limit` returned and `scan_max` looked at.
/// Returns them and the position to continue from.
pub(crate) fn read_matching(
    store: &Store,
    filter: &Filter,
    from: u64,
    limit: usize,
    scan_max: usize,
) -> chronicle::Result<(Vec<RecordedEvent>, u64)> {
    let mut out = Vec::new();
    let mut next = from;
    if let Some(stream) = &filter.stream {
        // One stream: its index, not the whole log.
        let iter = match store.read_stream(stream, 0) {
            Ok(iter) => iter,
            Err(chronicle::Error::StreamDeleted { .. }) => return Ok((out, next)),
            Err(error) => return Err(error),
        };
        for event in iter.take(scan_max) {
            let event = event?;
            if event.position < from {
                continue;
            }
            next = event.position + 1;
            if filter.matches(&event) {
                out.push(event);
                if out.len() >= limit {
                    break;
                }
            }
        }
        return Ok((out, next));
    }
    for event in store.read_all(from)?.take(scan_max) {
        let event = event?;
        next = event.position + 1;
        if filter.matches(&event) {
            out.push(event);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok((out, next))
}

/// New committed events, in order: polls the read-only store every `interval`.
pub(crate) struct Source {
    store: Store,
    filter: Filter,
    next: u64,
    pub(crate) interval: Duration,
}

impl Source {
    pub(crate) fn new(store: Store, filter: Filter, from: u64) -> Self {
        Source { store, filter, next: from, interval: Duration::from_millis(50) }
    }

    /// The next matching events (at most `limit`); empty when none arrived yet.
    pub(crate) fn poll(&mut self, limit: usize) -> chronicle::Result<Vec<RecordedEvent>> {
        self.store.refresh()?;
        let (events, next) = read_matching(&self.store, &self.filter, self.next, limit, 100_000)?;
        self.next = next;
        Ok(events)
    }
}
