//! The writer thread: starting it, its loop (wait for the doorbell or the periodic-sync
//! timer, then drain the queue into commit groups), and refusing whatever is still queued
//! when it stops. The callers' side is `front.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, at, never, select, tick};

use super::answer::Waiters;
use super::front::WriterFront;
use super::{Request, Writer};
use crate::error::{Error, Result};
use crate::options::{Durability, WRITER_QUEUE_DEPTH_MAX};
use crate::shared::Shared;

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
    let coalesced = writer.coalesced_flag();
    let front = Arc::new(WriterFront {
        writer: Mutex::new(writer),
        waiters,
        requests,
        doorbell,
        inline_appends,
        coalesced,
        window_timer: AtomicBool::new(false),
    });
    let thread_front = Arc::clone(&front);
    let thread = std::thread::Builder::new()
        .name("chronicle-writer".into())
        .spawn(move || {
            // Marks the writer stopped however the thread ends (a panic included), then refuses
            // whatever is still queued, so every caller waiting for an answer stops waiting:
            // one that queued before the flag was set is refused here, one that queued after
            // it sees the flag.
            // A group left half-built by a panic is abandoned the same way.
            struct Stopped<'a> {
                shared: Arc<Shared>,
                queue: &'a Receiver<Request>,
                front: &'a WriterFront,
            }
            impl Drop for Stopped<'_> {
                fn drop(&mut self) {
                    self.shared.mark_writer_stopped();
                    self.front.lock().abandon_group();
                    refuse_queued(self.queue, &self.front.waiters);
                }
            }
            let queue = queue;
            let _stopped = Stopped { shared, queue: &queue, front: &thread_front };
            run(&thread_front, &queue, &rings);
        })
        .map_err(|e| Error::io("spawn writer thread", dir, e))?;
    Ok((front, thread))
}

/// When the coalesced appends (`Options::coalesce_writes`) must be written, if there are
/// any. With none, the window timer is disarmed, and checked again after: an appender that
/// started a window before the disarm found the timer armed and rang no doorbell, so its
/// window is picked up here; one that starts it after the disarm rings.
fn window_end(front: &WriterFront) -> Option<Instant> {
    let deadline = front.lock().coalesced_deadline();
    if deadline.is_some() || !front.window_timer.swap(false, Ordering::AcqRel) {
        return deadline;
    }
    let deadline = front.lock().coalesced_deadline();
    if deadline.is_some() {
        front.window_timer.store(true, Ordering::Release);
    }
    deadline
}

/// The writer thread's loop; returns once shut down. The thread owns the queue's receiver,
/// so requests sent after it stops fail with [`Error::Closed`] instead of waiting forever.
fn run(front: &WriterFront, queue: &Receiver<Request>, rings: &Receiver<()>) {
    let coalescing = front.lock().coalesce_window.is_some();
    let ticker = match front.lock().shared.options.durability {
        Durability::Periodic(interval) => tick(interval),
        _ => never(),
    };
    loop {
        if spin_recv(rings, WRITER_SPIN).is_none() {
            let window_end = if coalescing { window_end(front) } else { None }.map_or_else(never, at);
            select! {
                recv(rings) -> ring => if ring.is_err() { return },
                recv(ticker) -> _ => {
                    front.lock().periodic_sync();
                    continue;
                }
                recv(window_end) -> _ => {
                    front.lock().write_coalesced_if_due();
                    continue;
                }
            }
        }
        if front.lock().drain(queue) {
            return;
        }
    }
}
