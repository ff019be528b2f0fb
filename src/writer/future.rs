//! [`AppendFuture`]: an append submitted to the writer, whose answer a task awaits instead of
//! a thread. The writer fills the future's own answer slot and wakes the task's waker; no
//! runtime is involved, so the future runs on any executor (or none: poll it by hand).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::answer::AnswerSlot;
use super::front::{AppendAnswer, Submitted};
use crate::error::{Error, Result};
use crate::event::AppendResult;
use crate::shared::Shared;

/// The outcome of an append submitted with [`Store::append_async`](crate::Store::append_async),
/// [`Store::append_multi_async`](crate::Store::append_multi_async) or
/// [`Store::append_if_async`](crate::Store::append_if_async): a [`Future`] that resolves
/// to what the blocking call of the same name would have returned.
///
/// The append is submitted when the `*_async` method is called, not when the future is
/// first polled: several appends can be in flight from one task, and they commit in the
/// order they were submitted. The writer thread completes the future (waking its task) when
/// the append's commit group is written and, under [`Durability::Sync`](crate::Durability::Sync),
/// fsynced; no thread waits for it meanwhile.
///
/// **Dropping the future does not cancel the append**: it is already queued and commits
/// (or fails) exactly as the blocking call would have; only its answer is lost. To learn
/// whether it committed after dropping the future, read the stream (or retry with event
/// ids: [`Store::append`](crate::Store::append) describes idempotent retries).
///
/// Every path completes it: the commit, an error (a failed expected-version check, a
/// failed write or fsync, after which the store refuses writes), and the store closing — a
/// future still pending when [`Store::close`](crate::Store::close) runs or the last handle
/// drops resolves to [`Error::Closed`] unless its append was committed first. The future
/// does not keep the store open.
///
/// ```
/// use chronicle::{ExpectedVersion, NewEvent, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// // Two appends in flight at once, then both awaited (here with a minimal executor).
/// let first = store.append_async("order-1", ExpectedVersion::NoStream, [NewEvent::new("Placed", "{}")]);
/// let second = store.append_async("order-2", ExpectedVersion::NoStream, [NewEvent::new("Placed", "{}")]);
/// let (first, second) = block_on(async { (first.await, second.await) });
/// assert_eq!(first?.first_position + 1, second?.first_position);
/// # fn block_on<F: std::future::Future>(future: F) -> F::Output {
/// #     use std::task::{Context, Poll, Waker};
/// #     let mut future = std::pin::pin!(future);
/// #     let mut cx = Context::from_waker(Waker::noop());
/// #     loop {
/// #         if let Poll::Ready(output) = future.as_mut().poll(&mut cx) { return output; }
/// #         std::thread::yield_now();
/// #     }
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the append is submitted already; await the future to learn whether it committed"]
pub struct AppendFuture<T> {
    state: State,
    /// Turns the writer's per-part results into what the blocking call returns.
    finish: fn(Vec<AppendResult>) -> Result<T>,
}

enum State {
    /// Answered before the future was returned (an inline commit, a refused input).
    Answered(AppendAnswer),
    /// Queued: the writer answers into `slot`.
    Queued { slot: Arc<AnswerSlot>, shared: Arc<Shared> },
    /// The answer was returned.
    Done,
}

impl<T> std::fmt::Debug for AppendFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Answered(_) => "answered",
            State::Queued { .. } => "queued",
            State::Done => "done",
        };
        f.debug_struct("AppendFuture").field("state", &state).finish()
    }
}

impl<T> AppendFuture<T> {
    /// A future already resolved to `answer`.
    pub(crate) fn answered(answer: AppendAnswer, finish: fn(Vec<AppendResult>) -> Result<T>) -> Self {
        AppendFuture { state: State::Answered(answer), finish }
    }

    /// The future of a submitted append.
    pub(crate) fn submitted(
        submitted: Submitted,
        shared: &Arc<Shared>,
        finish: fn(Vec<AppendResult>) -> Result<T>,
    ) -> Self {
        let state = match submitted {
            Submitted::Answered(answer) => State::Answered(answer),
            Submitted::Queued(slot) => State::Queued { slot, shared: Arc::clone(shared) },
        };
        AppendFuture { state, finish }
    }
}

impl<T> Future for AppendFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        let answer = match &this.state {
            State::Answered(_) => match std::mem::replace(&mut this.state, State::Done) {
                State::Answered(answer) => answer,
                _ => Err(Error::internal("an AppendFuture's answer vanished")),
            },
            State::Queued { slot, shared } => match slot.take_or_register(cx.waker()) {
                Some(answer) => answer,
                // The waker is registered before this check: a writer that has not stopped
                // yet will answer (and wake) — it answers every request it takes, and
                // refuses what is queued when it stops (the queue's SeqCst operations and
                // this SeqCst load order our send before its final drain). One that has
                // stopped answers nothing more, but an answer it sent first is in the slot.
                None if shared.writer_stopped() => slot.take_or_register(cx.waker()).unwrap_or(Err(Error::Closed)),
                None => return Poll::Pending,
            },
            State::Done => Err(Error::internal("an AppendFuture was polled after it completed")),
        };
        this.state = State::Done;
        Poll::Ready(answer.and_then(this.finish))
    }
}
