//! Following the log through any backend: [`FollowStore`], [`LogSubscription`],
//! [`SubscriptionStop`]. Each method delegates to the backend's own same-named method
//! ([`Store::subscribe`], [`Subscription::ack`], ...), so both APIs answer alike.

use std::time::Duration;

use super::EventStore;
use crate::error::Result;
use crate::event::RecordedEvent;
use crate::read::Filter;
use crate::store::Store;
use crate::subscription::{StopHandle, Subscription};

/// Stops a subscription from any thread (as [`StopHandle::stop`]): a `next()` blocked on
/// it returns `None`, a `recv_timeout` returns `Ok(None)`. Stopping twice is harmless.
///
/// ```
/// use chronicle::{Filter, FollowStore, LogSubscription, Store, SubscriptionStop};
/// let store = Store::open_in_memory()?;
/// let mut subscription = FollowStore::subscribe(&store, 0, Filter::all())?;
/// let stop = LogSubscription::stop_handle(&subscription);
/// let waiting = std::thread::spawn(move || subscription.next().is_none());
/// SubscriptionStop::stop(&stop);
/// assert!(waiting.join().unwrap());
/// # Ok::<(), chronicle::Error>(())
/// ```
pub trait SubscriptionStop: Clone + Send + Sync + 'static {
    /// Stops the subscription this handle came from.
    fn stop(&self);
}

/// A subscription of any backend: the events matching a [`Filter`] from a position on,
/// first those already committed, then each new one as it commits, in position order,
/// each exactly once; `next()` blocks until one commits and returns `None` once stopped.
///
/// ```
/// use chronicle::{EventStore, ExpectedVersion, Filter, FollowStore, LogSubscription, NewEvent, Store};
/// fn first_position<S: FollowStore>(store: &S) -> chronicle::Result<Option<u64>> {
///     let mut subscription = store.subscribe(0, Filter::all())?;
///     Ok(subscription.recv_timeout(std::time::Duration::from_secs(10))?.map(|e| e.position))
/// }
/// let store = Store::open_in_memory()?;
/// EventStore::append(&store, "s", ExpectedVersion::Any, vec![NewEvent::new("T", "")])?;
/// assert_eq!(first_position(&store)?, Some(0));
/// # Ok::<(), chronicle::Error>(())
/// ```
pub trait LogSubscription: Iterator<Item = Result<RecordedEvent>> + Send + 'static {
    /// What [`LogSubscription::stop_handle`] returns.
    type Stop: SubscriptionStop;

    /// The next matching event, waiting at most `timeout` for one to commit.
    ///
    /// # Errors
    /// `Ok(None)` when nothing new matched in time or once stopped; otherwise as the
    /// backend's `recv_timeout` ([`Subscription::recv_timeout`]): a damaged record, a
    /// failed writer, a database that could not be read.
    ///
    /// ```
    /// use chronicle::{Filter, FollowStore, LogSubscription, Store};
    /// let store = Store::open_in_memory()?;
    /// let mut subscription = FollowStore::subscribe(&store, 0, Filter::all())?;
    /// assert!(LogSubscription::recv_timeout(&mut subscription, std::time::Duration::ZERO)?.is_none());
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>>;

    /// Where the subscription would resume: just past the last event it delivered or
    /// examined (events that do not match count as examined).
    ///
    /// ```
    /// use chronicle::{Filter, FollowStore, LogSubscription, Store};
    /// let store = Store::open_in_memory()?;
    /// let subscription = FollowStore::subscribe(&store, 7, Filter::all())?;
    /// assert_eq!(LogSubscription::position(&subscription), 7);
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn position(&self) -> u64;

    /// Acknowledges every event at or before `position` for this durable consumer; a later
    /// [`FollowStore::subscribe_durable`] with its name starts just after it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) (nothing written) if this is not
    /// a durable subscription or `position` is at or past [`LogSubscription::position`];
    /// otherwise as the backend's `ack` ([`Subscription::ack`]).
    ///
    /// ```
    /// use chronicle::{EventStore, ExpectedVersion, Filter, FollowStore, LogSubscription, NewEvent, Store};
    /// let store = Store::open_in_memory()?;
    /// EventStore::append(&store, "s", ExpectedVersion::Any, vec![NewEvent::new("T", "")])?;
    /// let mut billing = FollowStore::subscribe_durable(&store, "billing", Filter::all())?;
    /// let event = billing.next().unwrap()?;
    /// LogSubscription::ack(&mut billing, event.position)?;
    /// assert_eq!(FollowStore::consumer_position(&store, "billing")?, Some(0));
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn ack(&mut self, position: u64) -> Result<()>;

    /// A handle that stops this subscription from another thread.
    ///
    /// ```
    /// use chronicle::{Filter, FollowStore, LogSubscription, Store, SubscriptionStop};
    /// let store = Store::open_in_memory()?;
    /// let mut subscription = FollowStore::subscribe(&store, 0, Filter::all())?;
    /// LogSubscription::stop_handle(&subscription).stop();
    /// assert!(subscription.next().is_none());
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn stop_handle(&self) -> Self::Stop;
}

/// An [`EventStore`] whose log can be followed: subscriptions (catch-up, then live) and
/// durable consumers, with the semantics of the same-named [`Store`] methods. [`Store`]
/// implements it, and so does `chronicle_postgres::PostgresStore`; the conformance suite
/// (`chronicle_testkit::conformance::run_follow`) checks both.
///
/// ```
/// use chronicle::{EventStore, ExpectedVersion, Filter, FollowStore, NewEvent, Store};
/// fn orders_so_far<S: FollowStore>(store: &S) -> chronicle::Result<Vec<u64>> {
///     let mut orders = store.subscribe(0, Filter::category("order"))?;
///     let mut seen = Vec::new();
///     while let Some(event) = chronicle::LogSubscription::recv_timeout(&mut orders, std::time::Duration::ZERO)? {
///         seen.push(event.position);
///     }
///     Ok(seen)
/// }
/// let store = Store::open_in_memory()?;
/// EventStore::append(&store, "order-1", ExpectedVersion::Any, vec![NewEvent::new("Placed", "")])?;
/// assert_eq!(orders_so_far(&store)?, [0]);
/// # Ok::<(), chronicle::Error>(())
/// ```
pub trait FollowStore: EventStore {
    /// The backend's subscription.
    type Subscription: LogSubscription;

    /// Follows the log: the events matching `filter` from `from_position` on (a position
    /// beyond the end waits for the log to reach it).
    ///
    /// # Errors
    /// As [`Store::subscribe`]: [`Error::InvalidInput`](crate::Error::InvalidInput) for a
    /// filter built from bad input.
    ///
    /// ```
    /// use chronicle::{Filter, FollowStore, Store};
    /// let store = Store::open_in_memory()?;
    /// assert!(FollowStore::subscribe(&store, 0, Filter::category("a-b")).is_err());
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn subscribe(&self, from_position: u64, filter: Filter) -> Result<Self::Subscription>;

    /// A durable consumer: a subscription that starts just after the last position
    /// acknowledged under `name` (at 0 the first time); at-least-once; one live
    /// subscription per name.
    ///
    /// # Errors
    /// As [`Store::subscribe_durable`]: [`Error::ConsumerInUse`](crate::Error::ConsumerInUse)
    /// while another live subscription has the name,
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for a bad name or filter.
    ///
    /// ```
    /// use chronicle::{Error, Filter, FollowStore, Store};
    /// let store = Store::open_in_memory()?;
    /// let billing = FollowStore::subscribe_durable(&store, "billing", Filter::all())?;
    /// assert!(matches!(FollowStore::subscribe_durable(&store, "billing", Filter::all()), Err(Error::ConsumerInUse { .. })));
    /// # drop(billing);
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn subscribe_durable(&self, name: &str, filter: Filter) -> Result<Self::Subscription>;

    /// The last position acknowledged by durable consumer `name`; `None` if it never
    /// acknowledged one (or was deleted).
    ///
    /// # Errors
    /// As [`Store::consumer_position`]: [`Error::InvalidInput`](crate::Error::InvalidInput)
    /// for an invalid name.
    ///
    /// ```
    /// use chronicle::{FollowStore, Store};
    /// let store = Store::open_in_memory()?;
    /// assert_eq!(FollowStore::consumer_position(&store, "billing")?, None);
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn consumer_position(&self, name: &str) -> Result<Option<u64>>;

    /// Deletes durable consumer `name`'s checkpoint (absent is fine): a later
    /// subscription with the name starts at 0.
    ///
    /// # Errors
    /// As [`Store::delete_consumer`]: [`Error::ConsumerInUse`](crate::Error::ConsumerInUse)
    /// while a live subscription holds the name (nothing deleted),
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an invalid name.
    ///
    /// ```
    /// use chronicle::{FollowStore, Store};
    /// let store = Store::open_in_memory()?;
    /// FollowStore::delete_consumer(&store, "billing")?;
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn delete_consumer(&self, name: &str) -> Result<()>;
}

impl SubscriptionStop for StopHandle {
    fn stop(&self) {
        StopHandle::stop(self);
    }
}

impl LogSubscription for Subscription {
    type Stop = StopHandle;

    fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>> {
        Subscription::recv_timeout(self, timeout)
    }

    fn position(&self) -> u64 {
        Subscription::position(self)
    }

    fn ack(&mut self, position: u64) -> Result<()> {
        Subscription::ack(self, position)
    }

    fn stop_handle(&self) -> StopHandle {
        Subscription::stop_handle(self)
    }
}

impl FollowStore for Store {
    type Subscription = Subscription;

    fn subscribe(&self, from_position: u64, filter: Filter) -> Result<Subscription> {
        Store::subscribe(self, from_position, filter)
    }

    fn subscribe_durable(&self, name: &str, filter: Filter) -> Result<Subscription> {
        Store::subscribe_durable(self, name, filter)
    }

    fn consumer_position(&self, name: &str) -> Result<Option<u64>> {
        Store::consumer_position(self, name)
    }

    fn delete_consumer(&self, name: &str) -> Result<()> {
        Store::delete_consumer(self, name)
    }
}
