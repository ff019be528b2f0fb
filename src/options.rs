//! Store options and the limits every input is checked against.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::record::{DURABLE_MARK_BYTES, RECORD_HEADER_BYTES};
use crate::format::segment_header::SEGMENT_HEADER_BYTES;
use crate::retention::Retention;

/// Longest stream id, in bytes of UTF-8.
pub const STREAM_ID_BYTES_MAX: usize = 1024;
/// Longest event type, in bytes of UTF-8.
pub const EVENT_TYPE_BYTES_MAX: usize = 1024;
/// Most events in one `append` or `append_multi` call.
pub const BATCH_EVENTS_MAX: usize = 1 << 20;
/// Most streams in one `append_multi` call.
pub const BATCH_STREAMS_MAX: usize = 1 << 16;
/// Depth of the bounded queue in front of the writer thread (callers block when it is full).
pub const WRITER_QUEUE_DEPTH_MAX: usize = 4096;
/// Most bytes the writer gathers into one write + fdatasync before it starts another.
/// A tuning constant of the writer, not a limit on input: hidden from the docs, exported only
/// so that code written against earlier versions compiles.
#[doc(hidden)]
pub const GROUP_BYTES_MAX: usize = 8 << 20;
/// Under [`Options::coalesce_writes`], the bytes of acknowledged appends at which they are
/// written at once (one `write` call), without waiting for the window to pass.
pub const COALESCED_BYTES_MAX: usize = 64 << 10;
const _: () = assert!(COALESCED_BYTES_MAX <= GROUP_BYTES_MAX);
/// Smallest accepted `segment_bytes`.
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Largest accepted `segment_bytes` (record offsets are 32-bit).
pub const SEGMENT_BYTES_MAX: u64 = 1 << 31;
/// Default `segment_bytes`: 64 MiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// Default `mapped_segments`: sealed segments whose memory maps stay between reads. Each
/// costs at most two maps (its file and its index file) and no file descriptor; 512 of the
/// default 64 MiB segments are 32 GiB of address space, a small share of a 64-bit one, and
/// 1025 maps, far below Linux's default `vm.max_map_count` of 65530.
pub const MAPPED_SEGMENTS_DEFAULT: usize = 512;
/// Default `event_bytes_max`: 4 MiB (data + metadata + stream id + event type + header).
pub const EVENT_BYTES_MAX_DEFAULT: usize = 4 << 20;
/// Default `batch_bytes_max`: 16 MiB (all events of one append, encoded).
pub const BATCH_BYTES_MAX_DEFAULT: usize = 16 << 20;

const _: () = assert!(SEGMENT_BYTES_MIN > (SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES) as u64);
const _: () = assert!(EVENT_BYTES_MAX_DEFAULT <= BATCH_BYTES_MAX_DEFAULT);
const _: () = assert!((BATCH_BYTES_MAX_DEFAULT as u64) < SEGMENT_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_MAX <= u32::MAX as u64);
const _: () = assert!(STREAM_ID_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(EVENT_TYPE_BYTES_MAX <= u16::MAX as usize);

/// When an acknowledged append is durable.
///
/// ```
/// use chronicle::{Durability, Options};
/// use std::time::Duration;
/// let options = Options::default().durability(Durability::Periodic(Duration::from_millis(10)));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `append` returns only after the batch is written and `fdatasync` returned Ok.
    #[default]
    Sync,
    /// `append` returns once the batch is written to the OS; the writer fsyncs at least
    /// this often. A crash loses at most that window (whole batches, never part of one).
    Periodic(Duration),
    /// `append` returns once written to the OS; fsync happens only on `sync()`,
    /// segment seal and close.
    Buffered,
}

/// Options for [`Store::open_with`](crate::Store::open_with); a builder whose methods take
/// and return `Self`.
///
/// ```
/// use chronicle::{Durability, Options};
/// let options = Options::default().durability(Durability::Sync).segment_bytes(64 << 20);
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) durability: Durability,
    pub(crate) segment_bytes: u64,
    pub(crate) event_bytes_max: usize,
    pub(crate) batch_bytes_max: usize,
    pub(crate) retention: Retention,
    pub(crate) compaction_threshold_bytes: Option<u64>,
    pub(crate) mapped_segments_max: usize,
    /// Under `Buffered`: how long acknowledged appends may wait in memory to be written
    /// together (`None`: each append is written before it is acknowledged).
    pub(crate) coalesce_window: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Sync,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            event_bytes_max: EVENT_BYTES_MAX_DEFAULT,
            batch_bytes_max: BATCH_BYTES_MAX_DEFAULT,
            retention: Retention::KeepAll,
            compaction_threshold_bytes: None,
            mapped_segments_max: MAPPED_SEGMENTS_DEFAULT,
            coalesce_window: None,
        }
    }
}

impl Options {
    /// Sets when appends are acknowledged (default [`Durability::Sync`]).
    ///
    /// ```
    /// # use chronicle::{Durability, Options};
    /// let options = Options::default().durability(Durability::Buffered);
    /// # let _ = options;
    /// ```
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the size in bytes at which a segment file is sealed and a new one started
    /// (default 64 MiB, at least [`SEGMENT_BYTES_MIN`], at most [`SEGMENT_BYTES_MAX`]).
    ///
    /// ```
    /// # use chronicle::Options;
    /// let options = Options::default().segment_bytes(8 << 20);
    /// # let _ = options;
    /// ```
    pub fn segment_bytes(mut self, segment_bytes: u64) -> Self {
        self.segment_bytes = segment_bytes;
        self
    }

    /// The former name of [`Options::segment_bytes`], kept so that existing code compiles.
    #[doc(hidden)]
    pub fn segment_size(self, segment_bytes: u64) -> Self {
        self.segment_bytes(segment_bytes)
    }

    /// Sets the largest encoded event in bytes (default 4 MiB). An event is its data,
    /// metadata, stream id, event type and a fixed header of 64 bytes.
    ///
    /// ```
    /// # use chronicle::Options;
    /// let options = Options::default().event_bytes_max(1 << 20);
    /// # let _ = options;
    /// ```
    pub fn event_bytes_max(mut self, event_bytes_max: usize) -> Self {
        self.event_bytes_max = event_bytes_max;
        self
    }

    /// The former name of [`Options::event_bytes_max`], kept so that existing code compiles.
    #[doc(hidden)]
    pub fn max_event_size(self, event_bytes_max: usize) -> Self {
        self.event_bytes_max(event_bytes_max)
    }

    /// Sets the largest encoded append (all its events) in bytes (default 16 MiB).
    /// It is further capped so that one append always fits in one segment.
    ///
    /// ```
    /// # use chronicle::Options;
    /// let options = Options::default().batch_bytes_max(32 << 20);
    /// # let _ = options;
    /// ```
    pub fn batch_bytes_max(mut self, batch_bytes_max: usize) -> Self {
        self.batch_bytes_max = batch_bytes_max;
        self
    }

    /// The former name of [`Options::batch_bytes_max`], kept so that existing code compiles.
    #[doc(hidden)]
    pub fn max_batch_size(self, batch_bytes_max: usize) -> Self {
        self.batch_bytes_max(batch_bytes_max)
    }

    /// Sets the retention of streams without their own rule (default
    /// [`Retention::KeepAll`]); see [`Store::set_stream_retention`](crate::Store::set_stream_retention).
    ///
    /// ```
    /// # use chronicle::{Options, Retention};
    /// let options = Options::default().retention(Retention::MaxCount(1000));
    /// # let _ = options;
    /// ```
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Turns on automatic compaction: a background thread compacts once the bytes that
    /// deletion and retention made discardable exceed `bytes` (checked after deletions,
    /// snapshots and segment seals, and every 30 seconds). Off by default.
    ///
    /// ```
    /// # use chronicle::Options;
    /// let options = Options::default().compaction_threshold(256 << 20);
    /// # let _ = options;
    /// ```
    pub fn compaction_threshold(mut self, bytes: u64) -> Self {
        self.compaction_threshold_bytes = Some(bytes);
        self
    }

    /// Sets how many sealed segments stay memory-mapped between reads (default
    /// [`MAPPED_SEGMENTS_DEFAULT`], at least 1). Others are opened, mapped and closed again
    /// when read, so a store never holds a file descriptor per segment, only the active
    /// segment's; this caps its memory maps too (see the README's resource bounds). Lower it
    /// where address space or `vm.max_map_count` is scarce; raise it if reads touch more
    /// sealed segments than this and each remap (an open, an mmap and a close) shows.
    ///
    /// ```
    /// # use chronicle::Options;
    /// let options = Options::default().mapped_segments(64);
    /// # let _ = options;
    /// ```
    pub fn mapped_segments(mut self, mapped_segments_max: usize) -> Self {
        self.mapped_segments_max = mapped_segments_max;
        self
    }

    /// Under [`Durability::Buffered`], acknowledges appends before writing them, and writes
    /// many in one `write` call (off by default: each append is written to the operating
    /// system before `append` returns). An acknowledged append is then **in the store's
    /// memory** until it is written, which happens when [`COALESCED_BYTES_MAX`] bytes have
    /// gathered, when the oldest has waited `window`, before any other call on the store
    /// (every read — `read_stream`, `read_all`, `stream_version`, `subscribe`, … — and
    /// `sync`, `seal`, `close`), and when the last handle drops.
    ///
    /// What changes: readers in this process still see every acknowledged append (each
    /// read writes the pending ones first), but a subscription already waiting for new
    /// events receives them up to `window` later, and another process (a read-only open)
    /// sees them only once written. A crash of the process (`kill -9`, a panic that
    /// aborts) loses the appends not yet written — at most `window` or
    /// [`COALESCED_BYTES_MAX`] of them, whole appends, never part of one — where without
    /// coalescing only a power loss could. If the deferred write fails, those appends are
    /// lost and the store is poisoned: the call that wrote them (a read, an append) returns
    /// [`Error::Poisoned`], as does every later write. Power loss loses what it loses under
    /// `Buffered` anyway: everything since the last `sync()`.
    ///
    /// # Errors
    /// Opening fails with [`Error::InvalidInput`] if `window` is zero or the durability is
    /// not `Buffered`.
    ///
    /// ```
    /// # use chronicle::{Durability, Options};
    /// # use std::time::Duration;
    /// let options = Options::default().durability(Durability::Buffered).coalesce_writes(Duration::from_millis(1));
    /// # let _ = options;
    /// ```
    pub fn coalesce_writes(mut self, window: Duration) -> Self {
        self.coalesce_window = Some(window);
        self
    }

    /// Checks the options against each other and the limits.
    pub(crate) fn validate(&self) -> Result<()> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(Error::invalid(format!(
                "segment_bytes {} is outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX} bytes",
                self.segment_bytes
            )));
        }
        if self.mapped_segments_max == 0 {
            return Err(Error::invalid("mapped_segments must be at least 1"));
        }
        if self.event_bytes_max < RECORD_HEADER_BYTES + 2 {
            return Err(Error::invalid(format!(
                "event_bytes_max {} cannot hold even an empty event ({} bytes)",
                self.event_bytes_max,
                RECORD_HEADER_BYTES + 2
            )));
        }
        if self.batch_bytes_max < self.event_bytes_max.min(self.segment_payload_bytes()) {
            return Err(Error::invalid(format!(
                "batch_bytes_max {} is smaller than event_bytes_max {}",
                self.batch_bytes_max, self.event_bytes_max
            )));
        }
        if let Durability::Periodic(interval) = self.durability
            && interval.is_zero()
        {
            return Err(Error::invalid("Durability::Periodic interval must be above zero"));
        }
        if let Some(window) = self.coalesce_window {
            if window.is_zero() {
                return Err(Error::invalid("the coalesce_writes window must be above zero"));
            }
            if self.durability != Durability::Buffered {
                return Err(Error::invalid(format!(
                    "coalesce_writes applies to Durability::Buffered only, not {:?}",
                    self.durability
                )));
            }
        }
        Ok(())
    }

    /// Bytes of a segment available to one commit group's records (the first record of a
    /// group carries a durable mark).
    pub(crate) fn segment_payload_bytes(&self) -> usize {
        (self.segment_bytes as usize).saturating_sub(SEGMENT_HEADER_BYTES + DURABLE_MARK_BYTES)
    }

    /// The largest encoded append this store accepts: [`Options::batch_bytes_max`], capped
    /// so that one append always fits in one segment.
    ///
    /// ```
    /// # use chronicle::Options;
    /// let options = Options::default().segment_bytes(1 << 20).batch_bytes_max(8 << 20);
    /// assert!(options.effective_batch_bytes_max() < 1 << 20);
    /// ```
    pub fn effective_batch_bytes_max(&self) -> usize {
        self.batch_bytes_max.min(self.segment_payload_bytes())
    }

    /// The largest encoded event this store accepts: [`Options::event_bytes_max`], capped
    /// to [`Options::effective_batch_bytes_max`].
    ///
    /// ```
    /// # use chronicle::Options;
    /// assert_eq!(Options::default().effective_event_bytes_max(), chronicle::EVENT_BYTES_MAX_DEFAULT);
    /// ```
    pub fn effective_event_bytes_max(&self) -> usize {
        self.event_bytes_max.min(self.effective_batch_bytes_max())
    }
}
