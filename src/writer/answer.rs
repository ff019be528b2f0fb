//! The one-shot answer slot an appending thread waits on.
//!
//! A waiting caller parks its thread (a futex wait, nothing else) and the writer unparks it.
//! A channel's blocking receive would spin and yield first: with many callers waiting on a
//! two-core machine, that spinning takes the CPU from the writer thread that is to answer
//! them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::AppendAnswer;
use crate::error::Error;
use crate::shared::Shared;

/// Where the writer puts one append's answer for the thread that waits for it.
#[derive(Debug)]
pub(crate) struct AnswerSlot {
    answer: Mutex<Option<AppendAnswer>>,
    /// Set after `answer` is filled: lets a spinning waiter poll without the lock.
    ready: AtomicBool,
    waiter: Thread,
}

/// How often a parked caller checks that the writer is still running.
const STOPPED_CHECK: Duration = Duration::from_millis(20);

thread_local! {
    /// Each thread's slot: a thread has at most one append in flight, so one slot serves
    /// all its appends (to any store) without an allocation per append.
    static SLOT: Arc<AnswerSlot> = Arc::new(AnswerSlot::for_current_thread());
}

impl AnswerSlot {
    fn for_current_thread() -> Self {
        AnswerSlot { answer: Mutex::new(None), ready: AtomicBool::new(false), waiter: std::thread::current() }
    }

    /// The calling thread's slot, emptied.
    pub(crate) fn current() -> Arc<AnswerSlot> {
        let slot = SLOT.try_with(Arc::clone).unwrap_or_else(|_| Arc::new(AnswerSlot::for_current_thread()));
        slot.take();
        slot
    }

    /// Delivers `answer` and wakes the waiting thread; always `true` (the slot outlives the
    /// wait), kept as a value for the same call shape as a channel's send.
    pub(crate) fn send(&self, answer: AppendAnswer) -> bool {
        *self.answer.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(answer);
        self.ready.store(true, Ordering::Release);
        self.waiter.unpark();
        true
    }

    /// Takes the answer if it has arrived.
    pub(crate) fn take(&self) -> Option<AppendAnswer> {
        if !self.ready.swap(false, Ordering::Acquire) {
            return None;
        }
        self.answer.lock().unwrap_or_else(|poison| poison.into_inner()).take()
    }

    /// Waits for the answer: polls for up to `spin` (when it is expected within
    /// microseconds), then parks. Returns [`Error::Closed`] if the writer stops without
    /// answering.
    pub(crate) fn wait(&self, shared: &Shared, spin: Option<Duration>) -> AppendAnswer {
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
        loop {
            if let Some(answer) = self.take() {
                return answer;
            }
            if shared.writer_stopped() {
                // An answer sent before the writer stopped is already here.
                return self.take().unwrap_or(Err(Error::Closed));
            }
            // Unparks that arrive early or spuriously just loop.
            std::thread::park_timeout(STOPPED_CHECK);
        }
    }
}
