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

/// How far ahead of the groups the active segment is zero-filled ([`Writer::zero_fill_ahead`]):
/// the first extension of a segment (or after a reopen) is the smallest, each next one twice
/// the previous, up to the largest. Each extension costs one fdatasync that writes these
/// zeros and the file's new size; the groups written into them then sync without changing
/// either (docs/performance.md, "Crash open and preallocating the active segment"). Starting
/// small keeps a short-lived store (a test, a CLI run) from writing megabytes of zeros;
/// 4 MiB is about 10 ms of this disk's sequential bandwidth, once per 4 MiB of log.
const ZERO_AHEAD_BYTES_MIN: u64 = 64 << 10;
const ZERO_AHEAD_BYTES_MAX: u64 = 4 << 20;

/// The active segment's index file is written again once this fraction (1/4) of a segment
/// has been made durable since it was last written: an open after a crash then scans and
/// rewrites at most about that much of the active segment (plus what was not synced),
/// instead of all of it. Each write encodes the whole in-memory index of the active segment
/// (three times per segment, on top of the one at the roll; docs/performance.md, "Crash
/// open and preallocating the active segment", measures the cost).
const ACTIVE_INDEX_EVERY_FRACTION: u64 = 4;

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
        self.zeroed_to = self.active_file_len();
        self.zero_ahead_bytes = 0;
        // The new segment holds only its header, which needs no index file.
        self.indexed_len = self.write_offset;
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

    /// Before writing a group of `group_bytes` at the write offset under `Durability::Sync`:
    /// if it would reach past the zeros already in the file, zero-fill the file some way
    /// past the group ([`ZERO_AHEAD_BYTES_MIN`], doubling; at most to `segment_bytes`), so that the
    /// fdatasyncs of the groups that follow overwrite written space instead of growing the
    /// file. This covers what preparing the next segment does not: a new store's first
    /// segment and the active segment after a reopen (a clean close trims it). Only a format
    /// 2 segment, whose log may end before its file (segment-format.md §3.5); the zeros are
    /// synced with the group's own fdatasync. On the writer thread, so that the sequence of
    /// storage calls stays deterministic. A failure is logged and the segment grows as before:
    /// the zeros are an optimisation, and the group's own write reports a full device.
    pub(super) fn zero_fill_ahead(&mut self, group_bytes: u64) {
        let group_end = self.write_offset + group_bytes;
        let segment_bytes = self.shared.options.segment_bytes;
        if group_end <= self.zeroed_to
            || self.shared.options.durability != crate::Durability::Sync
            || !self.active.header.log_may_end_before_file()
        {
            return;
        }
        let from = self.zeroed_to.max(self.write_offset);
        let ahead = self.zero_ahead_bytes.clamp(ZERO_AHEAD_BYTES_MIN, ZERO_AHEAD_BYTES_MAX);
        let to = group_end.saturating_add(ahead).min(segment_bytes).max(group_end);
        match self.active_file.zero_fill(from, to - from) {
            Ok(()) => {
                self.zeroed_to = to;
                self.zero_ahead_bytes = ahead * 2;
            }
            Err(error) => {
                tracing::warn!(path = %self.active.path.display(), %error, "cannot zero-fill ahead of the log; the segment grows as it is written");
                // Not again for this segment.
                self.zeroed_to = segment_bytes;
            }
        }
    }

    /// After a group is published (or a sync without one): if everything written is durable
    /// and a quarter segment has been added since the active segment's index file was last
    /// written, write it again covering all of it. Both conditions make the file a proof: it
    /// covers durable bytes only, exactly those the in-memory index holds.
    pub(super) fn checkpoint_active_index(&mut self) {
        let every_bytes = (self.shared.options.segment_bytes / ACTIVE_INDEX_EVERY_FRACTION).max(1);
        if self.unsynced
            || self.durable_len != self.write_offset
            || self.write_offset < self.indexed_len.saturating_add(every_bytes)
            || self.poison.is_some()
        {
            return;
        }
        // Marked as done even if writing fails (logged): not retried at every group.
        self.indexed_len = self.write_offset;
        self.active.write_active_index_file(&*self.shared.storage, self.write_offset);
    }

    /// The active file's length: up to there it holds records or zeros (recovery zeroes a
    /// torn tail of a format 2 segment). The write offset if it cannot be read.
    pub(super) fn active_file_len(&self) -> u64 {
        self.active_file.len().unwrap_or(self.write_offset).max(self.write_offset)
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
