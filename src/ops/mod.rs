//! Operating a store: checking every byte of it (`verify`) and copying it while it runs
//! (`backup`, `restore`). Both read through the same segment handles as every reader, so
//! they work on a writable store and on a read-only one following another process.

pub(crate) mod backup;
pub(crate) mod verify;

pub use self::backup::{BackupReport, RestoreReport, restore};
pub use self::verify::{Problem, VERIFY_PROBLEMS_MAX, VerifyReport};
