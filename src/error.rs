//! The one error type of the crate.
//!
//! Every variant says what went wrong and where (stream, file, offset) and carries its
//! source where there is one. Errors from the writer thread are cloned to every caller
//! of a failed group commit, so the I/O source is shared behind an [`Arc`].

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::event::ExpectedVersion;

/// Everything that can go wrong in chronicle.
///
/// Match with `{ .. }` patterns: variants may gain fields.
///
/// ```
/// use chronicle::{Error, ExpectedVersion, NewEvent, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("order-1", ExpectedVersion::NoStream, [NewEvent::new("Placed", "{}")])?;
/// let err = store
///     .append("order-1", ExpectedVersion::NoStream, [NewEvent::new("Placed", "{}")])
///     .unwrap_err();
/// assert!(matches!(err, Error::WrongExpectedVersion { actual: Some(0), .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream's current version did not satisfy the expected version; nothing was written.
    #[error("wrong expected version for stream {stream:?}: expected {expected:?}, actual {actual:?}")]
    WrongExpectedVersion {
        /// The stream appended to.
        stream: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's last version at the time of the check; `None` if it has no event.
        actual: Option<u64>,
    },
    /// The stream was deleted; it can be neither read nor appended to.
    #[error("stream {stream:?} is deleted")]
    StreamDeleted {
        /// The deleted stream.
        stream: String,
    },
    /// Another `Store` (in this or another process) holds the directory open.
    #[error("store directory {dir:?} is locked by another open store")]
    Locked {
        /// The store directory.
        dir: PathBuf,
    },
    /// An argument was rejected; nothing was written.
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What is wrong with the argument.
        message: String,
    },
    /// Bytes on disk failed validation (checksum, framing, limits); never returned as data.
    #[error("corruption in {file:?} at offset {offset}: {reason}")]
    Corruption {
        /// The file holding the bad bytes.
        file: PathBuf,
        /// Byte offset of the bad record or header within the file.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// An operating-system I/O call failed.
    #[error("I/O error during {operation} on {path:?}: {source}")]
    Io {
        /// What the store was doing (`"write"`, `"fdatasync"`, `"open"`, ...).
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The error from the operating system.
        #[source]
        source: Arc<io::Error>,
    },
    /// An earlier write or fsync failed, so the store refuses every later write.
    ///
    /// Reopen the store to recover: recovery rescans the log and keeps exactly what
    /// reached the disk.
    #[error("store refuses writes after an earlier failure: {cause}")]
    Poisoned {
        /// The failure that poisoned the store.
        cause: Arc<Error>,
    },
    /// A durable consumer of this name already has a live subscription (one per name).
    #[error("consumer {name:?} already has a live subscription")]
    ConsumerInUse {
        /// The consumer's name.
        name: String,
    },
    /// An [`AppendCondition`](crate::AppendCondition) failed: an event matching its filter
    /// was committed after its position; nothing was written.
    #[error(
        "append condition failed: event at position {position} (stream {stream:?}, type {event_type:?}) matches the filter and was committed after position {after:?}"
    )]
    ConditionFailed {
        /// The first conflicting event's position.
        position: u64,
        /// Its stream.
        stream: String,
        /// Its event type.
        event_type: String,
        /// The condition's position (`None`: no matching event may exist at all).
        after: Option<u64>,
    },
    /// The store was closed.
    #[error("store is closed")]
    Closed,
    /// The store was opened with [`Store::open_read_only`](crate::Store::open_read_only):
    /// it refuses every call that would write (append, delete, snapshot, retention, sync,
    /// seal, compact). Nothing was written.
    #[error("store {dir:?} is open read-only: {operation} refused")]
    ReadOnly {
        /// The store directory.
        dir: PathBuf,
        /// The refused call.
        operation: &'static str,
    },
    /// A backend other than the embedded engine (e.g. `chronicle-postgres`) failed: the
    /// database refused the statement, the connection broke, or a call timed out. Never
    /// returned by [`Store`](crate::Store). For an append, the message says whether the
    /// outcome is known; when it is not (the connection broke during commit), retry with
    /// event ids ([`NewEvent::with_id`](crate::NewEvent::with_id)): a retry of an append
    /// that did commit returns its original result.
    #[error("backend error: {message}")]
    Backend {
        /// What the backend was doing and what went wrong.
        message: String,
        /// The backend's own error, where there is one.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// An internal invariant did not hold: a bug in chronicle, never caused by the caller's
    /// input or the directory's bytes (those are `InvalidInput` and `Corruption`). Nothing
    /// was written by the call that reports it.
    #[error("internal error (a bug in chronicle, please report it): {message}")]
    Internal {
        /// What did not hold.
        message: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { operation, path: path.into(), source: Arc::new(source) }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidInput { message: message.into() }
    }

    /// An [`Error::Backend`] with `message` and the backend's own error as its source.
    ///
    /// ```
    /// let error = chronicle::Error::backend("connect to db", None);
    /// assert_eq!(error.to_string(), "backend error: connect to db");
    /// ```
    pub fn backend(message: impl Into<String>, source: Option<Arc<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Backend { message: message.into(), source }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Error::Internal { message: message.into() }
    }

    pub(crate) fn corruption(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption { file: file.into(), offset, reason: reason.into() }
    }
}
