//! Projections: read models kept up to date from the log by a background runner.
//!
//! A [`Projection`] owns its state *and* the checkpoint saved with it: [`Projection::apply`]
//! receives a batch of events and the position it reaches, and persists both in one atomic
//! write (one SQLite transaction, one renamed file). Delivery is at-least-once, so after a
//! crash the runner resumes after the saved checkpoint and the state is effectively
//! exactly-once. When [`Projection::version`] differs from the saved one, the runner
//! resets the projection and rebuilds it from position 0.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{StopHandle, Subscription};
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::read::Filter;
use crate::sync;

/// A projection's own error (from its storage or its logic).
pub type ProjectionError = Box<dyn std::error::Error + Send + Sync>;

/// The most events the runner hands to one [`Projection::apply`].
pub const PROJECTION_BATCH_EVENTS_MAX: usize = 1000;

/// How often a runner with nothing to apply publishes how far it has examined the log (so
/// [`ProjectionRunner::wait_for`] returns for positions the projection's filter skips).
const IDLE_PROGRESS_INTERVAL: Duration = Duration::from_millis(10);

/// A read model built from the events matching [`Projection::filter`].
///
/// See [`Store::run_projection`](crate::Store::run_projection) for an example.
pub trait Projection: Send + 'static {
    /// The projection's name (for logs and errors).
    fn name(&self) -> &str;
    /// The version of the projection's logic: when it differs from the saved one, the
    /// state is reset and rebuilt from the start of the log.
    fn version(&self) -> u32;
    /// The events it is built from.
    fn filter(&self) -> Filter;
    /// The saved `(version, last position applied)`, or `None` if nothing is saved.
    ///
    /// # Errors
    /// The projection's storage failed; the runner does not start.
    fn load(&mut self) -> std::result::Result<Option<(u32, u64)>, ProjectionError>;
    /// Discards all state (the version changed): the runner then applies from position 0.
    ///
    /// # Errors
    /// The projection's storage failed; the runner does not start.
    fn reset(&mut self) -> std::result::Result<(), ProjectionError>;
    /// Applies `events` (in position order) and saves the new state together with
    /// `(version, through)` atomically: after a crash either all of this batch is saved
    /// with its checkpoint or none of it is.
    ///
    /// # Errors
    /// The runner stops and reports it ([`ProjectionRunner::wait_for`],
    /// [`ProjectionRunner::stop`]); nothing after the last saved checkpoint counts.
    fn apply(
        &mut self,
        events: &[RecordedEvent],
        version: u32,
        through: u64,
    ) -> std::result::Result<(), ProjectionError>;
}

#[derive(Debug, Default)]
struct Progress {
    state: Mutex<ProgressState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct ProgressState {
    /// Every position below this is applied (or skipped as not matching).
    examined: u64,
    failed: Option<String>,
    ended: bool,
}

/// A projection running on its own thread, from
/// [`Store::run_projection`](crate::Store::run_projection).
#[derive(Debug)]
pub struct ProjectionRunner<P> {
    name: String,
    progress: Arc<Progress>,
    stop: StopHandle,
    thread: Option<JoinHandle<(P, Option<String>)>>,
}

impl<P: Projection> ProjectionRunner<P> {
    pub(crate) fn start(
        mut projection: P,
        subscribe: impl FnOnce(u64, Filter) -> Result<Subscription>,
    ) -> Result<Self> {
        let name = projection.name().to_owned();
        let failed = |what: &str, e: ProjectionError| Error::invalid(format!("projection {name:?}: {what}: {e}"));
        let version = projection.version();
        let from = match projection.load().map_err(|e| failed("load", e))? {
            Some((saved, position)) if saved == version => position.saturating_add(1),
            Some(_) | None => {
                projection.reset().map_err(|e| failed("reset", e))?;
                0
            }
        };
        let mut subscription = subscribe(from, projection.filter())?;
        let stop = subscription.stop_handle();
        let progress = Arc::new(Progress::default());
        sync::lock(&progress.state).examined = from;
        let thread_progress = Arc::clone(&progress);
        let thread = std::thread::Builder::new()
            .name(format!("chronicle-projection-{name}"))
            .spawn(move || {
                let failure = run(&mut projection, &mut subscription, version, &thread_progress);
                let mut state = sync::lock(&thread_progress.state);
                state.failed = failure.clone();
                state.ended = true;
                thread_progress.changed.notify_all();
                drop(state);
                (projection, failure)
            })
            .map_err(|e| Error::io("spawn projection thread", std::path::PathBuf::new(), e))?;
        Ok(ProjectionRunner { name, progress, stop, thread: Some(thread) })
    }

    /// Waits until every event at or before `position` has been applied (read your own
    /// writes: pass the `last_position` of an append). Returns `false` if `timeout`
    /// passed first.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the projection's error if it failed; [`Error::Closed`]
    /// if the runner ended (stopped, store closed) before reaching `position`.
    pub fn wait_for(&self, position: u64, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut state = sync::lock(&self.progress.state);
        loop {
            if state.examined > position {
                return Ok(true);
            }
            if let Some(failure) = &state.failed {
                return Err(Error::invalid(format!("projection {:?} failed: {failure}", self.name)));
            }
            if state.ended {
                return Err(Error::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            state = self.progress.changed.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Every position below this one has been applied (or skipped as not matching).
    pub fn position(&self) -> u64 {
        sync::lock(&self.progress.state).examined
    }

    /// Stops the runner after the batch it is applying and returns the projection.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the projection's error if it failed;
    /// [`Error::Internal`] if its thread panicked.
    pub fn stop(mut self) -> Result<P> {
        self.stop.stop();
        let thread = self.thread.take().ok_or_else(|| Error::internal("projection runner stopped twice"))?;
        let (projection, failure) =
            thread.join().map_err(|_| Error::internal(format!("projection {:?} panicked", self.name)))?;
        match failure {
            Some(failure) => Err(Error::invalid(format!("projection {:?} failed: {failure}", self.name))),
            None => Ok(projection),
        }
    }
}

impl<P> Drop for ProjectionRunner<P> {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The runner's loop; returns the projection's failure, if any.
fn run<P: Projection>(
    projection: &mut P,
    subscription: &mut Subscription,
    version: u32,
    progress: &Progress,
) -> Option<String> {
    let mut batch = Vec::new();
    loop {
        match subscription.recv_timeout(IDLE_PROGRESS_INTERVAL) {
            Ok(Some(event)) => batch.push(event),
            Ok(None) if subscription.is_finished() => return None,
            Ok(None) => {}
            Err(error) => return Some(error.to_string()),
        }
        while batch.len() < PROJECTION_BATCH_EVENTS_MAX {
            match subscription.recv_timeout(Duration::ZERO) {
                Ok(Some(event)) => batch.push(event),
                Ok(None) => break,
                Err(error) => return Some(error.to_string()),
            }
        }
        if let Some(last) = batch.last() {
            if let Err(error) = projection.apply(&batch, version, last.position) {
                return Some(error.to_string());
            }
            batch.clear();
        }
        let mut state = sync::lock(&progress.state);
        state.examined = state.examined.max(Subscription::position(subscription));
        progress.changed.notify_all();
    }
}
