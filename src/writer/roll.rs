//! Sealing the active segment and starting the next one.

use std::sync::Arc;

use super::Writer;
use crate::error::{Error, Result};
use crate::format::segment_header::SEGMENT_HEADER_BYTES;
use crate::segment::Segment;

/// Rolls between two stream-table checkpoints. Writing one costs about 30 bytes per stream
/// (3 MB and a few milliseconds of the writer's time for 100 000 streams), against the
/// 8 segments' worth of data (512 MiB by default) written meanwhile.
const STREAM_CHECKPOINT_ROLLS: u32 = 8;

impl Writer {
    /// Seals the active segment (synced, index written) and makes a new one active.
    pub(super) fn roll(&mut self) -> Result<()> {
        let _span =
            tracing::info_span!("roll", sealed = %self.active.path.display(), bytes = self.write_offset).entered();
        if self.unsynced {
            self.sync_active()?;
        }
        self.active.write_index_file(&*self.shared.storage, self.write_offset);
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
