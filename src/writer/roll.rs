//! Sealing the active segment and starting the next one.

use std::sync::Arc;

use super::Writer;
use crate::error::{Error, Result};
use crate::format::segment_header::SEGMENT_HEADER_BYTES;
use crate::segment::Segment;
use crate::storage::StorageFile;

/// Rolls between two stream-table checkpoints. Writing one costs about 30 bytes per stream
/// (3 MB and a few milliseconds of the writer's time for 100 000 streams), against the
/// 8 segments' worth of data (512 MiB by default) written meanwhile.
const STREAM_CHECKPOINT_ROLLS: u32 = 8;

/// The next segment is prepared once the active one is this fraction full (1/4): early enough
/// that the zeros are written long before the roll at any append rate the disk sustains, late
/// enough that a short-lived store (most tests, a CLI run) never writes them.
const PREPARE_AT_FRACTION: u64 = 4;

impl Writer {
    /// Seals the active segment (synced, index written) and makes a new one active.
    pub(super) fn roll(&mut self) -> Result<()> {
        let _span =
            tracing::info_span!("roll", sealed = %self.active.path.display(), bytes = self.write_offset).entered();
        // A sealed segment ends with its last record (§3.4): preallocated space goes first,
        // and the sync below makes the new length durable before the next segment exists.
        let trimmed = self.trim_preallocated_tail()?;
        if self.unsynced || trimmed {
            self.sync_active()?;
        }
        self.active.write_index_file(&*self.shared.storage, self.write_offset);
        let (segment_bytes, segment_id) = (self.shared.options.segment_bytes, self.shared.allocate_segment_id());
        let created = match self.next_segment.take_ready() {
            Some(file) => Segment::create_prepared(
                &self.shared.cache,
                &self.shared.dir,
                file,
                segment_bytes,
                segment_id,
                self.group.next_position,
            ),
            None => Segment::create(
                &self.shared.cache,
                &self.shared.dir,
                segment_bytes,
                segment_id,
                self.group.next_position,
            ),
        };
        self.next_segment.after_roll();
        let segment = created.map_err(|error| self.poison_with(error))?;
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

    /// Starts preparing the next segment once the active one is filling up (after a group
    /// is answered, so a preparation on this thread — a storage without background I/O —
    /// delays no caller of that group).
    pub(super) fn prepare_ahead(&mut self) {
        if self.next_segment.is_idle()
            && self.poison.is_none()
            && !self.closed
            && self.write_offset >= self.shared.options.segment_bytes / PREPARE_AT_FRACTION
        {
            self.next_segment.start(&self.shared.storage, &self.shared.dir, self.shared.options.segment_bytes);
        }
    }

    /// At a clean close, after the last sync: a closed store keeps no preallocated space
    /// (the next open appends to a file that grows until its first roll). Best effort: a
    /// format 2 active segment is valid with or without its zeros, and everything it holds
    /// is already durable, so a failure here is logged and the close goes on.
    pub(super) fn trim_at_close(&mut self) {
        if !self.active.header.log_may_end_before_file() {
            return;
        }
        let path = &self.active.path;
        let trimmed = self.active_file.set_len(self.write_offset).and_then(|()| self.active_file.sync_data());
        if let Err(error) = trimmed {
            tracing::warn!(path = %path.display(), %error, "could not trim the preallocated tail at close; the next open reads it as zeros");
        }
    }

    /// Cuts the active segment's file to the end of its log (a format 2 segment may be
    /// preallocated) at a roll, so that a sealed segment holds only records. Not synced here. Returns whether it
    /// cut (then the caller syncs). The cut is made even when the file looks as long as its
    /// log already: after a failed fdatasync the shorter length may be in memory only (the
    /// store was reopened since), and a sealed segment must be short on disk.
    pub(super) fn trim_preallocated_tail(&mut self) -> Result<bool> {
        if !self.active.header.log_may_end_before_file() {
            return Ok(false);
        }
        let file: &dyn StorageFile = &*self.active_file;
        match file.set_len(self.write_offset) {
            Ok(()) => Ok(true),
            Err(source) => Err(self.poison_with(Error::io("trim preallocated tail", &self.active.path, source))),
        }
    }
}
