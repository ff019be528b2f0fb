//! Sealing the active segment and starting the next one.

use std::sync::Arc;

use super::Writer;
use crate::error::{Error, Result};
use crate::format::segment_header::SEGMENT_HEADER_BYTES;
use crate::index::SegmentIndex;
use crate::index::file;
use crate::segment::{Segment, naming};
use crate::storage::Storage;

/// Rolls between two stream-table checkpoints. Writing one costs about 30 bytes per stream
/// (3 MB and a few milliseconds of the writer's time for 100 000 streams), against the
/// 8 segments' worth of data (512 MiB by default) written meanwhile.
const STREAM_CHECKPOINT_ROLLS: u32 = 8;

impl Writer {
    /// Seals the active segment (synced, index written) and makes a new one active.
    pub(super) fn roll(&mut self) -> Result<()> {
        if self.unsynced {
            self.sync_active()?;
        }
        write_index(&*self.shared.storage, &self.active, self.write_offset);
        let segment = Segment::create(
            &self.shared.cache,
            &self.shared.dir,
            self.shared.options.segment_bytes,
            self.shared.allocate_segment_id(),
            self.group.next_position,
        )
        .map_err(|error| self.poison_with(error))?;
        let Some(file) = segment.append_file() else {
            return Err(self.poison_with(Error::io(
                "open segment",
                &segment.path,
                std::io::Error::other("a new segment has no open file"),
            )));
        };
        self.shared.update_segments(|segments| segments.push(Arc::clone(&segment)));
        // The old segment's descriptor closes here: sealed segments are read through maps.
        std::mem::replace(&mut self.active, segment).seal();
        self.active_file = file;
        self.write_offset = SEGMENT_HEADER_BYTES as u64;
        // Segment::create fsynced the header.
        self.durable_len = self.write_offset;
        // Every so many rolls, a stream-table checkpoint, so that an open after a crash
        // merges the streams of at most that many segments rather than of all of them. Now
        // is the moment: everything published is in sealed, synced segments.
        self.rolls_since_checkpoint += 1;
        if self.rolls_since_checkpoint >= STREAM_CHECKPOINT_ROLLS {
            self.write_stream_checkpoint();
        }
        Ok(())
    }
}

/// Writes the index file of `segment` covering its first `covered_bytes` bytes and switches
/// the segment to the mapped index. Failures are logged, not returned: the index is derived
/// data and the next open rebuilds what is missing.
pub(crate) fn write_index(storage: &dyn Storage, segment: &Segment, covered_bytes: u64) {
    let Some(index) = segment.loaded_index() else { return };
    let SegmentIndex::Active(mem) = &*index else { return };
    let bytes = {
        let mem = mem.read().unwrap_or_else(|poison| poison.into_inner());
        file::encode(&mem, segment.id(), covered_bytes)
    };
    let path = naming::index_path_for(&segment.path);
    match file::write(storage, &path, &bytes).and_then(|()| file::load(storage, &path, segment.id())) {
        Ok(loaded) => match loaded {
            Ok(mapped) => segment.set_index(SegmentIndex::Sealed(mapped)),
            Err(reason) => {
                tracing::warn!(path = %path.display(), reason, "index file reads back invalid; keeping the in-memory index")
            }
        },
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "could not write index file; it will be rebuilt on open")
        }
    }
    // Only the active segment's checkpoint may cover less than the segment; SEGMENT_HEADER_BYTES
    // is the smallest valid covered length.
    debug_assert!(covered_bytes >= SEGMENT_HEADER_BYTES as u64);
}
