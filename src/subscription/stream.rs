//! `Subscription` as a `futures_core::Stream` (feature `async`): the same reader as the
//! blocking iterator, with the task's waker registered in the store's notifier instead of
//! a sleeping thread. The writer's publish wakes it; no thread per subscription. On a
//! read-only store, whose commits come from another process, a stream that would wait ends
//! with `Error::ReadOnly` instead: only the blocking iterator refreshes while it waits.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{Step, Subscription};
use crate::error::Result;
use crate::event::RecordedEvent;

impl futures_core::Stream for Subscription {
    type Item = Result<RecordedEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.step() {
                Step::Event(event) => return Poll::Ready(Some(Ok(event))),
                Step::Failed(error) => return Poll::Ready(Some(Err(error))),
                Step::Ended => return Poll::Ready(None),
                Step::Pending if this.follower.is_some() => {
                    // On a read-only store nothing in this process publishes the other
                    // process's commits, and a waker has no timer to refresh on: refuse
                    // rather than wait forever (the blocking iterator refreshes).
                    this.finished = true;
                    return Poll::Ready(Some(Err(crate::error::Error::ReadOnly {
                        dir: this.shared.dir.clone(),
                        operation: "an async subscription that waits (use the blocking iterator)",
                    })));
                }
                Step::Pending => {
                    // Registered before the re-check, under the notifier's lock: a commit
                    // published after a `false` answer wakes this waker.
                    let shared = Arc::clone(&this.shared);
                    if !shared.notifier.register(this.key, cx.waker(), || this.ready()) {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}
