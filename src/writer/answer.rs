//! The one-shot answer slot an appending thread waits on, and the condition variable all
//! waiters of one store sleep on.
//!
//! The writer fills the slots of a whole commit group, then wakes the waiters with one
//! `notify_all` per shard that has any: a few system calls per group, where waking each
//! caller on its own would cost one per append, serially on the writer thread, longer than
//! the fsync itself with 64 callers. Waiters are spread over shards so that, once woken,
//! they do not all queue for one mutex. They sleep without spinning first (unless the
//! answer is due within microseconds): a channel's blocking receive would spin and yield,
//! taking the CPU from the writer thread that is to answer them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::AppendAnswer;
use crate::error::Error;
use crate::shared::Shared;
use crate::sync;

/// Where the writer puts one append's answer for the thread that waits for it.
#[derive(Debug)]
pub(crate) struct AnswerSlot {
    answer: Mutex<Option<AppendAnswer>>,
    /// Set after `answer` is filled: lets a waiter poll without the lock.
    ready: AtomicBool,
    /// Which shard of [`Waiters`] this thread sleeps on.
    shard: usize,
}

/// Shards of [`Waiters`]: threads are spread over them in turn.
const WAITER_SHARDS: usize = 8;

/// Hands out shards to threads in turn.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// Where the callers of one store sleep until their answers are ready.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    shards: [WaiterShard; WAITER_SHARDS],
}

/// One condition variable and the number of threads asleep on it.
#[derive(Debug, Default)]
struct WaiterShard {
    sleeping: Mutex<usize>,
    answered: Condvar,
}

impl Waiters {
    /// Wakes every waiter (call after filling the slots of a group).
    pub(crate) fn notify_all(&self) {
        for shard in &self.shards {
            // Taking the lock orders this wake-up after any waiter's check of its slot: a
            // waiter either saw its answer or is counted and asleep on the condition variable.
            let sleeping = *sync::lock(&shard.sleeping);
            if sleeping > 0 {
                shard.answered.notify_all();
            }
        }
    }
}

/// How often a parked caller checks that the writer is still running.
pub(crate) const STOPPED_CHECK: Duration = Duration::from_millis(20);

thread_local! {
    /// Each thread's slot: a thread has at most one append in flight, so one slot serves
    /// all its appends (to any store) without an allocation per append.
    static SLOT: Arc<AnswerSlot> = Arc::new(AnswerSlot::for_current_thread());
}

impl AnswerSlot {
    fn for_current_thread() -> Self {
        let shard = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % WAITER_SHARDS;
        AnswerSlot { answer: Mutex::new(None), ready: AtomicBool::new(false), shard }
    }

    /// The calling thread's slot, emptied.
    pub(crate) fn current() -> Arc<AnswerSlot> {
        let slot = SLOT.try_with(Arc::clone).unwrap_or_else(|_| Arc::new(AnswerSlot::for_current_thread()));
        slot.take();
        slot
    }

    /// Delivers `answer`; the waiter wakes at the next [`Waiters::notify_all`]. Always
    /// `true` (the slot outlives the wait), a value for the call shape of a channel's send.
    pub(crate) fn send(&self, answer: AppendAnswer) -> bool {
        *sync::lock(&self.answer) = Some(answer);
        self.ready.store(true, Ordering::Release);
        true
    }

    /// Takes the answer if it has arrived.
    pub(crate) fn take(&self) -> Option<AppendAnswer> {
        if !self.ready.swap(false, Ordering::Acquire) {
            return None;
        }
        sync::lock(&self.answer).take()
    }

    /// Waits for the answer: polls for up to `spin` (when it is expected within
    /// microseconds), then sleeps on `waiters`. Returns [`Error::Closed`] if the writer
    /// stops without answering.
    pub(crate) fn wait(&self, waiters: &Waiters, shared: &Shared, spin: Option<Duration>) -> AppendAnswer {
        if let Some(spin) = spin {
            let started = Instant::now();
            let mut polls = 0u32;
            while started.elapsed() < spin {
                if let Some(answer) = self.take() {
                    return answer;
                }
                polls += 1;
                if polls.is_multiple_of(64) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        let shard = waiters.shards.get(self.shard).unwrap_or(&waiters.shards[0]);
        let mut sleeping = sync::lock(&shard.sleeping);
        loop {
            if let Some(answer) = self.take() {
                return answer;
            }
            if shared.writer_stopped() {
                // An answer sent before the writer stopped is already here.
                return self.take().unwrap_or(Err(Error::Closed));
            }
            // Wake-ups for other waiters, or spurious ones, just loop.
            *sleeping += 1;
            sleeping = match shard.answered.wait_timeout(sleeping, STOPPED_CHECK) {
                Ok((guard, _)) => guard,
                Err(poison) => poison.into_inner().0,
            };
            *sleeping -= 1;
        }
    }
}
