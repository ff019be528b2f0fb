//! The storage seam: every file operation of the engine goes through [`Storage`].
//!
//! Open a store on another implementation with
//! [`Store::open_with_storage`](crate::Store::open_with_storage); the crash tests use
//! `SimStorage` (crate `chronicle-testkit`), which keeps written and durable bytes apart and
//! can lose power.
//!
//! [`MemoryStorage`] keeps every file in memory: the backend of
//! [`Store::open_in_memory`](crate::Store::open_in_memory).
//!
//! The real file system ([`fs::FileSystem`]) is the default. Tests plug in implementations
//! that separate written from durable bytes, inject errors and "lose power". The seam is a
//! trait object; its calls are per write group, per file open or per mapping, never per event,
//! so dynamic dispatch costs nothing measurable on the hot paths.

mod fs;
mod memory;
pub(crate) mod read_only;

pub use self::fs::FileSystem;
pub use self::memory::{MEMORY_FILE_BYTES_MAX, MemoryStorage};

use std::any::Any;
use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, read only.
    Read,
    /// Existing file, read and write.
    ReadWrite,
    /// A new file, read and write; fails if anything (including a symlink) is at the path.
    CreateNew,
}

/// Why a directory lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Someone else holds it.
    Held,
    /// The lock file could not be opened or locked.
    Io(io::Error),
}

/// A held lock; dropping it releases the lock.
pub type LockGuard = Box<dyn Any + Send + Sync>;

/// File-system operations used by the engine.
///
/// Implementations must make `rename` atomic and must not report a `sync_data` or
/// `sync_dir` as successful unless the data (or directory entries) would survive power loss.
///
/// ```
/// use chronicle::storage::{FileSystem, Storage};
/// let dir = tempfile::tempdir()?;
/// FileSystem.create_dir_all(&dir.path().join("a/b"))?;
/// assert!(FileSystem.list_dir(dir.path())?.is_empty()); // files only
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Storage: Send + Sync + Debug + 'static {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory (files only; order unspecified).
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on the file at `path` (created if missing), held until the
    /// guard drops.
    fn lock(&self, path: &Path) -> Result<LockGuard, LockError>;
    /// Whether the engine may call this storage from a helper thread while the writer
    /// thread works (to zero-fill the next segment ahead of a roll, segment-format.md §3.5).
    /// `false` runs that work on the writer thread instead, so that the sequence of calls
    /// is the same in every run: a storage that numbers its calls to inject faults at the
    /// Nth one says `false`.
    fn allows_background_io(&self) -> bool {
        true
    }
}

/// One open file.
///
/// ```
/// use chronicle::storage::{FileSystem, OpenMode, Storage};
/// let dir = tempfile::tempdir()?;
/// let file = FileSystem.open(&dir.path().join("f"), OpenMode::CreateNew)?;
/// file.write_all_at(b"hello", 0)?;
/// file.sync_data()?;
/// // SAFETY: nothing truncates or rewrites this private file while the view lives, and
/// // only its 5 bytes are read.
/// #[allow(unsafe_code)]
/// let view = unsafe { file.map(5)? };
/// assert_eq!(&view[..], b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[allow(clippy::len_without_is_empty)] // a file's length is a number, not a collection size
pub trait StorageFile: Send + Sync + Debug {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Fills `buf` from `offset`; errors if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Current length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes bytes `[offset, offset + len)` zeros that are *written*, extending the file if
    /// needed: later writes there change neither the file's size nor its allocation, which
    /// is what makes their fdatasync cheap (preallocated segments, segment-format.md §3.5).
    /// Not durable until `sync_data`. The default writes zeros in 1 MiB pieces. A storage
    /// for which allocation means nothing may leave bytes at or past its current end absent
    /// instead (`MemoryStorage` does, so memory holds only what was written): the engine
    /// reads a log that ends with the file like one followed by zeros.
    ///
    /// ```
    /// use chronicle::storage::{FileSystem, OpenMode, Storage};
    /// let dir = tempfile::tempdir()?;
    /// let file = FileSystem.open(&dir.path().join("f"), OpenMode::CreateNew)?;
    /// file.zero_fill(0, 3 << 20)?;
    /// assert_eq!(file.len()?, 3 << 20);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The write's error (`ENOSPC` when the device is full).
    fn zero_fill(&self, offset: u64, len: u64) -> io::Result<()> {
        const PIECE_BYTES: u64 = 1 << 20;
        let zeros = vec![0u8; len.min(PIECE_BYTES) as usize];
        let mut done = 0;
        while done < len {
            let piece = (len - done).min(PIECE_BYTES) as usize;
            self.write_all_at(zeros.get(..piece).unwrap_or_default(), offset + done)?;
            done += piece as u64;
        }
        Ok(())
    }
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Whether a view from [`StorageFile::map`] shows bytes written after it was made (a
    /// shared memory map) rather than a copy of the bytes at that moment. The engine maps an
    /// active segment once, with room to grow, when views are live, and otherwise takes a
    /// copy no longer than its committed length, taken again when more is committed: a
    /// preallocated file is already as long as it will get, so only the committed length
    /// says which bytes of a copy are current.
    fn map_is_live(&self) -> bool {
        false
    }
    /// A read-only view of the file's first `capacity` bytes. The real file system maps the
    /// file (bytes written later below `capacity` become visible through the same map).
    /// Other implementations may return a copy no longer than the file; callers map
    /// again when they need more. The view does not keep the file open: it stays readable
    /// after this handle is dropped and after the file is unlinked.
    ///
    /// # Safety
    ///
    /// A memory map is only as sound as the file under it, and the returned `Bytes` reads
    /// like any other slice, so the caller must guarantee, for as long as the view or any
    /// clone or slice of it exists:
    ///
    /// 1. No byte at or past the file's length is read through it. The view may be longer
    ///    than the file (`capacity` above the length); touching a page past the end of the
    ///    file raises SIGBUS.
    /// 2. The file is not truncated (`set_len` through any handle, or by another process)
    ///    below a byte that is read through the view: that turns a valid read into rule 1.
    /// 3. No byte is written while it may be read through the view: a `&[u8]` must not
    ///    change under its reader. Appending past the bytes being read is allowed.
    ///
    /// Implementations that return copies (`MemoryStorage`, and `SimStorage` in chronicle-testkit) do not rely on these rules,
    /// but a caller cannot know which kind it holds, so it upholds them for every storage.
    /// The engine does so as `segment-format.md` §5 and §8 describe: segments are
    /// append-only and read only below their committed length, recovery truncates a torn
    /// tail before anything maps the segment, compaction removes whole files (unlinking
    /// keeps a map valid), index files are written under a temporary name and renamed, and
    /// the directory lock keeps other stores off the files.
    // The crate denies `unsafe_code`; this declaration is the one place the engine's mapping
    // contract is stated, and every caller says how it keeps it (`// SAFETY:`).
    #[allow(unsafe_code)]
    unsafe fn map(&self, capacity: u64) -> io::Result<Bytes>;
}

/// Writes `bytes` to `tmp` (replacing a leftover) and renames it over `path`, without
/// fsync: for derived files (index files, the stream-table checkpoint), which are checked
/// when read and rebuilt or ignored if a crash tore or lost them.
pub(crate) fn write_derived(storage: &dyn Storage, path: &Path, tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    match storage.remove_file(tmp) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let file = storage.open(tmp, OpenMode::CreateNew)?;
    file.write_all_at(bytes, 0)?;
    drop(file);
    storage.rename(tmp, path)
}

/// Writes `bytes` to `tmp` (replacing a leftover), fsyncs it, renames it over `path` and
/// fsyncs `dir`: for files that cannot be rebuilt (the retention table, consumer checkpoints,
/// parked events). On failure the temporary file is removed (best effort) and the previous
/// file at `path` is still in place.
pub(crate) fn write_durable(
    storage: &dyn Storage,
    dir: &Path,
    path: &Path,
    tmp: &Path,
    bytes: &[u8],
) -> io::Result<()> {
    match storage.remove_file(tmp) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let file = storage.open(tmp, OpenMode::CreateNew)?;
    let written = file.write_all_at(bytes, 0).and_then(|()| file.sync_data());
    drop(file);
    if let Err(error) = written.and_then(|()| storage.rename(tmp, path)) {
        let _ = storage.remove_file(tmp);
        return Err(error);
    }
    storage.sync_dir(dir)
}

/// Reads a whole small file through the seam.
pub(crate) fn read_whole(storage: &dyn Storage, path: &Path, bytes_max: u64) -> io::Result<Vec<u8>> {
    let file = storage.open(path, OpenMode::Read)?;
    let len = file.len()?;
    if len > bytes_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("file is {len} bytes, above the limit of {bytes_max}"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}
