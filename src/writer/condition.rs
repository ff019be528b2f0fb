//! Conditional appends ("dynamic consistency boundary"): an append that commits only if
//! no event matching a filter was committed after a given position.
//!
//! The check runs on the writer, inside its critical section, against the published log
//! (a filtered read from the condition's position) and against the records of the commit
//! group being assembled (decoded from the group's own buffer), so a racing append that
//! would make the condition false is either already visible to the check or ordered after
//! this append — two racing conditional appends cannot both succeed.

use super::Writer;
use crate::error::{Error, Result};
use crate::format::record::{self, RecordKind, field};
use crate::read::{Filter, FilteredIter};

/// The condition of [`Store::append_if`](crate::Store::append_if): no event matching
/// `filter` may have been committed after `after_position` (with `None`: no matching
/// event may exist at all). Typically `after_position` is the position of the last event
/// a decision was based on, read with the same filter.
///
/// Events of deleted streams and events discarded by retention no longer count.
///
/// ```
/// use chronicle::{AppendCondition, Filter};
/// let condition = AppendCondition::new(Filter::category("seat").with_event_types(["SeatBooked"]), Some(41));
/// # let _ = condition;
/// ```
#[derive(Debug, Clone)]
pub struct AppendCondition {
    /// The events that would make the decision stale.
    pub filter: Filter,
    /// The position up to which the caller has seen them; `None`: none may exist.
    pub after_position: Option<u64>,
}

impl AppendCondition {
    /// The condition "no event matching `filter` after `after_position`".
    ///
    /// ```
    /// let c = chronicle::AppendCondition::new(chronicle::Filter::stream("a"), None);
    /// assert_eq!(c.after_position, None);
    /// ```
    pub fn new(filter: Filter, after_position: Option<u64>) -> Self {
        AppendCondition { filter, after_position }
    }

    fn failed(&self, position: u64, stream: &[u8], event_type: &[u8]) -> Error {
        Error::ConditionFailed {
            position,
            stream: String::from_utf8_lossy(stream).into_owned(),
            event_type: String::from_utf8_lossy(event_type).into_owned(),
            after: self.after_position,
        }
    }
}

impl Writer {
    /// [`Error::ConditionFailed`] naming the first event, committed or in the group being
    /// assembled, that matches the condition's filter after its position.
    pub(super) fn check_condition(&self, condition: &AppendCondition) -> Result<()> {
        let from = condition.after_position.map_or(0, |p| p.saturating_add(1));
        let filter = condition.filter.clone();
        // A stream deleted by a tombstone earlier in this group is deleted for the check
        // too, though the published stream table does not say so yet (under group commit or
        // coalesced writes the deletion and this append share a group).
        let deleted_in_group: Vec<&str> =
            self.group.entries.iter().filter(|e| e.tombstone).map(|e| &*e.stream).collect();
        let deleted = |stream: &str| deleted_in_group.contains(&stream);
        for found in FilteredIter::new(&self.shared, from, None, filter) {
            let event = found?;
            if deleted(&event.stream_id) {
                continue;
            }
            return Err(condition.failed(event.position, event.stream_id.as_bytes(), event.event_type.as_bytes()));
        }
        // The group's own records: not published yet, so decoded from its buffer.
        for entry in self.group.entries.iter().filter(|e| !e.tombstone && e.entry.position >= from) {
            if !condition.filter.matches_stream(&entry.stream) || deleted(&entry.stream) {
                continue;
            }
            let start = (u64::from(entry.entry.offset) - self.write_offset) as usize;
            let bytes = self.group.buf.get(start..).unwrap_or_default();
            let decoded = record::decode(bytes, self.active.id(), record::RECORD_BYTES_MAX)
                .map_err(|_| Error::internal("a record of the commit group does not decode"))?;
            let record = bytes.get(..decoded.record_bytes).unwrap_or_default();
            let event_type = field(record, decoded.event_type.clone());
            if decoded.kind == RecordKind::Event && condition.filter.matches_type(event_type) {
                return Err(condition.failed(decoded.position, entry.stream.as_bytes(), event_type));
            }
        }
        Ok(())
    }
}
