//! Expected-version checks of an append's parts against published state plus the group
//! being assembled, and recognising a retried append (same event ids) as already done.

use std::sync::Arc;

use super::Writer;
use crate::error::Error;
use crate::event::{AppendResult, ExpectedVersion};
use crate::index::streams::StreamState;
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
            return Check::Proceed(actual);
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
        let stored = crate::read::StreamIter::new(
            Arc::clone(&self.shared),
            &part.stream,
            first_version,
            Some(last_version),
            false,
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
