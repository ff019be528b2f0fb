//! Expected-version checks of an append's parts against published state plus the group
//! being assembled, and recognising a retried append (same event ids) as already done.
//!
//! A part whose events all carry ids is a retry when:
//! - under `NoStream` / `Exact(v)` whose check fails: versions `v + 1 ..= v + n` hold these
//!   ids in order (the events the original append wrote, whatever came after them);
//! - under `Any` / `StreamExists` whose check passes: the stream's `n` most recent events
//!   hold these ids in order. If only some of the ids are among those `n` events, the part
//!   is refused with `WrongExpectedVersion` (neither a retry nor a new append: writing it
//!   would store an id twice). Ids further back are not looked at (no id index is kept).
//!
//! Parts without ids (or with some events without ids) are never looked up: their only
//! cost is the `all_ids` flag computed at validation. Events that cannot be read (an I/O
//! error, a damaged record) recognise no retry: the part is checked as a new append (and a
//! warning logged), as the `NoStream`/`Exact` path always did.

use std::sync::Arc;

use super::Writer;
use crate::error::Error;
use crate::event::{AppendResult, ExpectedVersion};
use crate::index::streams::StreamState;
use crate::read::{Direction, StreamIter};
use crate::validate::WritePart;

/// Outcome of checking one part's expected version.
pub(super) enum Check {
    Proceed(Option<u64>),
    Idempotent(AppendResult),
    Fail(Error),
}

impl Writer {
    /// The stream's state including this group's unpublished changes.
    pub(super) fn current_state(&self, stream: &str) -> StreamState {
        self.group.overlay.get(stream).copied().or_else(|| self.shared.stream_state(stream)).unwrap_or_default()
    }

    pub(super) fn check_parts(&self, parts: &[WritePart]) -> Vec<Check> {
        parts.iter().map(|part| self.check_part(part)).collect()
    }

    fn check_part(&self, part: &WritePart) -> Check {
        let state = self.current_state(&part.stream);
        if state.deleted {
            return Check::Fail(Error::StreamDeleted { stream: part.stream.to_string() });
        }
        let actual = state.last_version;
        let ok = match part.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(v) => actual == Some(v),
        };
        if ok {
            return match actual {
                Some(last) if self.may_repeat_recent(part) => self.check_recent(part, last),
                _ => Check::Proceed(actual),
            };
        }
        let first_version = match part.expected {
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(v) => v.checked_add(1),
            ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
        };
        if let Some(first_version) = first_version
            && !part.tombstone
            && let Some(result) = self.already_appended(part, first_version)
        {
            return Check::Idempotent(result);
        }
        Check::Fail(Error::WrongExpectedVersion { stream: part.stream.to_string(), expected: part.expected, actual })
    }

    /// Whether `part` is checked against the stream's most recent events (see the module
    /// docs): every event has an id and the expected version does not pin a position.
    pub(super) fn may_repeat_recent(&self, part: &WritePart) -> bool {
        part.all_ids && !part.tombstone && matches!(part.expected, ExpectedVersion::Any | ExpectedVersion::StreamExists)
    }

    /// Compares `part`'s ids with the `n` most recent published events of its stream (last
    /// version `last`): all equal in order is a retry, some shared is a conflict, none is a
    /// new append. The caller has committed any group holding events of this stream.
    fn check_recent(&self, part: &WritePart, last: u64) -> Check {
        let count = part.events.len() as u64;
        let first_version = last.saturating_sub(count.saturating_sub(1));
        let unreadable = |error: Error| {
            // As for NoStream/Exact retries: events that cannot be read prove no retry, and
            // an error here must not look like a failed write (callers take `Io` from an
            // append for one, after which the store is poisoned): append as new, and say so.
            tracing::warn!(%error, stream = &*part.stream, "could not read the stream's recent events to recognise a retry; appending as new");
            Check::Proceed(Some(last))
        };
        let stored = match StreamIter::new(
            Arc::clone(&self.shared),
            &part.stream,
            first_version,
            Some(last),
            Direction::Forward,
        ) {
            Ok(stored) => stored,
            Err(error) => return unreadable(error),
        };
        // Bounded by the part's own event count (the versions read span at most `count`).
        let mut recent: Vec<(u64, u128, u64)> = Vec::with_capacity(part.events.len());
        for event in stored {
            match event {
                Ok(event) => recent.push((event.version, event.id, event.position)),
                Err(error) => return unreadable(error),
            }
        }
        let same =
            recent.len() == part.events.len()
                && recent.iter().zip(&part.events).enumerate().all(|(i, ((version, id, _), event))| {
                    *version == first_version + i as u64 && event.id == Some(*id)
                });
        if same && let (Some(first), Some(last_event)) = (recent.first(), recent.last()) {
            return Check::Idempotent(AppendResult {
                first_version: first.0,
                last_version: last_event.0,
                first_position: first.2,
                last_position: last_event.2,
            });
        }
        let mut recent_ids: Vec<u128> = recent.iter().map(|(_, id, _)| *id).collect();
        recent_ids.sort_unstable();
        if part.events.iter().any(|e| e.id.is_some_and(|id| recent_ids.binary_search(&id).is_ok())) {
            return Check::Fail(Error::WrongExpectedVersion {
                stream: part.stream.to_string(),
                expected: part.expected,
                actual: Some(last),
            });
        }
        Check::Proceed(Some(last))
    }

    /// If the stream already holds exactly these events (by id) from `first_version` on,
    /// what appending them returned.
    fn already_appended(&self, part: &WritePart, first_version: u64) -> Option<AppendResult> {
        let ids: Option<Vec<u128>> = part.events.iter().map(|e| e.id).collect();
        let ids = ids?;
        let count = ids.len() as u64;
        let last_version = first_version.checked_add(count - 1)?;
        if self.shared.stream_state(&part.stream)?.last_version? < last_version {
            return None;
        }
        let stored = StreamIter::new(
            Arc::clone(&self.shared),
            &part.stream,
            first_version,
            Some(last_version),
            Direction::Forward,
        )
        .ok()?;
        let mut result = AppendResult { first_version, last_version, first_position: 0, last_position: 0 };
        let mut seen = 0u64;
        for (event, id) in stored.zip(&ids) {
            let event = event.ok()?;
            if event.id != *id || event.version != first_version + seen {
                return None;
            }
            if seen == 0 {
                result.first_position = event.position;
            }
            result.last_position = event.position;
            seen += 1;
        }
        (seen == count).then_some(result)
    }
}
