//! In-memory storage: the backend of [`Store::open_in_memory`](crate::Store::open_in_memory).
//!
//! Files are shared byte buffers; directory entries point at them, so (as on a POSIX file
//! system) an open handle keeps its file's bytes after a rename or removal of its name.
//! Nothing is ever durable and nothing needs to be: every `sync` succeeds at once and the
//! contents go when the last [`MemoryStorage`] clone and the last open file drop.
//!
//! `map` returns a *snapshot* of the file's current bytes (the trait allows it), copied once
//! per change of the file and shared by every map until the next write. The engine maps a
//! segment again only when a read reaches past its view, so a run of appends followed by
//! reads copies the active segment once, and sealed segments never again. Because the view
//! is an owned copy, no byte under it can change: `map` is trivially safe.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{LockError, LockGuard, OpenMode, Storage, StorageFile};

/// Largest in-memory file: a write or `set_len` beyond it fails with
/// [`io::ErrorKind::StorageFull`] instead of allocating without bound (a segment is at most
/// [`SEGMENT_BYTES_MAX`](crate::SEGMENT_BYTES_MAX) = 4 GiB, plus one group written past it).
///
/// ```
/// assert!(chronicle::storage::MEMORY_FILE_BYTES_MAX > chronicle::SEGMENT_BYTES_MAX);
/// ```
pub const MEMORY_FILE_BYTES_MAX: u64 = 5 << 30;

/// A file system held in memory. Clones share the same files.
///
/// ```
/// use std::path::Path;
/// use chronicle::storage::{MemoryStorage, OpenMode, Storage};
/// let memory = MemoryStorage::new();
/// memory.create_dir_all(Path::new("/db"))?;
/// let file = memory.open(Path::new("/db/f"), OpenMode::CreateNew)?;
/// file.write_all_at(b"hello", 0)?;
/// let mut buf = [0u8; 5];
/// file.read_exact_at(&mut buf, 0)?;
/// assert_eq!(&buf, b"hello");
/// memory.rename(Path::new("/db/f"), Path::new("/db/g"))?;
/// assert_eq!(memory.list_dir(Path::new("/db"))?, ["g"]);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct MemoryStorage {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, Arc<MemoryFileData>>,
    locks: BTreeSet<PathBuf>,
}

#[derive(Default)]
struct MemoryFileData {
    content: Mutex<Content>,
}

#[derive(Default)]
struct Content {
    bytes: Vec<u8>,
    /// A copy of `bytes` handed out by `map`, valid until the next change.
    view: Option<Bytes>,
}

impl fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock_state();
        f.debug_struct("MemoryStorage").field("dirs", &state.dirs.len()).field("files", &state.files.len()).finish()
    }
}

impl MemoryStorage {
    /// An empty file system: no directory, no file.
    ///
    /// ```
    /// use chronicle::storage::{MemoryStorage, Storage};
    /// assert!(MemoryStorage::new().list_dir(std::path::Path::new("/")).is_err());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

fn not_found() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

fn parent_of(path: &Path) -> io::Result<&Path> {
    path.parent().filter(|p| !p.as_os_str().is_empty()).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{} has no parent directory", path.display()))
    })
}

impl State {
    fn require_parent(&self, path: &Path) -> io::Result<()> {
        let parent = parent_of(path)?;
        if self.dirs.contains(parent) { Ok(()) } else { Err(not_found()) }
    }
}

impl Storage for MemoryStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock_state();
        // Like the real call: a file at the path or at an ancestor is in the way.
        for ancestor in path.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            if state.files.contains_key(ancestor) {
                let kind = if ancestor == path { io::ErrorKind::AlreadyExists } else { io::ErrorKind::NotADirectory };
                return Err(io::Error::from(kind));
            }
        }
        for ancestor in path.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.lock_state();
        if !state.dirs.contains(path) {
            return Err(not_found());
        }
        // Files only, as the trait asks: subdirectories are not entries the store reads.
        Ok(state
            .files
            .keys()
            .filter(|file| file.parent() == Some(path))
            .filter_map(|file| file.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut state = self.lock_state();
        state.require_parent(path)?;
        let data = match mode {
            OpenMode::Read | OpenMode::ReadWrite => Arc::clone(state.files.get(path).ok_or_else(not_found)?),
            OpenMode::CreateNew => {
                if state.files.contains_key(path) || state.dirs.contains(path) {
                    return Err(io::Error::from(io::ErrorKind::AlreadyExists));
                }
                let data = Arc::new(MemoryFileData::default());
                state.files.insert(path.to_path_buf(), Arc::clone(&data));
                data
            }
        };
        Ok(Arc::new(MemoryFile { data, writable: mode != OpenMode::Read, path: path.to_path_buf() }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock_state();
        state.require_parent(to)?;
        if state.dirs.contains(to) {
            return Err(io::Error::from(io::ErrorKind::IsADirectory));
        }
        let data = state.files.remove(from).ok_or_else(not_found)?;
        // Replacing `to` is atomic: its old bytes stay with the handles still open on it.
        state.files.insert(to.to_path_buf(), data);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.lock_state().files.remove(path).map(drop).ok_or_else(not_found)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if self.lock_state().dirs.contains(path) { Ok(()) } else { Err(not_found()) }
    }

    /// One process's memory: nothing to gain from a helper thread.
    fn allows_background_io(&self) -> bool {
        false
    }

    fn lock(&self, path: &Path) -> Result<LockGuard, LockError> {
        let mut state = self.lock_state();
        state.require_parent(path).map_err(LockError::Io)?;
        if !state.files.contains_key(path) {
            state.files.insert(path.to_path_buf(), Arc::new(MemoryFileData::default()));
        }
        if !state.locks.insert(path.to_path_buf()) {
            return Err(LockError::Held);
        }
        Ok(Box::new(MemoryLock { storage: self.clone(), path: path.to_path_buf() }))
    }
}

/// A held lock of a [`MemoryStorage`]; released on drop.
struct MemoryLock {
    storage: MemoryStorage,
    path: PathBuf,
}

impl Drop for MemoryLock {
    fn drop(&mut self) {
        self.storage.lock_state().locks.remove(&self.path);
    }
}

/// An open file of a [`MemoryStorage`].
struct MemoryFile {
    data: Arc<MemoryFileData>,
    writable: bool,
    path: PathBuf,
}

impl fmt::Debug for MemoryFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryFile").field("path", &self.path).field("writable", &self.writable).finish()
    }
}

impl MemoryFile {
    fn content(&self) -> MutexGuard<'_, Content> {
        self.data.content.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn writable_content(&self) -> io::Result<MutexGuard<'_, Content>> {
        if !self.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "file is open read-only"));
        }
        Ok(self.content())
    }
}

/// `len` as an in-memory size, refused above [`MEMORY_FILE_BYTES_MAX`].
fn bounded_len(len: u64) -> io::Result<usize> {
    if len > MEMORY_FILE_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!("in-memory file of {len} bytes, above the limit of {MEMORY_FILE_BYTES_MAX}"),
        ));
    }
    usize::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::StorageFull, "file exceeds the address space"))
}

impl StorageFile for MemoryFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "write past the largest offset"))?;
        let end = bounded_len(end)?;
        let start = end - buf.len();
        let mut content = self.writable_content()?;
        if content.bytes.len() < end {
            content.bytes.resize(end, 0);
        }
        let target = content
            .bytes
            .get_mut(start..end)
            .ok_or_else(|| io::Error::other("write range outside the file after resizing it"))?;
        target.copy_from_slice(buf);
        content.view = None;
        Ok(())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let content = self.content();
        let source = usize::try_from(offset)
            .ok()
            .and_then(|start| content.bytes.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(source);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.content().bytes.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = bounded_len(len)?;
        let mut content = self.writable_content()?;
        content.bytes.resize(len, 0);
        // A file cut to a fraction of its size gives the memory back.
        if content.bytes.capacity() / 2 > len {
            content.bytes.shrink_to(len);
        }
        content.view = None;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    /// Zeroes what lies inside the file and leaves the rest absent: preallocation saves
    /// nothing in memory, and a store would otherwise hold a whole empty segment.
    fn zero_fill(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut content = self.writable_content()?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(content.bytes.len());
        let end = usize::try_from(offset.saturating_add(len)).unwrap_or(usize::MAX).min(content.bytes.len());
        if let Some(target) = content.bytes.get_mut(start..end) {
            target.fill(0);
        }
        content.view = None;
        Ok(())
    }

    // A copy, so nothing here relies on the caller's contract; the trait method is unsafe
    // for the real file system's sake.
    #[allow(unsafe_code)]
    unsafe fn map(&self, capacity: u64) -> io::Result<Bytes> {
        let mut content = self.content();
        let len = usize::try_from(capacity).unwrap_or(usize::MAX).min(content.bytes.len());
        let view = match &content.view {
            Some(view) => view.clone(),
            None => {
                let view = Bytes::copy_from_slice(&content.bytes);
                content.view = Some(view.clone());
                view
            }
        };
        Ok(view.slice(..len.min(view.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `map` of a memory file: a copy, so no contract to keep.
    #[allow(unsafe_code)]
    fn view(file: &dyn StorageFile, capacity: u64) -> io::Result<Bytes> {
        // SAFETY: MemoryStorage::map returns an owned copy of the bytes; nothing can change
        // or truncate them under the returned `Bytes`.
        unsafe { file.map(capacity) }
    }

    fn storage_with_dir() -> MemoryStorage {
        let memory = MemoryStorage::new();
        memory.create_dir_all(Path::new("/d/e")).unwrap();
        memory
    }

    #[test]
    fn open_modes_follow_the_trait() {
        let memory = storage_with_dir();
        let path = Path::new("/d/f");
        assert_eq!(memory.open(path, OpenMode::Read).unwrap_err().kind(), io::ErrorKind::NotFound);
        let file = memory.open(path, OpenMode::CreateNew).unwrap();
        assert_eq!(memory.open(path, OpenMode::CreateNew).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            memory.open(Path::new("/d/e"), OpenMode::CreateNew).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(memory.open(Path::new("/x/f"), OpenMode::CreateNew).unwrap_err().kind(), io::ErrorKind::NotFound);
        file.write_all_at(b"abc", 2).unwrap();
        let read_only = memory.open(path, OpenMode::Read).unwrap();
        assert!(read_only.write_all_at(b"x", 0).is_err());
        let mut buf = [9u8; 5];
        read_only.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [0, 0, b'a', b'b', b'c']);
        assert_eq!(read_only.read_exact_at(&mut buf, 1).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(memory.list_dir(Path::new("/d")).unwrap(), ["f"], "files only");
    }

    #[test]
    fn maps_are_snapshots_that_later_writes_do_not_change() {
        let memory = storage_with_dir();
        let file = memory.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"one", 0).unwrap();
        let first = view(&*file, 1 << 20).unwrap();
        file.write_all_at(b"ONE two", 0).unwrap();
        assert_eq!(&first[..], b"one");
        assert_eq!(&view(&*file, 5).unwrap()[..], b"ONE t");
        assert_eq!(&view(&*file, 100).unwrap()[..], b"ONE two");
        file.set_len(2).unwrap();
        assert_eq!(&view(&*file, 100).unwrap()[..], b"ON");
        assert!(view(&*file, 0).unwrap().is_empty());
    }

    #[test]
    fn handles_keep_their_bytes_across_rename_and_remove() {
        let memory = storage_with_dir();
        let old = memory.open(Path::new("/d/a"), OpenMode::CreateNew).unwrap();
        old.write_all_at(b"old", 0).unwrap();
        let new = memory.open(Path::new("/d/b"), OpenMode::CreateNew).unwrap();
        new.write_all_at(b"new", 0).unwrap();
        memory.rename(Path::new("/d/b"), Path::new("/d/a")).unwrap();
        assert_eq!(&view(&*old, 3).unwrap()[..], b"old");
        let reopened = memory.open(Path::new("/d/a"), OpenMode::Read).unwrap();
        assert_eq!(&view(&*reopened, 3).unwrap()[..], b"new");
        memory.remove_file(Path::new("/d/a")).unwrap();
        assert_eq!(&view(&*reopened, 3).unwrap()[..], b"new");
        assert_eq!(memory.remove_file(Path::new("/d/a")).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(memory.list_dir(Path::new("/d")).unwrap().is_empty());
    }

    #[test]
    fn locks_are_exclusive_until_dropped() {
        let memory = storage_with_dir();
        let guard = memory.lock(Path::new("/d/LOCK")).unwrap();
        assert!(matches!(memory.lock(Path::new("/d/LOCK")), Err(LockError::Held)));
        drop(guard);
        assert!(memory.lock(Path::new("/d/LOCK")).is_ok());
        assert!(matches!(memory.lock(Path::new("/nowhere/LOCK")), Err(LockError::Io(_))));
    }

    #[test]
    fn sizes_are_bounded_and_dirs_refuse_files_in_the_way() {
        let memory = storage_with_dir();
        let file = memory.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
        assert_eq!(file.write_all_at(b"x", MEMORY_FILE_BYTES_MAX).unwrap_err().kind(), io::ErrorKind::StorageFull);
        assert_eq!(file.set_len(u64::MAX).unwrap_err().kind(), io::ErrorKind::StorageFull);
        assert!(file.write_all_at(b"x", u64::MAX).is_err());
        assert_eq!(memory.create_dir_all(Path::new("/d/f")).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(memory.create_dir_all(Path::new("/d/f/g")).unwrap_err().kind(), io::ErrorKind::NotADirectory);
    }
}
