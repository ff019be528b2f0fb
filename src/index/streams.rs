//! The stream table: every stream's last version and whether it is deleted. Held in memory
//! (proportional to streams, not events), rebuilt on open from the index files' stream
//! sections and the scanned tail, updated by the writer thread after each commit.

use std::collections::HashMap;
use std::sync::Arc;

/// What the store knows of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct StreamState {
    /// Version of the stream's last event; `None` if it has none.
    pub(crate) last_version: Option<u64>,
    /// The stream has a tombstone.
    pub(crate) deleted: bool,
}

impl StreamState {
    /// Folds in what a later (or any) segment says of the stream.
    pub(crate) fn merge(&mut self, last_version: Option<u64>, deleted: bool) {
        self.last_version = self.last_version.max(last_version);
        self.deleted |= deleted;
    }
}

/// Stream id to state.
pub(crate) type StreamTable = HashMap<Arc<str>, StreamState>;
