//! Following the log: subscriptions (catch-up, then live), stop handles, durable consumers.
//!
//! A subscription is **one reader**: it reads committed segments up to the published end
//! with a [`FilteredIter`], then, when that is exhausted, asks for the end again; only when
//! nothing new is published does it sleep on the store's [`CommitNotifier`], counting
//! itself as waiting *before* it re-checks the end (see `notify.rs`). It always resumes from
//! the position it examined up to, so the switch from catch-up to live can neither skip nor
//! repeat an event, and there is no live buffer to overflow: a slow subscriber reads from
//! the segments again, whatever it missed, with memory bounded by one segment's matching
//! index entries. With two or more subscriptions, live rounds take their events from the
//! shared live tail (`tail.rs`: the newest records decoded once, in reference-counted
//! batches) instead of each scanning them; one behind that bounded window reads the
//! segments as above, so the tail is a shortcut, never a buffer anyone depends on.
//!
//! A subscription holds the store's shared state (segments, notifier, flags), **not** a
//! [`Store`](crate::Store): it never keeps the store open, and the directory lock is
//! released when the user's last `Store` clone drops. Closing the store (or dropping its
//! last clone) marks it closing and wakes every subscription, which then ends.

pub(crate) mod consumer;
pub(crate) mod park;
mod projection;
#[cfg(feature = "async")]
mod stream;
pub(crate) mod tail;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

use self::consumer::ConsumerClaim;
use self::tail::TailBatch;
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::options::Durability;
use crate::read::{Filter, FilteredIter, Resume};
use crate::readonly::{Follower, READ_ONLY_REFRESH_INTERVAL};
use crate::shared::Shared;
use crate::writer::{Request, WriterFront};

pub use self::consumer::CONSUMER_NAME_BYTES_MAX;
pub use self::park::{PARK_REASON_BYTES_MAX, PARKED_EVENTS_MAX, ParkedEvent};
pub use self::projection::{PROJECTION_BATCH_EVENTS_MAX, Projection, ProjectionError, ProjectionRunner};

/// A blocked subscriber woken less than its batch window after its previous wake-up first
/// waits out the rest of the window (windows of one length end together, on one clock for
/// the process), then reads everything committed meanwhile in one round; while each window
/// brings new commits it keeps reading at window ends without waiting for the writer. This is the shortest window, that of a lone subscriber: about a thousand
/// wake-ups a second at most however fast the writer commits. With more live
/// subscriptions the window grows (see [`FOLLOW_WAKEUPS_PER_SECOND_MAX`]), so that many
/// subscribers cannot take the CPU from the writer. On a store that was quiet for longer
/// than the window, the first event is delivered at once.
pub const FOLLOW_BATCH_WINDOW: Duration = Duration::from_millis(1);

/// The longest batch window, whatever the number of subscriptions: a stop or close is
/// noticed within it, and no event waits longer than it for a busy subscriber to come back.
pub const FOLLOW_BATCH_WINDOW_MAX: Duration = Duration::from_millis(10);

/// The batch window grows with the number of live subscriptions so that all of them
/// together wake up at most about this often per second while the writer commits faster
/// than that (100 subscriptions: a 5 ms window). Between [`FOLLOW_BATCH_WINDOW`] and
/// [`FOLLOW_BATCH_WINDOW_MAX`].
pub const FOLLOW_WAKEUPS_PER_SECOND_MAX: u64 = 20_000;

/// The batch window with `subscriptions` live subscriptions.
fn batch_window(subscriptions: u64) -> Duration {
    let window = Duration::from_secs(1).saturating_mul(u32::try_from(subscriptions).unwrap_or(u32::MAX))
        / u32::try_from(FOLLOW_WAKEUPS_PER_SECOND_MAX).unwrap_or(u32::MAX);
    window.clamp(FOLLOW_BATCH_WINDOW, FOLLOW_BATCH_WINDOW_MAX)
}

/// What every batch window in the process is counted from, so that windows of one length
/// end together: the subscriptions woken at the end of a window then read one shared batch
/// of the live tail, instead of each extending it by the few events committed since the
/// previous subscriber's wake-up (a hundred tiny batches per window, each visited by all).
static WINDOW_EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The end of the `window`-long window that `woken` lies in: the first multiple of `window`
/// after the epoch that is later than `woken` (at most `window` after it).
fn window_end(woken: Instant, window: Duration) -> Instant {
    let epoch = *WINDOW_EPOCH;
    let window_ns = window.as_nanos().max(1);
    let windows = woken.saturating_duration_since(epoch).as_nanos() / window_ns + 1;
    let end = Duration::from_nanos(u64::try_from(windows.saturating_mul(window_ns)).unwrap_or(u64::MAX));
    // Never later than one window after `woken` (a wake-up before the epoch was set).
    epoch.checked_add(end).map_or(woken + window, |end| end.min(woken + window))
}

/// The events matching a [`Filter`] from a position on: first those already committed,
/// then each new one as it commits, in position order, each exactly once.
///
/// Created by [`Store::subscribe`](crate::Store::subscribe) or
/// [`Store::subscribe_durable`](crate::Store::subscribe_durable). As an [`Iterator`],
/// `next()` blocks until a matching event commits (under [`Durability::Sync`]: is durable)
/// and returns `None` once the subscription is stopped ([`StopHandle::stop`]) or the store
/// is closed. After an error item (a damaged record; [`Error::Poisoned`] once the writer
/// failed, after every event committed before the failure) it ends too. With the `async`
/// feature it is also a `futures_core::Stream`.
///
/// ```
/// use chronicle::{ExpectedVersion, Filter, NewEvent, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("order-1", ExpectedVersion::Any, [NewEvent::new("OrderPlaced", "{}")])?;
/// let mut orders = store.subscribe(0, Filter::category("order"))?;
/// let stop = orders.stop_handle();
/// let follower = std::thread::spawn(move || orders.map(|e| e.map(|e| e.position)).collect::<Result<Vec<_>, _>>());
/// store.append("order-2", ExpectedVersion::Any, [NewEvent::new("OrderPlaced", "{}")])?;
/// while store.read_all(0)?.count() < 2 {}
/// # std::thread::sleep(std::time::Duration::from_millis(50));
/// stop.stop();
/// let seen = follower.join().unwrap()?;
/// assert!(seen.starts_with(&[0]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Subscription {
    shared: Arc<Shared>,
    /// To sync the log before a checkpoint is written without `Durability::Sync`; weak, so
    /// that it never keeps the writer alive.
    writer: Weak<WriterFront>,
    /// On a read-only store: what brings its view of the directory up to date. The
    /// subscription refreshes through it at least every `READ_ONLY_REFRESH_INTERVAL` while it
    /// waits, since no writer in this process publishes commits.
    follower: Option<Arc<Follower>>,
    filter: Filter,
    /// The reader of the current round: positions from `position` up to the end published
    /// when it was created.
    cursor: Option<FilteredIter>,
    /// Every position below this was delivered or skipped (when `cursor` is `None`).
    position: u64,
    /// Where the last round's scan of the active segment stopped: the next round starts
    /// there without an index lookup.
    resume: Option<Resume>,
    /// The round being read from the shared live tail instead (when `cursor` is `None`).
    live: Option<LiveRound>,
    stop: Arc<StopFlag>,
    /// This subscription's key in the notifier (its shard, its async waker).
    key: u64,
    consumer: Option<Durable>,
    finished: bool,
    /// When the last wait for a commit ended (see [`FOLLOW_BATCH_WINDOW`]).
    last_wake: Option<Instant>,
    /// What an async poll left pending waits for.
    #[cfg(feature = "async")]
    async_wait: AsyncWait,
}

/// What a pending async poll waits for (see `stream.rs`).
#[cfg(feature = "async")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AsyncWait {
    None,
    /// Registered with the notifier for the next commit.
    Registered,
    /// The batch window: the notifier's timer wakes the task at `until`.
    Window {
        until: Instant,
    },
}

/// A round read from a batch of the shared live tail.
#[derive(Debug)]
struct LiveRound {
    batch: Arc<TailBatch>,
    /// With a category condition: the next index into the batch's list of that category's
    /// events; else the next index into its events.
    next: usize,
    by_category: bool,
    /// Whether the filter has a condition to check at all (`Filter::all()` has none: every
    /// event of the batch matches, and checking each costs as much as the rest of a
    /// delivery but the clone).
    checks: bool,
    /// The deleted streams when the round began: their events are skipped.
    deleted: Arc<HashSet<Arc<str>>>,
}

impl LiveRound {
    fn new(batch: Arc<TailBatch>, filter: &Filter, position: u64, deleted: Arc<HashSet<Arc<str>>>) -> Self {
        let (next, by_category) = match filter.category_condition() {
            Some(category) => {
                let list = batch.of_category(category);
                (list.partition_point(|&at| batch.events.get(at as usize).is_some_and(|e| e.position < position)), true)
            }
            None => (batch.events.partition_point(|e| e.position < position), false),
        };
        let checks = filter.has_stream_condition() || !filter.event_type_lists().is_empty();
        LiveRound { batch, next, by_category, checks, deleted }
    }

    /// The next event of the batch that matches `filter`, moving `position` past it.
    fn next_match(&mut self, filter: &Filter, position: &mut u64) -> Option<RecordedEvent> {
        loop {
            let at = if self.by_category {
                let category = filter.category_condition()?;
                *self.batch.of_category(category).get(self.next)? as usize
            } else {
                self.next
            };
            let event = self.batch.events.get(at)?;
            self.next += 1;
            if event.position < *position {
                continue;
            }
            *position = event.position + 1;
            let deleted = !self.deleted.is_empty() && self.deleted.contains(event.stream_id.as_str());
            if !deleted
                && (!self.checks
                    || filter.matches_stream(&event.stream_id) && filter.matches_type(event.event_type.as_bytes()))
            {
                return Some(event.clone());
            }
        }
    }
}

#[derive(Debug)]
struct Durable {
    claim: ConsumerClaim,
    acked: Option<u64>,
}

#[derive(Debug, Default)]
struct StopFlag {
    stopped: AtomicBool,
}

/// Stops a [`Subscription`] from any thread: a `next()` blocked on it returns `None`.
///
/// `Clone + Send + Sync`; holds no store resource beyond the shared state.
///
/// ```
/// use chronicle::{Filter, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let mut subscription = store.subscribe(0, Filter::all())?;
/// let stop = subscription.stop_handle();
/// let waiting = std::thread::spawn(move || subscription.next().is_none());
/// stop.stop();
/// assert!(waiting.join().unwrap());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct StopHandle {
    shared: Arc<Shared>,
    stop: Arc<StopFlag>,
}

impl StopHandle {
    /// Stops the subscription: its current or next `next()` returns `None`, a
    /// `recv_timeout` returns `Ok(None)`, an async `next().await` returns `None`.
    /// Stopping twice is harmless.
    pub fn stop(&self) {
        // SeqCst, paired with the notifier's count of waiters (see notify.rs).
        self.stop.stopped.store(true, Ordering::SeqCst);
        self.shared.notifier.notify();
    }
}

/// What one non-blocking step of a subscription found.
pub(crate) enum Step {
    Event(RecordedEvent),
    Failed(Error),
    /// Nothing new is published; wait for the notifier.
    Pending,
    Ended,
}

impl Subscription {
    pub(crate) fn new(shared: &Arc<Shared>, writer: &Arc<WriterFront>, from: u64, filter: Filter) -> Self {
        Subscription::with_writer(shared, Arc::downgrade(writer), from, filter)
    }

    fn with_writer(shared: &Arc<Shared>, writer: Weak<WriterFront>, from: u64, filter: Filter) -> Self {
        shared.subscribers.fetch_add(1, Ordering::Relaxed);
        // Set before any wake-up of this subscription, so that its windows are aligned.
        LazyLock::force(&WINDOW_EPOCH);
        Subscription {
            key: shared.notifier.new_key(),
            shared: Arc::clone(shared),
            writer,
            follower: None,
            filter,
            cursor: None,
            position: from,
            resume: None,
            live: None,
            stop: Arc::new(StopFlag::default()),
            consumer: None,
            finished: false,
            last_wake: None,
            #[cfg(feature = "async")]
            async_wait: AsyncWait::None,
        }
    }

    /// A subscription on a read-only store, following another process's writer.
    pub(crate) fn following(shared: &Arc<Shared>, follower: &Arc<Follower>, from: u64, filter: Filter) -> Self {
        let mut subscription = Subscription::with_writer(shared, Weak::new(), from, filter);
        subscription.follower = Some(Arc::clone(follower));
        subscription
    }

    pub(crate) fn durable(shared: &Arc<Shared>, writer: &Arc<WriterFront>, name: &str, filter: Filter) -> Result<Self> {
        let claim = ConsumerClaim::take(shared, name)?;
        let acked = consumer::read(&*shared.storage, &shared.dir, name)?;
        let from = acked.map_or(0, |p| p.saturating_add(1));
        let mut subscription = Subscription::new(shared, writer, from, filter);
        subscription.consumer = Some(Durable { claim, acked });
        Ok(subscription)
    }

    fn stopped(&self) -> bool {
        self.stop.stopped.load(Ordering::SeqCst)
    }

    /// Whether live rounds read the shared tail: with two or more subscriptions (a lone one
    /// scans for itself, decoding only what matches), and not on a read-only store.
    fn shares_tail(&self) -> bool {
        self.follower.is_none() && self.shared.subscribers.load(Ordering::Relaxed) >= 2
    }

    /// When the batch window of a wake-up at `woken` ends (see [`FOLLOW_BATCH_WINDOW`]).
    fn window_end(&self, woken: Instant) -> Instant {
        window_end(woken, batch_window(self.shared.subscribers.load(Ordering::Relaxed)))
    }

    /// After waiting out a window: whether to keep reading on the window's clock (something
    /// was committed meanwhile, so the store is busy) instead of waiting for the writer's
    /// next notification. A busy store's subscriptions thus sleep only on their timers, and
    /// the writer's notify finds nobody to wake; one that finds nothing new goes back to
    /// waiting, so the first event after a quiet spell is delivered at once.
    fn still_busy(&self, woken: Instant) -> Option<Instant> {
        self.ready().then_some(woken)
    }

    /// Whether a step would end the subscription (stopped, closing, writer gone, poisoned).
    #[cfg(feature = "async")]
    fn ready_to_end(&self) -> bool {
        self.stopped() || self.shared.closing() || self.shared.writer_stopped() || self.shared.poison().is_some()
    }

    /// Whether a step would find something other than `Pending`.
    fn ready(&self) -> bool {
        self.stopped()
            || self.shared.closing()
            || self.shared.writer_stopped()
            || self.shared.poison().is_some()
            || self.shared.next_position() > self.position
    }

    /// One step that never blocks.
    pub(crate) fn step(&mut self) -> Step {
        loop {
            if self.finished || self.stopped() {
                return Step::Ended;
            }
            if self.shared.closing() {
                self.finished = true;
                return Step::Ended;
            }
            if let Some(cursor) = &mut self.cursor {
                match cursor.next() {
                    Some(Ok(event)) => {
                        self.position = event.position + 1;
                        return Step::Event(event);
                    }
                    Some(Err(error)) => {
                        self.finished = true;
                        return Step::Failed(error);
                    }
                    None => {
                        self.position = self.position.max(cursor.examined());
                        self.resume = cursor.resume();
                        self.cursor = None;
                    }
                }
            }
            if let Some(live) = &mut self.live {
                if let Some(event) = live.next_match(&self.filter, &mut self.position) {
                    return Step::Event(event);
                }
                self.position = self.position.max(live.batch.to);
                self.live = None;
            }
            if let Some(follower) = &self.follower
                && let Err(error) = follower.refresh_if_due(&self.shared)
            {
                self.finished = true;
                return Step::Failed(error);
            }
            if self.shared.next_position() > self.position {
                if self.shares_tail()
                    && let Some(batch) = self.shared.notifier.tail.batch_at(&self.shared, self.position)
                {
                    self.live = Some(LiveRound::new(batch, &self.filter, self.position, self.shared.deleted_streams()));
                    continue;
                }
                let resume = self.resume.take();
                self.cursor =
                    Some(FilteredIter::resuming(&self.shared, self.position, None, self.filter.clone(), resume));
                continue;
            }
            if let Some(cause) = self.shared.poison() {
                self.finished = true;
                return Step::Failed(Error::Poisoned { cause });
            }
            if self.shared.writer_stopped() {
                self.finished = true;
                return Step::Ended;
            }
            return Step::Pending;
        }
    }

    /// Steps, sleeping while nothing is published, until `deadline`; `None` on timeout.
    fn step_blocking(&mut self, deadline: Option<Instant>) -> Option<Step> {
        loop {
            match self.step() {
                Step::Pending => {
                    if let Some(last) = self.last_wake {
                        let until = self.window_end(last);
                        let until = deadline.map_or(until, |d| d.min(until));
                        let now = Instant::now();
                        if now < until {
                            // Gather what commits meanwhile into one round; a stop or close
                            // is noticed within the window.
                            std::thread::sleep(until - now);
                            if deadline.is_some_and(|d| Instant::now() >= d) && !self.ready() {
                                return None;
                            }
                            self.last_wake = self.still_busy(Instant::now());
                            continue;
                        }
                    }
                    let shared = Arc::clone(&self.shared);
                    if self.follower.is_some() {
                        // Nothing in this process publishes the other process's commits:
                        // wake up to refresh, and report a timeout only at the caller's.
                        let refresh_at = Instant::now() + READ_ONLY_REFRESH_INTERVAL;
                        let until = deadline.map_or(refresh_at, |d| d.min(refresh_at));
                        let woken = shared.notifier.wait_until(self.key, Some(until), || self.ready());
                        if !woken && deadline.is_some_and(|d| Instant::now() >= d) {
                            return None;
                        }
                        continue;
                    }
                    let woken = shared.notifier.wait_until(self.key, deadline, || self.ready());
                    self.last_wake = Some(Instant::now());
                    if !woken {
                        return None;
                    }
                }
                step => return Some(step),
            }
        }
    }

    /// The next matching event, waiting at most `timeout` for one to commit.
    ///
    /// # Errors
    /// `Ok(None)` when nothing new matched in time, and also once the subscription is
    /// stopped or the store closed (then [`Subscription::is_finished`] says so);
    /// [`Error::Corruption`] for a damaged record; [`Error::Poisoned`] once the writer
    /// failed and every event committed before has been delivered.
    ///
    /// ```
    /// use std::time::Duration;
    /// use chronicle::{Filter, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let mut subscription = store.subscribe(0, Filter::all())?;
    /// assert!(subscription.recv_timeout(Duration::from_millis(10))?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>> {
        let deadline = Instant::now().checked_add(timeout);
        match self.step_blocking(deadline) {
            None | Some(Step::Ended | Step::Pending) => Ok(None),
            Some(Step::Event(event)) => Ok(Some(event)),
            Some(Step::Failed(error)) => Err(error),
        }
    }

    /// Whether the subscription has ended (stopped, store closed, or after an error): it
    /// will deliver nothing more.
    ///
    /// ```
    /// use chronicle::{Filter, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let mut subscription = store.subscribe(0, Filter::all())?;
    /// subscription.stop_handle().stop();
    /// assert!(subscription.next().is_none() && subscription.is_finished());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_finished(&self) -> bool {
        self.finished || self.stopped()
    }

    /// Where the subscription would resume: just past the last event it examined,
    /// matching or not (events it skipped as not matching, deleted or discarded count as
    /// examined).
    ///
    /// Through a `&mut Subscription`, method syntax finds [`Iterator::position`] first
    /// (`Iterator` is implemented for `&mut I`): write `Subscription::position(sub)` there.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, Filter, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("a", ExpectedVersion::Any, [NewEvent::new("A", "")])?;
    /// let mut subscription = store.subscribe(0, Filter::stream("b"))?;
    /// assert_eq!(subscription.position(), 0);
    /// assert!(subscription.recv_timeout(std::time::Duration::ZERO)?.is_none());
    /// assert_eq!(subscription.position(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn position(&self) -> u64 {
        self.cursor.as_ref().map_or(self.position, |c| c.examined().max(self.position))
    }

    /// A handle that stops this subscription from another thread.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// let subscription = store.subscribe(0, chronicle::Filter::all())?;
    /// let stop = subscription.stop_handle();
    /// stop.stop();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle { shared: Arc::clone(&self.shared), stop: Arc::clone(&self.stop) }
    }

    /// The durable consumer's name, if this subscription is one.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// let subscription = store.subscribe_durable("billing", chronicle::Filter::all())?;
    /// assert_eq!(subscription.consumer_name(), Some("billing"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn consumer_name(&self) -> Option<&str> {
        self.consumer.as_ref().map(|d| d.claim.name.as_str())
    }

    /// Acknowledges every event at or before `position`: the durable consumer's checkpoint
    /// moves there, and a later [`Store::subscribe_durable`](crate::Store::subscribe_durable)
    /// with the same name starts just after it. When this returns `Ok`, the checkpoint is
    /// durable (its file is written and fsynced; without [`Durability::Sync`] the log is
    /// synced first, so a checkpoint never survives a power loss that takes the events it
    /// acknowledges). Acknowledging a position at or below the current checkpoint changes
    /// nothing. Delivery is at-least-once: events after the last acknowledgement are
    /// delivered again after a crash or a new subscription.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (nothing written) if this is not a durable subscription or
    /// `position` is at or past [`Subscription::position`] (not yet delivered or
    /// examined); [`Error::Io`] if the checkpoint could not be written (the old one stays);
    /// [`Error::Closed`] once the store is closing; the errors of
    /// [`Store::sync`](crate::Store::sync).
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, Filter, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("a", ExpectedVersion::Any, [NewEvent::new("A", ""), NewEvent::new("B", "")])?;
    /// let mut billing = store.subscribe_durable("billing", Filter::all())?;
    /// let first = billing.next().unwrap()?;
    /// billing.ack(first.position)?;
    /// drop(billing);
    /// assert_eq!(store.consumer_position("billing")?, Some(0));
    /// let mut again = store.subscribe_durable("billing", Filter::all())?;
    /// assert_eq!(again.next().unwrap()?.position, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ack(&mut self, position: u64) -> Result<()> {
        let examined = Subscription::position(self);
        let Some(durable) = &self.consumer else {
            return Err(Error::invalid("ack on a subscription that is not durable (use Store::subscribe_durable)"));
        };
        if position >= examined {
            return Err(Error::invalid(format!(
                "ack of position {position}, but the subscription has delivered or examined only positions below {examined}"
            )));
        }
        if durable.acked.is_some_and(|acked| acked >= position) {
            return Ok(());
        }
        self.sync_log_first()?;
        consumer::write(&*self.shared.storage, &self.shared.dir, &durable.claim.name, position)?;
        if let Some(durable) = &mut self.consumer {
            durable.acked = Some(position);
        }
        Ok(())
    }
}

impl Subscription {
    /// Makes the log durable before a consumer file that refers to it (not needed under
    /// `Durability::Sync`, where every delivered event is durable).
    fn sync_log_first(&self) -> Result<()> {
        if self.shared.closing() {
            return Err(Error::Closed);
        }
        if self.shared.options.durability != Durability::Sync {
            let writer = self.writer.upgrade().ok_or(Error::Closed)?;
            writer.call(&self.shared, |reply| Request::Sync { reply })?;
        }
        Ok(())
    }

    /// Parks `event`: the handler gave up on it for now. It is kept, with `reason`, in the
    /// consumer's parked list ([`Store::parked_events`](crate::Store::parked_events)) until
    /// [`Store::unpark`](crate::Store::unpark) hands it back, and it no longer holds the
    /// checkpoint back: acknowledge past it as usual. Parking an event already parked
    /// changes nothing. Durable when it returns (as [`Subscription::ack`]).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (nothing written) if this is not a durable subscription, the
    /// event lies at or past [`Subscription::position`], its stream id is invalid, `reason`
    /// is over [`PARK_REASON_BYTES_MAX`] bytes, or [`PARKED_EVENTS_MAX`] events are parked
    /// already; [`Error::Corruption`] if the parked list is damaged; [`Error::Io`];
    /// [`Error::Closed`].
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, Filter, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("order-1", ExpectedVersion::Any, [NewEvent::new("Placed", "bad"), NewEvent::new("Placed", "ok")])?;
    /// let mut mailer = store.subscribe_durable("mailer", Filter::all())?;
    /// let poison = mailer.next().unwrap()?;
    /// mailer.park(&poison, "template missing")?;
    /// let fine = mailer.next().unwrap()?;
    /// mailer.ack(fine.position)?; // past the parked event
    /// assert_eq!(store.parked_events("mailer")?[0].reason, "template missing");
    /// drop(mailer);
    /// let again = store.unpark("mailer", poison.position)?.expect("still stored");
    /// assert_eq!(again.data, poison.data);
    /// assert!(store.parked_events("mailer")?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn park(&mut self, event: &RecordedEvent, reason: &str) -> Result<()> {
        let examined = Subscription::position(self);
        let Some(durable) = &self.consumer else {
            return Err(Error::invalid("park on a subscription that is not durable (use Store::subscribe_durable)"));
        };
        if event.position >= examined {
            return Err(Error::invalid(format!(
                "park of position {}, but the subscription has delivered or examined only positions below {examined}",
                event.position
            )));
        }
        crate::validate::stream_id(&event.stream_id)?;
        if reason.len() > PARK_REASON_BYTES_MAX {
            return Err(Error::invalid(format!(
                "park reason is {} bytes, above the limit of {PARK_REASON_BYTES_MAX} bytes",
                reason.len()
            )));
        }
        let name = durable.claim.name.clone();
        let _parking = crate::sync::lock(&self.shared.park_lock);
        let (storage, dir) = (&*self.shared.storage, &self.shared.dir);
        let mut parked = park::read(storage, dir, &name)?;
        let at = match parked.binary_search_by_key(&event.position, |p| p.position) {
            Ok(_) => return Ok(()),
            Err(at) => at,
        };
        if parked.len() >= PARKED_EVENTS_MAX {
            return Err(Error::invalid(format!("consumer {name:?} has {PARKED_EVENTS_MAX} parked events already")));
        }
        self.sync_log_first()?;
        let entry = ParkedEvent {
            position: event.position,
            stream_id: event.stream_id.clone(),
            reason: reason.to_owned(),
            parked_at: std::time::SystemTime::now(),
        };
        parked.insert(at, entry);
        park::write(storage, dir, &name, &parked)
    }
}

impl Iterator for Subscription {
    type Item = Result<RecordedEvent>;

    /// The next matching event, blocking until one commits; `None` once stopped or the
    /// store is closed (and after an error item).
    fn next(&mut self) -> Option<Self::Item> {
        // The common case of a live subscriber, the next match of its current tail batch,
        // without the blocking step's layers: each would move the ~220-byte event again.
        if !self.finished
            && !self.stopped()
            && !self.shared.closing()
            && let Some(live) = &mut self.live
            && let Some(event) = live.next_match(&self.filter, &mut self.position)
        {
            return Some(Ok(event));
        }
        match self.step_blocking(None)? {
            Step::Event(event) => Some(Ok(event)),
            Step::Failed(error) => Some(Err(error)),
            Step::Ended | Step::Pending => None,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.subscribers.fetch_sub(1, Ordering::Relaxed);
        #[cfg(feature = "async")]
        self.shared.notifier.unregister(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_ends_at_most_one_window_after_the_wake_up_and_is_shared_by_its_wake_ups() {
        let window = Duration::from_millis(5);
        LazyLock::force(&WINDOW_EPOCH);
        let woken = Instant::now();
        let end = window_end(woken, window);
        assert!(end > woken && end <= woken + window, "{:?} after the wake-up", end - woken);
        // Every wake-up inside the same window ends with it; the next one with the next.
        let later_in_window = end - Duration::from_nanos(1);
        assert_eq!(window_end(later_in_window, window), end);
        assert_eq!(window_end(end, window), end + window);
    }

    #[test]
    fn the_window_grows_with_the_subscriptions_between_its_bounds() {
        assert_eq!(batch_window(1), FOLLOW_BATCH_WINDOW);
        assert_eq!(batch_window(100), Duration::from_millis(5));
        assert_eq!(batch_window(u64::MAX), FOLLOW_BATCH_WINDOW_MAX);
    }
}
