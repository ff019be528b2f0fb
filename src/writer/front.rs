//! The writer as callers see it: the queue and doorbell of the writer thread, the thread's
//! loop, and the append entry point (inline commit or queue and wait).

use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, never, select, tick};

use super::answer::{AnswerSlot, STOPPED_CHECK, Waiters};
use super::{AppendCondition, Request, Writer};
use crate::error::{Error, Result};
use crate::event::AppendResult;
use crate::options::{Durability, WRITER_QUEUE_DEPTH_MAX};
use crate::shared::Shared;
use crate::sync;
use crate::validate::WritePart;

/// How long the writer polls for the next request before it sleeps: a caller that appends
/// again right after its answer then finds the writer awake (no wake-up system call and
/// scheduling delay on either side).
const WRITER_SPIN: Duration = Duration::from_micros(50);

/// Polls `receiver` for up to `spin` before giving up; yields the CPU between polls after
/// a short busy phase so a spinning thread never starves the thread it waits for.
fn spin_recv<T>(receiver: &Receiver<T>, spin: Duration) -> Option<T> {
    let started = Instant::now();
    let mut polls = 0u32;
    loop {
        if let Ok(message) = receiver.try_recv() {
            return Some(message);
        }
        polls += 1;
        if polls.is_multiple_of(64) {
            if started.elapsed() >= spin {
                return None;
            }
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

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
    writer: Mutex<Writer>,
    waiters: Arc<Waiters>,
    requests: Sender<Request>,
    doorbell: Sender<()>,
    inline_appends: bool,
}

impl std::fmt::Debug for WriterFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterFront").field("inline_appends", &self.inline_appends).finish_non_exhaustive()
    }
}

impl WriterFront {
    fn lock(&self) -> MutexGuard<'_, Writer> {
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

/// Answers every request still queued when the writer thread stops with [`Error::Closed`]:
/// the queue's senders live as long as any `Store` clone, so without this a request queued
/// behind `Shutdown` would keep its reply channel open and its caller waiting forever.
fn refuse_queued(queue: &Receiver<Request>, waiters: &Waiters) {
    let mut refused_appends = false;
    while let Ok(request) = queue.try_recv() {
        match request {
            Request::Append { reply, .. } => refused_appends |= reply.send(Err(Error::Closed)),
            Request::Sync { reply } | Request::Seal { reply } | Request::Shutdown { reply } => {
                let _ = reply.send(Err(Error::Closed));
            }
        }
    }
    if refused_appends {
        waiters.notify_all();
    }
}

/// Starts the writer thread.
pub(crate) fn spawn(writer: Writer) -> Result<(Arc<WriterFront>, std::thread::JoinHandle<()>)> {
    let shared = Arc::clone(&writer.shared);
    let dir = shared.dir.clone();
    let (requests, queue) = crossbeam_channel::bounded(WRITER_QUEUE_DEPTH_MAX);
    let (doorbell, rings) = crossbeam_channel::bounded(1);
    let inline_appends = shared.options.durability != Durability::Sync;
    let waiters = Arc::clone(&writer.waiters);
    let front = Arc::new(WriterFront { writer: Mutex::new(writer), waiters, requests, doorbell, inline_appends });
    let thread_front = Arc::clone(&front);
    let thread = std::thread::Builder::new()
        .name("chronicle-writer".into())
        .spawn(move || {
            // Marks the writer stopped however the thread ends (a panic included), then refuses
            // whatever is still queued, so every caller waiting for an answer stops waiting:
            // one that queued before the flag was set is refused here, one that queued after
            // it sees the flag.
            struct Stopped<'a> {
                shared: Arc<Shared>,
                queue: &'a Receiver<Request>,
                waiters: &'a Waiters,
            }
            impl Drop for Stopped<'_> {
                fn drop(&mut self) {
                    self.shared.mark_writer_stopped();
                    refuse_queued(self.queue, self.waiters);
                }
            }
            let queue = queue;
            let _stopped = Stopped { shared, queue: &queue, waiters: &thread_front.waiters };
            run(&thread_front, &queue, &rings);
        })
        .map_err(|e| Error::io("spawn writer thread", dir, e))?;
    Ok((front, thread))
}

/// The writer thread's loop; returns once shut down. The thread owns the queue's receiver,
/// so requests sent after it stops fail with [`Error::Closed`] instead of waiting forever.
fn run(front: &WriterFront, queue: &Receiver<Request>, rings: &Receiver<()>) {
    let ticker = match front.lock().shared.options.durability {
        Durability::Periodic(interval) => tick(interval),
        _ => never(),
    };
    loop {
        if spin_recv(rings, WRITER_SPIN).is_none() {
            select! {
                recv(rings) -> ring => if ring.is_err() { return },
                recv(ticker) -> _ => {
                    front.lock().periodic_sync();
                    continue;
                }
            }
        }
        if front.lock().drain(queue) {
            return;
        }
    }
}

/// An append's answer.
pub(crate) type AppendAnswer = Result<Vec<AppendResult>>;

/// Appends `parts`: inline if the writer allows it and is free, else through the writer
/// thread, waiting for the answer.
pub(crate) fn append(
    shared: &Shared,
    front: &WriterFront,
    parts: Vec<WritePart>,
    condition: Option<AppendCondition>,
    spin: Option<Duration>,
) -> AppendAnswer {
    let condition = condition.map(Box::new);
    let slot = AnswerSlot::current();
    // Only with an empty queue: queued appends came first and the writer thread is (about
    // to be) serving them.
    if front.inline_appends
        && front.requests.is_empty()
        && let Some(mut writer) = front.try_lock()
    {
        writer.append_inline(parts, condition, Arc::clone(&slot));
        drop(writer);
        return slot.take().unwrap_or(Err(Error::Closed));
    }
    front.send(Request::Append { parts, condition, reply: Arc::clone(&slot) })?;
    slot.wait(&front.waiters, shared, spin)
}
