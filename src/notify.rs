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
#[cfg(feature = "async")]
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::task::Waker;
use std::time::Instant;

use crate::subscription::tail::LiveTail;
use crate::sync;

/// Shards of the notifier: a follower sleeps on shard `key % NOTIFY_SHARDS`, so that the
/// threads one commit wakes do not all queue for one mutex (and the writer behind them).
const NOTIFY_SHARDS: usize = 8;

/// Where followers of the log sleep until the writer publishes more, or the store stops.
#[derive(Debug, Default)]
pub(crate) struct CommitNotifier {
    shards: [Shard; NOTIFY_SHARDS],
    /// Registered async wakers.
    wakers_waiting: AtomicUsize,
    /// Async followers waiting for the next commit, by key (one entry per subscription).
    wakers: Mutex<HashMap<u64, Waker>>,
    /// Hands out keys.
    next_key: AtomicU64,
    /// The decoded live tail the followers share (they fill it; the writer never does).
    pub(crate) tail: LiveTail,
    /// Async followers to wake at a given time.
    #[cfg(feature = "async")]
    timers: Arc<Timers>,
}

/// Async wakers to wake at a time, by key: an async subscription's batch window, and the
/// refresh interval of one on a read-only store (whose commits no writer in this process
/// publishes). A waker has no timer of its own and the core has no runtime, so one thread
/// per store sleeps until the earliest time; it starts on first use and exits after
/// [`TIMER_IDLE_EXIT`] without work. It holds only this table, never the store.
#[cfg(feature = "async")]
#[derive(Debug, Default)]
struct Timers {
    state: Mutex<TimerState>,
    changed: Condvar,
}

#[cfg(feature = "async")]
#[derive(Debug, Default)]
struct TimerState {
    /// At most one entry per subscription key.
    due: HashMap<u64, (Instant, Waker)>,
    running: bool,
}

/// How long the timer thread waits for work before it exits.
#[cfg(feature = "async")]
const TIMER_IDLE_EXIT: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(feature = "async")]
impl Timers {
    fn run(self: Arc<Self>) {
        let mut state = sync::lock(&self.state);
        loop {
            let now = Instant::now();
            let fired: Vec<u64> = state.due.iter().filter(|(_, (at, _))| *at <= now).map(|(key, _)| *key).collect();
            if !fired.is_empty() {
                let wakers: Vec<Waker> = fired.iter().filter_map(|key| state.due.remove(key)).map(|(_, w)| w).collect();
                drop(state);
                for waker in wakers {
                    waker.wake();
                }
                state = sync::lock(&self.state);
                continue;
            }
            match state.due.values().map(|(at, _)| *at).min() {
                Some(earliest) => {
                    state = self.changed.wait_timeout(state, earliest - now).unwrap_or_else(|p| p.into_inner()).0;
                }
                None => {
                    let (guard, timeout) =
                        self.changed.wait_timeout(state, TIMER_IDLE_EXIT).unwrap_or_else(|p| p.into_inner());
                    state = guard;
                    if timeout.timed_out() && state.due.is_empty() {
                        state.running = false;
                        return;
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    /// Threads asleep (or about to be) on this shard.
    waiting: AtomicUsize,
    lock: Mutex<()>,
    changed: Condvar,
}

impl CommitNotifier {
    /// Wakes every follower (writer thread, after publishing; also stop, close, poison):
    /// at most one lock and one `notify_all` per shard with sleepers, nothing when nobody
    /// waits.
    pub(crate) fn notify(&self) {
        for shard in &self.shards {
            if shard.waiting.load(Ordering::SeqCst) > 0 {
                let _guard = sync::lock(&shard.lock);
                shard.changed.notify_all();
            }
        }
        if self.wakers_waiting.load(Ordering::SeqCst) > 0 {
            let wakers = {
                let mut wakers = sync::lock(&self.wakers);
                self.wakers_waiting.fetch_sub(wakers.len(), Ordering::SeqCst);
                std::mem::take(&mut *wakers)
            };
            for waker in wakers.into_values() {
                waker.wake();
            }
        }
    }

    /// Blocks until `ready()` holds or `deadline` passes; returns whether `ready()` held.
    /// `ready` is evaluated under the shard's lock after this thread counted itself as
    /// waiting, so a notification sent after a `false` answer always wakes it.
    pub(crate) fn wait_until(&self, key: u64, deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> bool {
        let shard = &self.shards[(key % NOTIFY_SHARDS as u64) as usize];
        let mut guard = sync::lock(&shard.lock);
        shard.waiting.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if ready() {
                break true;
            }
            match deadline {
                None => guard = shard.changed.wait(guard).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break false;
                    }
                    guard = shard.changed.wait_timeout(guard, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        };
        shard.waiting.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
        result
    }

    /// A key for [`CommitNotifier::wait_until`] and [`CommitNotifier::register`].
    pub(crate) fn new_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers `waker` to be woken at the next notification, then returns `ready()`
    /// evaluated under the lock (the caller re-checks: `true` means do not sleep).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn register(&self, key: u64, waker: &Waker, ready: impl FnOnce() -> bool) -> bool {
        let mut wakers = sync::lock(&self.wakers);
        match wakers.get_mut(&key) {
            Some(existing) => existing.clone_from(waker),
            None => {
                wakers.insert(key, waker.clone());
                self.wakers_waiting.fetch_add(1, Ordering::SeqCst);
            }
        }
        ready()
    }

    /// Forgets the waker registered under `key` (a subscription dropped while pending),
    /// and its timer.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn unregister(&self, key: u64) {
        let mut wakers = sync::lock(&self.wakers);
        if wakers.remove(&key).is_some() {
            self.wakers_waiting.fetch_sub(1, Ordering::SeqCst);
        }
        drop(wakers);
        #[cfg(feature = "async")]
        sync::lock(&self.timers.state).due.remove(&key);
    }

    /// Wakes `waker` at `at` (replacing `key`'s earlier timer); `false` if no timer thread
    /// could be started (then nothing is scheduled).
    #[cfg(feature = "async")]
    pub(crate) fn wake_at(&self, key: u64, at: Instant, waker: &Waker) -> bool {
        let mut state = sync::lock(&self.timers.state);
        state.due.insert(key, (at, waker.clone()));
        if state.running {
            self.timers.changed.notify_one();
            return true;
        }
        let timers = Arc::clone(&self.timers);
        match std::thread::Builder::new().name("chronicle-follow-timer".into()).spawn(move || timers.run()) {
            Ok(_) => {
                state.running = true;
                true
            }
            Err(_) => {
                state.due.remove(&key);
                false
            }
        }
    }
}
