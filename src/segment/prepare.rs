//! Preallocated segments (segment-format.md §3.5): the next segment file is zero-filled to
//! `segment_bytes` and synced ahead of the roll that needs it, so that the fdatasync of
//! every commit group written into it changes neither the file's size nor its allocation
//! (about half the cost of one that grows the file, docs/performance.md).
//!
//! The file is prepared as [`PREPARED_SEGMENT_FILE`], a temporary name: a crash at any step
//! of preparing leaves a `*.tmp` file, which open removes (§5 step 2), and nothing else.
//! The roll that uses it writes the segment header into it, syncs it, renames it to its
//! segment name and syncs the directory: from the rename on it is an active segment of
//! format 2 with a durable header and zeros after it, which recovery reads as an empty log.
//!
//! With the real file system the zeros are written by a helper thread, off the writer's
//! commit path; a storage that does not allow it ([`Storage::allows_background_io`]) has
//! them written on the writer thread, so that its call sequence stays deterministic.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::Segment;
use super::cache::MapCache;
use crate::error::{Error, Result};
use crate::format::segment_header::SegmentHeader;
use crate::layout;
use crate::storage::{OpenMode, Storage, StorageFile};

/// The name the next segment is prepared under (a temporary file, removed on open).
pub(crate) const PREPARED_SEGMENT_FILE: &str = "segment-next.tmp";

/// Zeros written per call, between which a cancellation is noticed.
const PIECE_BYTES: u64 = 4 << 20;

/// The next segment's file: being prepared, ready, or neither.
#[derive(Default)]
pub(crate) struct NextSegment {
    state: State,
}

#[derive(Default)]
enum State {
    /// Nothing prepared since the last roll; preparing may start.
    #[default]
    Idle,
    /// A helper thread is zero-filling the file.
    Running { cancel: Arc<AtomicBool>, helper: JoinHandle<Option<Arc<dyn StorageFile>>> },
    /// Zero-filled and synced.
    Ready(Arc<dyn StorageFile>),
    /// Preparing failed (logged); the next roll creates its segment the plain way.
    Failed,
}

impl NextSegment {
    /// Whether preparing may start (nothing prepared or being prepared since the last roll).
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Starts preparing the next segment file in `dir`: on a helper thread if the storage
    /// allows it, otherwise now.
    pub(crate) fn start(&mut self, storage: &Arc<dyn Storage>, dir: &Path, segment_bytes: u64) {
        let path = dir.join(PREPARED_SEGMENT_FILE);
        let cancel = Arc::new(AtomicBool::new(false));
        if !storage.allows_background_io() {
            self.state = finished(prepare(&**storage, &path, segment_bytes, &cancel));
            return;
        }
        let (storage, thread_cancel) = (Arc::clone(storage), Arc::clone(&cancel));
        let spawned = std::thread::Builder::new().name("chronicle-prepare".into()).spawn(move || {
            match finished(prepare(&*storage, &path, segment_bytes, &thread_cancel)) {
                State::Ready(file) => Some(file),
                _ => None,
            }
        });
        self.state = match spawned {
            Ok(helper) => State::Running { cancel, helper },
            Err(error) => {
                tracing::warn!(%error, "cannot start the thread that prepares the next segment");
                State::Failed
            }
        };
    }

    /// The prepared file if it is ready; `None` (and preparing goes on) if not. A roll
    /// never waits for zeros to be written.
    pub(crate) fn take_ready(&mut self) -> Option<Arc<dyn StorageFile>> {
        if let State::Running { helper, .. } = &self.state
            && helper.is_finished()
        {
            let State::Running { helper, .. } = std::mem::take(&mut self.state) else { return None };
            self.state = match helper.join() {
                Ok(Some(file)) => State::Ready(file),
                _ => State::Failed,
            };
        }
        match std::mem::take(&mut self.state) {
            State::Ready(file) => Some(file),
            // Still running: keep it for the roll after this one.
            State::Running { cancel, helper } => {
                self.state = State::Running { cancel, helper };
                None
            }
            State::Idle | State::Failed => None,
        }
    }

    /// After a roll: a running preparation goes on (the following roll may use it);
    /// otherwise preparing may start again.
    pub(crate) fn after_roll(&mut self) {
        if !matches!(self.state, State::Running { .. } | State::Ready(_)) {
            self.state = State::Idle;
        }
    }

    /// Stops preparing and removes the file (at close: a closed store keeps no
    /// preallocated space). Best effort; open removes a leftover anyway.
    pub(crate) fn discard(&mut self, storage: &dyn Storage, dir: &Path) {
        let had_file = match std::mem::take(&mut self.state) {
            State::Running { cancel, helper } => {
                cancel.store(true, Ordering::Relaxed);
                // Joined: no helper may write into the directory after the store closed.
                matches!(helper.join(), Ok(Some(_)))
            }
            State::Ready(_) => true,
            State::Idle | State::Failed => false,
        };
        if had_file {
            let path = dir.join(PREPARED_SEGMENT_FILE);
            if let Err(error) = storage.remove_file(&path) {
                tracing::warn!(path = %path.display(), %error, "cannot remove the prepared segment file");
            }
        }
    }
}

fn finished(prepared: std::io::Result<Option<Arc<dyn StorageFile>>>) -> State {
    match prepared {
        Ok(Some(file)) => State::Ready(file),
        Ok(None) => State::Failed,
        Err(error) => {
            tracing::warn!(%error, "cannot prepare the next segment; the next roll creates it without preallocation");
            State::Failed
        }
    }
}

/// Writes `segment_bytes` zeros to a new file at `path` and syncs it. `None` if cancelled
/// (the file is then removed); on an error the file is removed too (best effort).
fn prepare(
    storage: &dyn Storage,
    path: &Path,
    segment_bytes: u64,
    cancel: &AtomicBool,
) -> std::io::Result<Option<Arc<dyn StorageFile>>> {
    match storage.remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let file = storage.open(path, OpenMode::CreateNew)?;
    let filled = (|| {
        let mut at = 0;
        while at < segment_bytes {
            if cancel.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let piece = (segment_bytes - at).min(PIECE_BYTES);
            file.zero_fill(at, piece)?;
            at += piece;
        }
        file.sync_data().map(|()| true)
    })();
    match filled {
        Ok(true) => Ok(Some(file)),
        outcome => {
            drop(file);
            let _ = storage.remove_file(path);
            outcome.map(|_| None)
        }
    }
}

impl Segment {
    /// Makes the prepared `file` the segment `segment_id` starting at `base_position`:
    /// header written and synced, then renamed from [`PREPARED_SEGMENT_FILE`] to the
    /// segment's name and the directory synced (so the segment never exists without a
    /// durable header).
    pub(crate) fn create_prepared(
        cache: &Arc<MapCache>,
        dir: &Path,
        file: Arc<dyn StorageFile>,
        segment_bytes: u64,
        segment_id: u64,
        base_position: u64,
    ) -> Result<Arc<Segment>> {
        let storage = &cache.storage;
        let prepared: PathBuf = dir.join(PREPARED_SEGMENT_FILE);
        let path = dir.join(layout::segment_file_name(segment_id));
        let header = SegmentHeader::current(segment_id, base_position, 0);
        super::write_durable_header(&*file, &header, &prepared)?;
        // Claim the name with O_CREAT|O_EXCL first, as a plain creation does: anything
        // already there (a planted symlink included) fails the roll instead of being
        // replaced. A crash before the rename leaves that empty file, which open removes
        // like any segment creation cut short (§5 step 3).
        drop(storage.open(&path, OpenMode::CreateNew).map_err(|e| Error::io("create segment", &path, e))?);
        storage.rename(&prepared, &path).map_err(|e| Error::io("rename prepared segment", &path, e))?;
        storage.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
        Segment::new_active(cache, path, file, header, segment_bytes)
    }
}
