//! The one place locks are taken. A lock poisoned by a panicking thread is taken anyway:
//! every structure behind these locks is left consistent at each point where code holding
//! the lock can panic (a commit group is rebuilt from scratch on each flush; tables are
//! replaced whole), and a panic in one caller's thread must not make the store unusable for
//! every other caller.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, through poisoning.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Takes `lock` for reading, through poisoning.
pub(crate) fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poison| poison.into_inner())
}

/// Takes `lock` for writing, through poisoning.
pub(crate) fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poison| poison.into_inner())
}
