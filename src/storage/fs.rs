//! The real file system. This module holds the crate's only `unsafe` block: the memory
//! map behind [`StorageFile::map`], an `unsafe fn` whose callers carry its contract.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::{LockError, LockGuard, OpenMode, Storage, StorageFile};

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileSystem;

#[derive(Debug)]
struct FsFile(File);

impl Storage for FileSystem {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            // Regular files only: the store never follows a link planted in its directory. A
            // segment replaced by a link thus reads as missing, which recovery reports (the
            // positions it held are in no segment).
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            // O_CREAT|O_EXCL: fails on any existing entry, a planted symlink included, so
            // the store never writes through a link.
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
        };
        let file = options.open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        Ok(Arc::new(FsFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn lock(&self, path: &Path) -> Result<LockGuard, LockError> {
        // O_CREAT follows a symlink and would create its target outside the directory:
        // refuse a lock file that is a link.
        if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink()) {
            return Err(LockError::Io(io::Error::new(io::ErrorKind::InvalidInput, "lock file is a symlink")));
        }
        // Write access: some platforms refuse an exclusive lock on a read-only handle.
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(LockError::Io)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held),
            Err(std::fs::TryLockError::Error(error)) => Err(LockError::Io(error)),
        }
    }
}

impl StorageFile for FsFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn map_is_live(&self) -> bool {
        true
    }

    // An `unsafe fn` in the trait: the lint flags the declaration, not a use of unsafe.
    #[allow(unsafe_code)]
    unsafe fn map(&self, capacity: u64) -> io::Result<Bytes> {
        if capacity == 0 {
            return Ok(Bytes::new());
        }
        let len = usize::try_from(capacity).map_err(|_| io::Error::other("map length exceeds the address space"))?;
        // SAFETY: the map is read-only and shared; the caller upholds the contract of
        // `StorageFile::map` (no read past the end of the file, no truncation below a byte
        // read, no rewrite of bytes that may be read), which is exactly what makes reading
        // through a shared file map sound. The map holds no reference to `self.0`: it stays
        // valid after the descriptor is closed.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&self.0)? };
        Ok(Bytes::from_owner(map))
    }
}
