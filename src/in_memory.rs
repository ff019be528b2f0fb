//! `Store::open_in_memory`: the same engine on [`MemoryStorage`], for unit tests.

use std::sync::Arc;

use crate::error::Result;
use crate::options::{Durability, Options};
use crate::storage::MemoryStorage;
use crate::store::Store;

/// The directory an in-memory store reports as its [`Store::path`]. It is virtual: nothing
/// is created at this path on the real file system.
///
/// ```
/// let store = chronicle::Store::open_in_memory()?;
/// assert_eq!(store.path(), std::path::Path::new(chronicle::IN_MEMORY_DIR));
/// # Ok::<(), chronicle::Error>(())
/// ```
pub const IN_MEMORY_DIR: &str = "/chronicle-in-memory";

impl Store {
    /// Opens an empty store held entirely in memory: the same engine as [`Store::open`]
    /// (same checks, versions, idempotent retries, snapshots, deletion, retention and
    /// compaction) on a [`MemoryStorage`], so nothing touches the file system. Everything
    /// is discarded when the last clone of the store drops. [`Store::path`] is
    /// [`IN_MEMORY_DIR`].
    ///
    /// The durability mode is [`Durability::Buffered`]: nothing in memory survives the
    /// process whatever the mode, and `Buffered` lets an append commit on the caller's
    /// thread. Use [`Store::open_in_memory_with`] for other options.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) only if the writer or compaction thread could not be
    /// started.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// let store = Store::open_in_memory()?;
    /// store.append("order-1", ExpectedVersion::NoStream, [NewEvent::new("Placed", "{}")])?;
    /// assert_eq!(store.stream_version("order-1")?, Some(0));
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    pub fn open_in_memory() -> Result<Store> {
        Store::open_in_memory_with(Options::default().durability(Durability::Buffered))
    }

    /// [`Store::open_in_memory`] with `options` (segment size, limits, retention, ...).
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for inconsistent options; as
    /// [`Store::open_in_memory`].
    ///
    /// ```
    /// use chronicle::{Options, Store};
    /// let store = Store::open_in_memory_with(Options::default().segment_bytes(64 * 1024))?;
    /// # let _ = store;
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    pub fn open_in_memory_with(options: Options) -> Result<Store> {
        Store::open_with_storage(IN_MEMORY_DIR, options, Arc::new(MemoryStorage::new()))
    }
}
