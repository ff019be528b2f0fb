//! Snapshots: a stream's state at a version, stored in its own file beside the segments.
//!
//! Files are named `snapshot-{fnv64(stream):016x}-{version:016x}.snap`, so no caller byte
//! reaches a file name; the stream id inside the file is checked on load (a hash collision
//! only costs a skipped file). Each save writes a temporary file, fsyncs it, renames it into
//! place and fsyncs the directory: a crash leaves the previous snapshot loadable. The newest
//! [`SNAPSHOTS_KEPT`] per stream are kept; a snapshot that fails its checksum is skipped
//! (and logged) in favour of the next older one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::format::snapshot_file;
use crate::index::stream_hash;
use crate::storage::{OpenMode, Storage, read_whole};
use crate::sync;

/// Snapshots kept per stream; older ones are removed when a newer one is saved.
pub const SNAPSHOTS_KEPT: usize = 2;
/// Largest snapshot state, in bytes.
pub const SNAPSHOT_BYTES_MAX: usize = 1 << 30;

const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";

/// A stream's saved state, as returned by [`Store::load_snapshot`](crate::Store::load_snapshot).
///
/// ```
/// use chronicle::{ExpectedVersion, NewEvent, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("cart", ExpectedVersion::Any, [NewEvent::new("Added", "apple")])?;
/// store.save_snapshot("cart", 0, b"[apple]")?;
/// let snapshot = store.load_snapshot("cart")?.unwrap();
/// assert_eq!((snapshot.version, &snapshot.data[..]), (0, &b"[apple]"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The stream version the state covers (events up to and including it).
    pub version: u64,
    /// The state, as saved.
    pub data: Bytes,
}

/// Why a snapshot file cannot be used.
enum Unreadable {
    /// Reading it failed (EIO and the like): reported, never mistaken for damage.
    Io(Error),
    /// It is damaged or not what its name says: skipped in favour of an older one.
    Invalid(String),
}

/// The snapshot files of a store.
#[derive(Debug)]
pub(crate) struct Snapshots {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    /// Stream-id hash to the versions of the files with that hash, ascending.
    catalog: Mutex<HashMap<u64, Vec<u64>>>,
    tmp_counter: AtomicU64,
}

fn file_name(hash: u64, version: u64) -> String {
    format!("{PREFIX}{hash:016x}-{version:016x}{SUFFIX}")
}

fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (hash, version) = rest.split_once('-')?;
    if hash.len() != 16 || version.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(hash, 16).ok()?, u64::from_str_radix(version, 16).ok()?))
}

impl Snapshots {
    /// Catalogues the snapshot files in `dir` (their contents are read on load).
    pub(crate) fn open(storage: Arc<dyn Storage>, dir: &Path) -> Result<Self> {
        let catalog = Self::list(&*storage, dir)?;
        Ok(Snapshots { dir: dir.to_path_buf(), storage, catalog: Mutex::new(catalog), tmp_counter: AtomicU64::new(0) })
    }

    /// Catalogues the directory again: a read-only store sees the snapshots its writer saved
    /// (or pruned) since it opened.
    pub(crate) fn rescan(&self) -> Result<()> {
        let catalog = Self::list(&*self.storage, &self.dir)?;
        *self.catalog() = catalog;
        Ok(())
    }

    /// Reads and checks every catalogued snapshot file: how many were checked, and each
    /// one that is damaged or cannot be read, with the reason.
    pub(crate) fn verify_files(&self) -> (u64, Vec<(PathBuf, String)>) {
        let files: Vec<(u64, u64)> =
            self.catalog().iter().flat_map(|(hash, versions)| versions.iter().map(|v| (*hash, *v))).collect();
        let mut problems = Vec::new();
        let mut checked = 0u64;
        for (hash, version) in files {
            let path = self.dir.join(file_name(hash, version));
            match self.read_file(hash, version) {
                Ok(None) => continue,
                Ok(Some((stream, _))) if stream_hash(&stream) != hash => {
                    problems.push((path, "stream id in the file does not hash to its name".to_owned()));
                }
                Ok(Some(_)) => {}
                Err(Unreadable::Io(error)) => problems.push((path, error.to_string())),
                Err(Unreadable::Invalid(reason)) => problems.push((path, reason)),
            }
            checked += 1;
        }
        (checked, problems)
    }

    fn list(storage: &dyn Storage, dir: &Path) -> Result<HashMap<u64, Vec<u64>>> {
        let mut catalog: HashMap<u64, Vec<u64>> = HashMap::new();
        for name in storage.list_dir(dir).map_err(|e| Error::io("list directory", dir, e))? {
            if let Some((hash, version)) = parse_file_name(&name) {
                catalog.entry(hash).or_default().push(version);
            }
        }
        for versions in catalog.values_mut() {
            versions.sort_unstable();
        }
        Ok(catalog)
    }

    fn catalog(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<u64>>> {
        sync::lock(&self.catalog)
    }

    /// Writes a snapshot atomically and prunes the stream's older ones. The caller has
    /// checked the stream and version.
    pub(crate) fn save(&self, stream: &str, version: u64, state: &[u8]) -> Result<()> {
        let _span = tracing::info_span!("snapshot", stream, version, bytes = state.len()).entered();
        if state.len() > SNAPSHOT_BYTES_MAX {
            return Err(Error::invalid(format!(
                "snapshot of stream {stream:?} is {} bytes, above the limit of {SNAPSHOT_BYTES_MAX}",
                state.len()
            )));
        }
        let hash = stream_hash(stream);
        let bytes = snapshot_file::encode(stream, version, crate::clock::unix_micros_now() / 1000, state);
        let path = self.dir.join(file_name(hash, version));
        let tmp = self.dir.join(format!(
            "{}.{}{}",
            file_name(hash, version),
            self.tmp_counter.fetch_add(1, Ordering::Relaxed),
            crate::layout::TMP_SUFFIX
        ));
        let storage = &*self.storage;
        let file = storage.open(&tmp, OpenMode::CreateNew).map_err(|e| Error::io("create snapshot", &tmp, e))?;
        let written = file.write_all_at(&bytes, 0).and_then(|()| file.sync_data());
        drop(file);
        if let Err(error) = written.and_then(|()| storage.rename(&tmp, &path)) {
            let _ = storage.remove_file(&tmp);
            return Err(Error::io("write snapshot", &path, error));
        }
        storage.sync_dir(&self.dir).map_err(|e| Error::io("sync directory", &self.dir, e))?;
        let mut catalog = self.catalog();
        let versions = catalog.entry(hash).or_default();
        if let Err(at) = versions.binary_search(&version) {
            versions.insert(at, version);
        }
        self.prune(stream, hash, versions)
    }

    /// Removes this stream's snapshots beyond the newest [`SNAPSHOTS_KEPT`].
    fn prune(&self, stream: &str, hash: u64, versions: &mut Vec<u64>) -> Result<()> {
        let mut kept = 0usize;
        let mut removed = Vec::new();
        for &version in versions.iter().rev() {
            if self.file_stream(hash, version).as_deref() != Some(stream) {
                continue;
            }
            kept += 1;
            if kept > SNAPSHOTS_KEPT {
                removed.push(version);
            }
        }
        self.remove_files(hash, &removed, versions)
    }

    fn remove_files(&self, hash: u64, removed: &[u64], versions: &mut Vec<u64>) -> Result<()> {
        if removed.is_empty() {
            return Ok(());
        }
        for version in removed {
            let path = self.dir.join(file_name(hash, *version));
            match self.storage.remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(Error::io("remove snapshot", &path, error)),
            }
        }
        versions.retain(|v| !removed.contains(v));
        self.storage.sync_dir(&self.dir).map_err(|e| Error::io("sync directory", &self.dir, e))
    }

    /// The stream id recorded in a snapshot file, if the file is valid.
    fn file_stream(&self, hash: u64, version: u64) -> Option<String> {
        self.read_file(hash, version).ok().flatten().map(|(stream, _)| stream)
    }

    /// Reads and verifies a snapshot file: `Ok(None)` if it is gone.
    fn read_file(&self, hash: u64, version: u64) -> Result<Option<(String, Snapshot)>, Unreadable> {
        let path = self.dir.join(file_name(hash, version));
        let limit = (SNAPSHOT_BYTES_MAX + crate::options::STREAM_ID_BYTES_MAX + 64) as u64;
        let bytes = match read_whole(&*self.storage, &path, limit) {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Unreadable::Invalid(error.to_string()));
            }
            Err(error) => return Err(Unreadable::Io(Error::io("read snapshot", path, error))),
        };
        let decoded = snapshot_file::decode(&bytes).map_err(|reason| Unreadable::Invalid(reason.to_owned()))?;
        if decoded.version != version {
            return Err(Unreadable::Invalid("version in the file differs from its name".to_owned()));
        }
        let stream = decoded.stream.to_owned();
        let data = bytes.slice(decoded.data);
        Ok(Some((stream, Snapshot { version, data })))
    }

    /// The newest valid snapshot of `stream`. When newer files are invalid (skipped and
    /// logged), an older snapshot is returned only if `first_version` — the stream's first
    /// stored event version — shows the events after it are still there: retention may
    /// have discarded them up to the damaged newest snapshot, and a fallback without them
    /// would rebuild a wrong state. Then the damage is reported instead.
    pub(crate) fn load(&self, stream: &str, first_version: impl Fn() -> Option<u64>) -> Result<Option<Snapshot>> {
        let hash = stream_hash(stream);
        let versions = self.catalog().get(&hash).cloned().unwrap_or_default();
        let mut skipped: Option<(u64, String)> = None;
        for &version in versions.iter().rev() {
            match self.read_file(hash, version) {
                Ok(Some((owner, snapshot))) if owner == stream => {
                    let Some((damaged, reason)) = skipped else { return Ok(Some(snapshot)) };
                    if first_version().is_none_or(|first| first <= version.saturating_add(1)) {
                        return Ok(Some(snapshot));
                    }
                    return Err(Error::corruption(
                        self.dir.join(file_name(hash, damaged)),
                        0,
                        format!(
                            "{reason}; the previous snapshot (version {version}) cannot stand in: retention \
                             discarded the events after it"
                        ),
                    ));
                }
                Ok(_) => {}
                Err(Unreadable::Io(error)) => return Err(error),
                Err(Unreadable::Invalid(reason)) => {
                    tracing::warn!(
                        stream,
                        version,
                        file = %self.dir.join(file_name(hash, version)).display(),
                        reason,
                        "skipping an invalid snapshot; falling back to an older one"
                    );
                    skipped.get_or_insert((version, reason));
                }
            }
        }
        Ok(None)
    }

    /// Removes every snapshot of `stream`, and invalid files that could be its own; returns
    /// how many files were removed.
    pub(crate) fn remove_stream(&self, stream: &str) -> Result<usize> {
        let hash = stream_hash(stream);
        let mut catalog = self.catalog();
        let Some(versions) = catalog.get_mut(&hash) else { return Ok(0) };
        let removed: Vec<u64> = versions
            .iter()
            .copied()
            .filter(|&version| match self.read_file(hash, version) {
                Ok(Some((owner, _))) => owner == stream,
                Ok(None) => false,
                Err(_) => true,
            })
            .collect();
        self.remove_files(hash, &removed, versions)?;
        Ok(removed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_file_name(&file_name(0xab, 7)), Some((0xab, 7)));
        assert_eq!(parse_file_name("snapshot-ab-7.snap"), None);
        assert_eq!(parse_file_name("segment-0000000000000001.log"), None);
    }
}
