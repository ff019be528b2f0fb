//! Which events a command or HTTP request selects, and reading them from the store in
//! bounded steps. `Source` is where new events come from: it polls the read-only store.
//!
//! Why a poll and not a subscription: the CLI opens the store read-only, beside a writer in
//! another process, and nothing in this process is told of that writer's commits (a
//! read-only subscription would itself re-read the directory every 10 ms). So `Source`
//! polls with a backoff: every [`POLL_INTERVAL_MIN`] while events arrive, doubling while
//! none do up to [`POLL_INTERVAL_MAX`], so an idle `tail --follow` or SSE stream costs a
//! couple of refreshes a second and a new event after a quiet spell shows within 0.5 s.

use std::sync::atomic::{AtomicBool, Ordering};
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

/// The polling interval of a [`Source`] right after events arrived.
pub(crate) const POLL_INTERVAL_MIN: Duration = Duration::from_millis(20);
/// The longest polling interval of a [`Source`], reached after a quiet spell.
pub(crate) const POLL_INTERVAL_MAX: Duration = Duration::from_millis(500);

/// Set once the process is shutting down (Ctrl-C): followers of the log end at their next
/// poll, at most [`POLL_INTERVAL_MAX`] later.
pub(crate) static STOPPING: AtomicBool = AtomicBool::new(false);

pub(crate) fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// New committed events, in order: polls the read-only store, waiting `interval` after a
/// poll that found nothing (see the module's comment for the backoff).
pub(crate) struct Source {
    store: Store,
    filter: Filter,
    next: u64,
    pub(crate) interval: Duration,
}

impl Source {
    pub(crate) fn new(store: Store, filter: Filter, from: u64) -> Self {
        Source { store, filter, next: from, interval: POLL_INTERVAL_MIN }
    }

    /// The next matching events (at most `limit`); empty when none arrived yet, and then
    /// `interval` doubles (up to [`POLL_INTERVAL_MAX`]); events reset it.
    pub(crate) fn poll(&mut self, limit: usize) -> chronicle::Result<Vec<RecordedEvent>> {
        self.store.refresh()?;
        let (events, next) = read_matching(&self.store, &self.filter, self.next, limit, 100_000)?;
        // A scan that moved on without a match (other events committed) counts as activity.
        let moved = next != self.next;
        self.next = next;
        self.interval = if moved { POLL_INTERVAL_MIN } else { (self.interval * 2).min(POLL_INTERVAL_MAX) };
        Ok(events)
    }
}
