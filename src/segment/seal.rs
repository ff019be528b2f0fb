//! Writing a segment's index file when it is sealed (or, for the active segment, at close), and switching
//! the segment to the mapped index.

use crate::format::segment_header::SEGMENT_HEADER_BYTES;
use crate::index::SegmentIndex;
use crate::index::file;
use crate::layout;
use crate::storage::Storage;
use crate::sync;

use super::Segment;

impl Segment {
    /// Writes the index file of this segment covering its first `covered_bytes` bytes and switches
    /// the segment to the mapped index. Failures are logged, not returned: the index is derived
    /// data and the next open rebuilds what is missing.
    pub(crate) fn write_index_file(&self, storage: &dyn Storage, covered_bytes: u64) {
        if self.cache.read_only {
            // A read-only store keeps the index it built in memory.
            return;
        }
        let Some(index) = self.loaded_index() else { return };
        let SegmentIndex::Active(mem) = &*index else { return };
        let bytes = {
            let mem = sync::read(mem);
            file::encode(&mem, self.id(), covered_bytes)
        };
        let path = layout::index_path_for(&self.path);
        match file::write(storage, &path, &bytes).and_then(|()| file::load(storage, &path, self.id())) {
            Ok(loaded) => match loaded {
                Ok(mapped) => self.set_index(SegmentIndex::Sealed(mapped)),
                Err(reason) => {
                    tracing::warn!(path = %path.display(), reason, "index file reads back invalid; keeping the in-memory index")
                }
            },
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "could not write index file; it will be rebuilt on open")
            }
        }
        // Only the active segment's index file may cover less than the segment; SEGMENT_HEADER_BYTES
        // is the smallest valid covered length.
        debug_assert!(covered_bytes >= SEGMENT_HEADER_BYTES as u64);
    }

    /// Writes the index file of the active segment covering its first `covered_bytes` bytes,
    /// which must be durable and exactly what its in-memory index holds, and keeps the
    /// in-memory index (appends go on). An open after a crash then scans only what follows
    /// `covered_bytes` and rewrites nothing before it (segment-format.md §5 step 7). Returns
    /// whether the file was written; failures are logged (derived data, the next open
    /// rescans what no index file covers).
    pub(crate) fn write_active_index_file(&self, storage: &dyn Storage, covered_bytes: u64) -> bool {
        if self.cache.read_only {
            return false;
        }
        let Some(index) = self.loaded_index() else { return false };
        let SegmentIndex::Active(mem) = &*index else { return false };
        let bytes = {
            let mem = sync::read(mem);
            file::encode(&mem, self.id(), covered_bytes)
        };
        let path = layout::index_path_for(&self.path);
        match file::write(storage, &path, &bytes) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "could not write the active segment's index file");
                false
            }
        }
    }
}
