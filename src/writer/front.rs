//! The writer as callers see it: the queue and doorbell of the writer thread, the lock an
//! inline commit takes, and the append entry point (inline commit or queue and wait). The
//! thread itself is `thread.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};

use super::answer::{AnswerSlot, ReplyTo, STOPPED_CHECK, Waiters};
use super::{AppendCondition, Request, Writer};
use crate::error::{Error, Result};
use crate::event::AppendResult;
use crate::shared::Shared;
use crate::sync;
use crate::validate::WritePart;

/// The writer as callers see it: the [`Writer`] behind a lock, its request queue, and the
/// doorbell that wakes the writer thread.
///
/// Queued requests are served by the writer thread, which gathers all of them into one group
/// (one write, one fdatasync). Without `Durability::Sync` an append finding the queue empty
/// and the writer free commits on its own thread instead: the group then holds no fsync, so
/// it takes the lock for microseconds, and the append saves the two thread hand-offs that
/// would otherwise cost more than the write itself. With `Sync` every append queues, so that
/// concurrent appends share fsyncs rather than each taking the lock for one.
pub(crate) struct WriterFront {
    pub(super) writer: Mutex<Writer>,
    pub(super) waiters: Arc<Waiters>,
    pub(super) requests: Sender<Request>,
    pub(super) doorbell: Sender<()>,
    pub(super) inline_appends: bool,
    /// The writer holds coalesced appends not yet written (`Options::coalesce_writes`).
    pub(super) coalesced: Arc<AtomicBool>,
    /// The writer thread times the window of coalesced appends: while set, whoever starts
    /// a new window need not ring the doorbell (one wake-up per idle-to-busy change, not
    /// one per window).
    pub(super) window_timer: AtomicBool,
}

impl std::fmt::Debug for WriterFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterFront").field("inline_appends", &self.inline_appends).finish_non_exhaustive()
    }
}

impl WriterFront {
    /// Requests waiting in the queue.
    pub(crate) fn queue_depth(&self) -> usize {
        self.requests.len()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the lock leaves the writer as consistent as any error would
        // (the group is rebuilt from scratch on each flush); keep serving.
        sync::lock(&self.writer)
    }

    fn try_lock(&self) -> Option<MutexGuard<'_, Writer>> {
        match self.writer.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poison)) => Some(poison.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Writes the appends that `Options::coalesce_writes` acknowledged but has not written
    /// yet, so that a read sees them (an atomic load when there are none).
    ///
    /// # Errors
    /// [`Error::Poisoned`] if writing them failed: they are lost, and the store refuses
    /// writes.
    pub(crate) fn write_coalesced(&self) -> Result<()> {
        if !self.coalesced.load(Ordering::Acquire) {
            return Ok(());
        }
        self.lock().write_coalesced()
    }

    /// Queues `request` for the writer thread and wakes it.
    ///
    /// # Errors
    /// [`Error::Closed`] if the writer thread has stopped.
    pub(crate) fn send(&self, request: Request) -> Result<()> {
        self.requests.send(request).map_err(|_| Error::Closed)?;
        // A full doorbell already holds a wake-up the thread has not taken yet; it drains the
        // queue after taking it, so this request is served either way.
        let _ = self.doorbell.try_send(());
        Ok(())
    }

    /// Sends the request `make` builds around a reply channel and waits for the answer.
    /// Returns [`Error::Closed`] if the writer stops without answering, whenever the request
    /// was queued: the writer refuses what it finds queued when it stops, and a request
    /// queued after that is noticed by the stopped flag (checked every [`STOPPED_CHECK`]).
    ///
    /// # Errors
    /// The writer's answer, or [`Error::Closed`].
    pub(crate) fn call(&self, shared: &Shared, make: impl FnOnce(Sender<Result<()>>) -> Request) -> Result<()> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.send(make(reply))?;
        loop {
            match answer.recv_timeout(STOPPED_CHECK) {
                Ok(result) => return result,
                Err(RecvTimeoutError::Disconnected) => return Err(Error::Closed),
                Err(RecvTimeoutError::Timeout) if shared.writer_stopped() => {
                    // An answer sent before the writer stopped is already here.
                    return answer.try_recv().unwrap_or(Err(Error::Closed));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

/// An append's answer.
pub(crate) type AppendAnswer = Result<Vec<AppendResult>>;

/// Where an append's answer is once [`submit`] returns.
pub(crate) enum Submitted {
    /// Answered already: committed inline, or refused before it was queued.
    Answered(AppendAnswer),
    /// Queued for the writer thread, which will answer into this slot.
    Queued(Arc<AnswerSlot>),
}

/// Submits `parts` with `slot` for the answer: commits inline if the writer allows it and
/// is free, else queues them for the writer thread (blocking while the bounded queue is
/// full: backpressure).
pub(crate) fn submit(
    front: &WriterFront,
    parts: Vec<WritePart>,
    condition: Option<AppendCondition>,
    slot: Arc<AnswerSlot>,
) -> Submitted {
    let condition = condition.map(Box::new);
    // Only with an empty queue: queued appends came first and the writer thread is (about
    // to be) serving them.
    if front.inline_appends
        && front.requests.is_empty()
        && let Some(mut writer) = front.try_lock()
    {
        let started_coalescing = writer.append_inline(parts, condition, ReplyTo::new(Arc::clone(&slot)));
        drop(writer);
        if started_coalescing && !front.window_timer.swap(true, Ordering::AcqRel) {
            // The writer thread times the window of the coalesced appends.
            let _ = front.doorbell.try_send(());
        }
        return Submitted::Answered(slot.take().unwrap_or(Err(Error::Closed)));
    }
    match front.send(Request::Append { parts, condition, reply: ReplyTo::new(Arc::clone(&slot)) }) {
        Ok(()) => Submitted::Queued(slot),
        Err(error) => Submitted::Answered(Err(error)),
    }
}

/// Appends `parts` (see [`submit`]) and waits for the answer on the calling thread.
pub(crate) fn append(
    shared: &Shared,
    front: &WriterFront,
    parts: Vec<WritePart>,
    condition: Option<AppendCondition>,
    spin: Option<Duration>,
) -> AppendAnswer {
    match submit(front, parts, condition, AnswerSlot::current()) {
        Submitted::Answered(answer) => answer,
        Submitted::Queued(slot) => slot.wait(&front.waiters, shared, spin),
    }
}
