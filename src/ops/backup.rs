//! Online backup and restore.
//!
//! A backup is a copy of the store at one position, taken while appends go on: sealed
//! segments are hard-linked where the file system allows (they are never written again),
//! else copied from their maps; the active segment is copied up to its committed length (a
//! commit-group boundary); snapshots, the retention table and every other non-derived file
//! (consumer checkpoints, when they exist) are copied. Everything is written into a
//! temporary directory beside the destination, fsynced (files and directory), opened
//! read-only and verified, and only then renamed to the destination: a backup killed half
//! way leaves a `.NAME.backup-*.tmp` directory, never a destination that looks whole, and
//! the source is only read.
//!
//! The destination is written with the operating system's file system directly, not
//! through the store's storage seam: it is another directory, not part of the store.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::index::checkpoint::CHECKPOINT_FILE;
use crate::layout;
use crate::shared::Shared;
use crate::store::Store;

/// What [`Store::backup`](crate::Store::backup) wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// The backup directory.
    pub path: PathBuf,
    /// One past the last position the backup holds: every event below it that the store
    /// held when the backup began is in it.
    pub end_position: u64,
    /// Segment files in the backup.
    pub segments: u64,
    /// Files hard-linked from the store (sealed segments and their index files).
    pub files_linked: u64,
    /// Files copied.
    pub files_copied: u64,
    /// Bytes copied (linked files cost none).
    pub bytes_copied: u64,
    /// Snapshot files in the backup.
    pub snapshots: u64,
}

/// What [`restore`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreReport {
    /// The restored store directory.
    pub path: PathBuf,
    /// One past the last position the restored store holds.
    pub end_position: u64,
    /// Files copied.
    pub files: u64,
    /// Bytes copied.
    pub bytes: u64,
}

fn io<'a>(operation: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |error| Error::io(operation, path, error)
}

/// A sibling of `target` to write into first: `.NAME.KIND-PID-NANOS.tmp`.
fn temporary_sibling(target: &Path, kind: &str) -> Result<PathBuf> {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::invalid(format!("{} has no file name", target.display())))?;
    let parent = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    Ok(parent.join(format!(".{name}.{kind}-{}-{nanos}{}", std::process::id(), layout::TMP_SUFFIX)))
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Removes a temporary directory on every early return.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(path) = self.0.take()
            && let Err(error) = std::fs::remove_dir_all(&path)
        {
            tracing::warn!(path = %path.display(), %error, "could not remove a temporary directory");
        }
    }
}

fn sync_file(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(io("fsync", path))
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(io("sync directory", path))
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create_new(path).map_err(io("create", path))?;
    file.write_all(bytes).map_err(io("write", path))?;
    file.sync_all().map_err(io("fsync", path))
}

/// Files of a store directory that a backup copies as they are: everything but the lock,
/// temporary files, segments and their index files (taken from the segment list) and the
/// stream-table checkpoint (derived data that would not describe the copied segments).
fn is_plain_store_file(name: &str) -> bool {
    name != layout::LOCK_FILE
        && !name.ends_with(layout::TMP_SUFFIX)
        && layout::parse_segment_file_name(name).is_none()
        && layout::segment_name_of_index(name).is_none()
        && name != CHECKPOINT_FILE
}

/// Opens `dir` read-only, verifies every byte and returns its end position.
fn verified_end(dir: &Path) -> Result<u64> {
    let check = Store::open_read_only(dir)?;
    let report = check.verify()?;
    if let Some(problem) = report.problems.first() {
        return Err(Error::corruption(&problem.file, problem.offset, problem.reason.clone()));
    }
    let end = check.shared().next_position();
    check.close()?;
    Ok(end)
}

pub(crate) fn backup(shared: &Arc<Shared>, dest: &Path) -> Result<BackupReport> {
    if dest.as_os_str().is_empty() {
        return Err(Error::invalid("backup destination path is empty"));
    }
    if std::fs::symlink_metadata(dest).is_ok() {
        return Err(Error::invalid(format!("backup destination {} already exists", dest.display())));
    }
    let parent = parent_of(dest);
    std::fs::create_dir_all(&parent).map_err(io("create directory", &parent))?;
    let tmp = temporary_sibling(dest, "backup")?;
    std::fs::create_dir(&tmp).map_err(io("create directory", &tmp))?;
    let mut cleanup = Cleanup(Some(tmp.clone()));
    let mut report = BackupReport {
        path: dest.to_path_buf(),
        end_position: 0,
        segments: 0,
        files_linked: 0,
        files_copied: 0,
        bytes_copied: 0,
        snapshots: 0,
    };
    // 1. Snapshots and the other files first: a snapshot covers events published before it
    //    was saved, so each one copied now covers events the segments taken next hold.
    let names = shared.storage.list_dir(&shared.dir).map_err(io("list directory", &shared.dir))?;
    for name in names.iter().filter(|n| is_plain_store_file(n)) {
        let from = shared.dir.join(name);
        let to = tmp.join(name);
        match std::fs::copy(&from, &to) {
            Ok(bytes) => {
                report.files_copied += 1;
                report.bytes_copied += bytes;
                report.snapshots += u64::from(name.starts_with("snapshot-"));
                sync_file(&to)?;
            }
            // Pruned or replaced meanwhile; its successor is newer than this backup.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(Error::io("copy", &from, error)),
        }
    }
    // 2. The segments as one list, at one moment: every record below the end read after it
    //    lies in a listed segment below its committed length.
    let segments = shared.segments();
    let end = shared.next_position();
    for (i, segment) in segments.iter().enumerate() {
        let Some(name) = segment.path.file_name() else { continue };
        let to = tmp.join(name);
        let sealed = i + 1 < segments.len();
        report.segments += 1;
        if sealed && std::fs::hard_link(&segment.path, &to).is_ok() {
            report.files_linked += 1;
            sync_file(&to)?;
            let index = layout::index_path_for(&segment.path);
            let index_to = layout::index_path_for(&to);
            // Derived data: a missing one is rebuilt when the backup is opened for writing.
            if std::fs::hard_link(&index, &index_to).is_ok() {
                report.files_linked += 1;
            }
            continue;
        }
        // The active segment, or a sealed one that cannot be linked (another file system,
        // or removed by compaction since the list was taken: its map outlives the file).
        let reader = segment.reader()?;
        let bytes = reader.record(0, reader.len() as usize).unwrap_or_default();
        write_new(&to, bytes)?;
        report.files_copied += 1;
        report.bytes_copied += bytes.len() as u64;
    }
    sync_dir(&tmp)?;
    // 3. Verified before it takes the destination's name.
    let backup_end = verified_end(&tmp)?;
    if backup_end < end {
        return Err(Error::internal(format!(
            "backup holds positions below {backup_end}, the store had published {end} when it began"
        )));
    }
    report.end_position = backup_end;
    std::fs::rename(&tmp, dest).map_err(io("rename backup into place", dest))?;
    cleanup.0 = None;
    sync_dir(&parent)?;
    tracing::info!(dest = %dest.display(), end_position = backup_end, segments = report.segments,
        linked = report.files_linked, copied = report.files_copied, bytes = report.bytes_copied, "backup written");
    Ok(report)
}

/// Restores the backup in `backup` (as written by [`Store::backup`](crate::Store::backup))
/// into `dir`, which must not exist or be an empty directory. The backup is verified first
/// (every checksum), copied into a temporary directory beside `dir`, fsynced, and renamed to
/// `dir`: an interrupted restore leaves no `dir` that looks whole.
///
/// # Errors
/// [`Error::InvalidInput`] if `dir` exists and is not an empty directory;
/// [`Error::Corruption`] if the backup fails verification; [`Error::Io`].
///
/// ```
/// use chronicle::{ExpectedVersion, NewEvent, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path().join("live"))?;
/// store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "x")])?;
/// store.backup(dir.path().join("backup"))?;
/// chronicle::restore(dir.path().join("backup"), dir.path().join("restored"))?;
/// let restored = Store::open(dir.path().join("restored"))?;
/// assert_eq!(restored.read_all(0)?.count(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn restore(backup: impl AsRef<Path>, dir: impl AsRef<Path>) -> Result<RestoreReport> {
    let (backup, dir) = (backup.as_ref(), dir.as_ref());
    if dir.as_os_str().is_empty() {
        return Err(Error::invalid("restore target path is empty"));
    }
    let target_exists = match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            if std::fs::read_dir(dir).map_err(io("list directory", dir))?.next().is_some() {
                return Err(Error::invalid(format!("restore target {} is not empty", dir.display())));
            }
            true
        }
        Ok(_) => return Err(Error::invalid(format!("restore target {} is not a directory", dir.display()))),
        Err(_) => false,
    };
    let end_position = verified_end(backup)?;
    let parent = parent_of(dir);
    std::fs::create_dir_all(&parent).map_err(io("create directory", &parent))?;
    let tmp = temporary_sibling(dir, "restore")?;
    std::fs::create_dir(&tmp).map_err(io("create directory", &tmp))?;
    let mut cleanup = Cleanup(Some(tmp.clone()));
    let mut report = RestoreReport { path: dir.to_path_buf(), end_position, files: 0, bytes: 0 };
    for entry in std::fs::read_dir(backup).map_err(io("list directory", backup))? {
        let entry = entry.map_err(io("list directory", backup))?;
        let name = entry.file_name();
        let Some(text) = name.to_str() else { continue };
        if !entry.file_type().is_ok_and(|t| t.is_file())
            || text == layout::LOCK_FILE
            || text.ends_with(layout::TMP_SUFFIX)
        {
            continue;
        }
        let to = tmp.join(&name);
        report.bytes += std::fs::copy(entry.path(), &to).map_err(io("copy", &entry.path()))?;
        report.files += 1;
        sync_file(&to)?;
    }
    sync_dir(&tmp)?;
    if target_exists {
        // rename(2) replaces an empty directory; elsewhere remove it first.
        if std::fs::rename(&tmp, dir).is_err() {
            std::fs::remove_dir(dir).map_err(io("remove empty directory", dir))?;
            std::fs::rename(&tmp, dir).map_err(io("rename restore into place", dir))?;
        }
    } else {
        std::fs::rename(&tmp, dir).map_err(io("rename restore into place", dir))?;
    }
    cleanup.0 = None;
    sync_dir(&parent)?;
    Ok(report)
}
