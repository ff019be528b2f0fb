//! `Subscription` as a `futures_core::Stream` (feature `async`): the same reader as the
//! blocking iterator, with the task's waker registered in the store's notifier instead of
//! a sleeping thread. The writer's publish wakes it; no thread per subscription.
//!
//! It behaves like the iterator: a stream woken again within its batch window of its last
//! wake-up waits out the rest of the window (the notifier's timer thread wakes it) and then
//! reads everything committed meanwhile. On a read-only store, whose commits come from
//! another process, a pending stream is also woken by that timer every
//! `READ_ONLY_REFRESH_INTERVAL` to refresh, as the iterator does while it waits.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::{AsyncWait, Step, Subscription};
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::readonly::READ_ONLY_REFRESH_INTERVAL;

impl futures_core::Stream for Subscription {
    type Item = Result<RecordedEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let now = Instant::now();
        match this.async_wait {
            AsyncWait::Window { until } if now < until && !this.ready_to_end() => {
                // Woken early (a spurious poll): the timer still stands, with this waker.
                if this.shared.notifier.wake_at(this.key, until, cx.waker()) {
                    return Poll::Pending;
                }
                this.async_wait = AsyncWait::None;
            }
            AsyncWait::Window { .. } => {
                this.async_wait = AsyncWait::None;
                this.last_wake = this.still_busy(now);
            }
            AsyncWait::Registered => {
                this.async_wait = AsyncWait::None;
                this.last_wake = Some(now);
            }
            AsyncWait::None => {}
        }
        loop {
            match this.step() {
                Step::Event(event) => return Poll::Ready(Some(Ok(event))),
                Step::Failed(error) => return Poll::Ready(Some(Err(error))),
                Step::Ended => return Poll::Ready(None),
                Step::Pending => {
                    let shared = Arc::clone(&this.shared);
                    if this.follower.is_none()
                        && let Some(last) = this.last_wake
                    {
                        let until = this.window_end(last);
                        if Instant::now() < until && shared.notifier.wake_at(this.key, until, cx.waker()) {
                            // Gather what commits meanwhile into one round, as the iterator.
                            this.async_wait = AsyncWait::Window { until };
                            return Poll::Pending;
                        }
                        this.last_wake = None;
                    }
                    if this.follower.is_some() {
                        // Nothing in this process publishes the other process's commits: the
                        // timer wakes this task to refresh (stop and close still wake it
                        // through the notifier, registered below).
                        let refresh_at = Instant::now() + READ_ONLY_REFRESH_INTERVAL;
                        if !shared.notifier.wake_at(this.key, refresh_at, cx.waker()) {
                            this.finished = true;
                            return Poll::Ready(Some(Err(Error::ReadOnly {
                                dir: this.shared.dir.clone(),
                                operation: "an async subscription that waits (no timer thread could be started)",
                            })));
                        }
                    }
                    // Registered before the re-check, under the notifier's lock: a commit
                    // published after a `false` answer wakes this waker.
                    if !shared.notifier.register(this.key, cx.waker(), || this.ready()) {
                        if this.follower.is_none() {
                            this.async_wait = AsyncWait::Registered;
                        }
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}
