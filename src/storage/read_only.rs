//! A storage that can only read: the seam under [`Store::open_read_only`](crate::Store::open_read_only).
//!
//! Every operation that could change the directory (create, write access, rename, remove,
//! directory sync, lock) is refused here, at the seam, whatever code above it asks for, so
//! a read-only store cannot write, truncate or remove anything even by mistake. Files are
//! opened read-only by the inner storage, so a write through one fails in the kernel too.

use std::io;
use std::path::Path;
use std::sync::Arc;

use super::{LockError, LockGuard, OpenMode, Storage, StorageFile};

/// Wraps `inner`, forwarding reads and refusing everything else.
#[derive(Debug)]
pub(crate) struct ReadOnlyStorage {
    inner: Arc<dyn Storage>,
}

impl ReadOnlyStorage {
    pub(crate) fn new(inner: Arc<dyn Storage>) -> Self {
        ReadOnlyStorage { inner }
    }
}

fn refused(what: &str, path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{what} of {} refused: the store is open read-only", path.display()),
    )
}

impl Storage for ReadOnlyStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        Err(refused("creating directory", path))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        match mode {
            OpenMode::Read => self.inner.open(path, OpenMode::Read),
            OpenMode::ReadWrite | OpenMode::CreateNew => Err(refused("opening for writing", path)),
        }
    }

    fn rename(&self, from: &Path, _to: &Path) -> io::Result<()> {
        Err(refused("rename", from))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        Err(refused("removal", path))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        Err(refused("directory sync", path))
    }

    fn lock(&self, path: &Path) -> Result<LockGuard, LockError> {
        Err(LockError::Io(refused("locking", path)))
    }

    fn allows_background_io(&self) -> bool {
        self.inner.allows_background_io()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FileSystem;

    #[test]
    fn refuses_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let storage = ReadOnlyStorage::new(Arc::new(FileSystem));
        let path = dir.path().join("f");
        assert!(storage.open(&path, OpenMode::CreateNew).is_err());
        assert!(storage.create_dir_all(&dir.path().join("d")).is_err());
        assert!(storage.sync_dir(dir.path()).is_err());
        assert!(storage.lock(&dir.path().join("LOCK")).is_err());
        std::fs::write(&path, b"x").unwrap();
        assert!(storage.open(&path, OpenMode::ReadWrite).is_err());
        assert!(storage.remove_file(&path).is_err());
        assert!(storage.rename(&path, &dir.path().join("g")).is_err());
        assert!(storage.open(&path, OpenMode::Read).unwrap().write_all_at(b"y", 0).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
