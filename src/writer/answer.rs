//! The one-shot answer slot an appending thread (or an [`AppendFuture`](super::AppendFuture))
//! waits on, the writer's handle on it ([`ReplyTo`]), and the condition variable all waiting
//! threads of one store sleep on.
//!
//! The writer fills the slots of a whole commit group, then wakes the waiters with one
//! `notify_all` per shard that has any: a few system calls per group, where waking each
//! caller on its own would cost one per append, serially on the writer thread, longer than
//! the fsync itself with 64 callers. Waiters are spread over shards so that, once woken,
//! they do not all queue for one mutex. They sleep without spinning first (unless the
//! answer is due within microseconds): a channel's blocking receive would spin and yield,
//! taking the CPU from the writer thread that is to answer them. A future's slot holds its
//! task's waker instead, woken by the writer as it fills the slot: no thread waits at all.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

use super::AppendAnswer;
use crate::error::Error;
use crate::shared::Shared;
use crate::sync;

/// Where the writer puts one append's answer for the thread or task that waits for it.
#[derive(Debug)]
pub(crate) struct AnswerSlot {
    state: Mutex<SlotState>,
    /// Set after the answer is filled: lets a waiting thread poll without the lock.
    ready: AtomicBool,
    /// Which shard of [`Waiters`] this thread sleeps on.
    shard: usize,
}

/// The answer and, for a future, the waker to call when it arrives: under one lock, so an
/// answer sent while a poll registers its waker either is seen by that poll or wakes it.
#[derive(Debug, Default)]
struct SlotState {
    answer: Option<AppendAnswer>,
    waker: Option<Waker>,
}

/// The writer's handle on one append's [`AnswerSlot`]: answered at most once, by
/// [`ReplyTo::send`]. Dropped unanswered — a request left in the queue when the channel
/// goes away, a group abandoned by a writer thread that panicked — it answers
/// [`Error::Closed`], so no waiter waits for an answer that never comes.
#[derive(Debug)]
pub(crate) struct ReplyTo {
    slot: Option<Arc<AnswerSlot>>,
}

impl ReplyTo {
    pub(crate) fn new(slot: Arc<AnswerSlot>) -> Self {
        ReplyTo { slot: Some(slot) }
    }

    /// Delivers `answer` (see [`AnswerSlot::send`]); returns whether waiting threads must be
    /// woken with [`Waiters::notify_all`].
    pub(crate) fn send(mut self, answer: AppendAnswer) -> bool {
        self.slot.take().is_some_and(|slot| slot.send(answer))
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            // A thread waiting on it notices within `STOPPED_CHECK`; a task is woken now.
            slot.send(Err(Error::Closed));
        }
    }
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
        AnswerSlot { state: Mutex::new(SlotState::default()), ready: AtomicBool::new(false), shard }
    }

    /// A slot of its own for one future (a task may have many appends in flight).
    pub(crate) fn for_task() -> Arc<AnswerSlot> {
        Arc::new(AnswerSlot { state: Mutex::new(SlotState::default()), ready: AtomicBool::new(false), shard: 0 })
    }

    /// The calling thread's slot, emptied.
    pub(crate) fn current() -> Arc<AnswerSlot> {
        let slot = SLOT.try_with(Arc::clone).unwrap_or_else(|_| Arc::new(AnswerSlot::for_current_thread()));
        slot.take();
        slot
    }

    /// Delivers `answer`. A task's registered waker is woken here (returns `false`); a
    /// thread wakes at the next [`Waiters::notify_all`] (returns `true`: one is due).
    fn send(&self, answer: AppendAnswer) -> bool {
        let waker = {
            let mut state = sync::lock(&self.state);
            state.answer = Some(answer);
            state.waker.take()
        };
        self.ready.store(true, Ordering::Release);
        match waker {
            Some(waker) => {
                waker.wake();
                false
            }
            None => true,
        }
    }

    /// Takes the answer if it has arrived.
    pub(crate) fn take(&self) -> Option<AppendAnswer> {
        if !self.ready.swap(false, Ordering::Acquire) {
            return None;
        }
        sync::lock(&self.state).answer.take()
    }

    /// For a future: takes the answer if it has arrived, else leaves `waker` to be woken
    /// when it does.
    pub(crate) fn take_or_register(&self, waker: &Waker) -> Option<AppendAnswer> {
        let mut state = sync::lock(&self.state);
        if let Some(answer) = state.answer.take() {
            return Some(answer);
        }
        match &mut state.waker {
            Some(registered) if registered.will_wake(waker) => {}
            registered => *registered = Some(waker.clone()),
        }
        None
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
