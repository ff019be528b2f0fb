//! The commit notifier: how the writer wakes everything that follows the log.
//!
//! The writer publishes "committed up to position P" (`Shared::publish_position`) and then
//! calls [`CommitNotifier::notify`]. That call is O(1) in the number of followers: one
//! atomic load when nobody waits, else one lock and one `notify_all` on one condition
//! variable (plus waking the async wakers registered since the last commit, each woken
//! once, after the lock is released). Followers never run on the writer's thread and never
//! make it wait for them: a slow follower is simply one that has not come back yet, and it
//! reads what it missed from the segments.
//!
//! No wake-up is lost: a follower counts itself in `waiting` (SeqCst) *before* it re-checks
//! the published end under the lock, and the writer stores the end (SeqCst) *before* it
//! reads `waiting`. So either the follower sees the new end, or the writer sees the
//! follower and takes the lock, which orders its `notify_all` after the follower's check.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::task::Waker;
use std::time::Instant;

use crate::sync;

/// Where followers of the log sleep until the writer publishes more, or the store stops.
#[derive(Debug, Default)]
pub(crate) struct CommitNotifier {
    /// Threads asleep in [`CommitNotifier::wait_until`] plus registered wakers.
    waiting: AtomicUsize,
    state: Mutex<WaitState>,
    changed: Condvar,
    /// Hands out keys for async wakers.
    next_key: AtomicU64,
}

#[derive(Debug, Default)]
struct WaitState {
    /// Async followers waiting for the next commit, by key (one entry per subscription).
    wakers: HashMap<u64, Waker>,
}

impl CommitNotifier {
    /// Wakes every follower (writer thread, after publishing; also stop, close, poison).
    pub(crate) fn notify(&self) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let wakers = {
            let mut state = sync::lock(&self.state);
            let wakers = std::mem::take(&mut state.wakers);
            self.waiting.fetch_sub(wakers.len(), Ordering::SeqCst);
            self.changed.notify_all();
            wakers
        };
        for waker in wakers.into_values() {
            waker.wake();
        }
    }

    /// Blocks until `ready()` holds or `deadline` passes; returns whether `ready()` held.
    /// `ready` is evaluated under the notifier's lock after this thread counted itself as
    /// waiting, so a notification sent after a `false` answer always wakes it.
    pub(crate) fn wait_until(&self, deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> bool {
        let mut state = sync::lock(&self.state);
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if ready() {
                break true;
            }
            match deadline {
                None => state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break false;
                    }
                    state = self.changed.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        drop(state);
        result
    }

    /// A key for [`CommitNotifier::register`].
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn new_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    /// Registers `waker` to be woken at the next notification, then returns `ready()`
    /// evaluated under the lock (the caller re-checks: `true` means do not sleep).
    pub(crate) fn register(&self, key: u64, waker: &Waker, ready: impl FnOnce() -> bool) -> bool {
        let mut state = sync::lock(&self.state);
        match state.wakers.get_mut(&key) {
            Some(existing) => existing.clone_from(waker),
            None => {
                state.wakers.insert(key, waker.clone());
                self.waiting.fetch_add(1, Ordering::SeqCst);
            }
        }
        ready()
    }

    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    /// Forgets the waker registered under `key` (a subscription dropped while pending).
    pub(crate) fn unregister(&self, key: u64) {
        let mut state = sync::lock(&self.state);
        if state.wakers.remove(&key).is_some() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
