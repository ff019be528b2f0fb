//! Following the log: subscriptions, durable consumers, parked events and projections.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Store {
    /// Follows the log: the events matching `filter` from `from_position` on, first those
    /// already committed, then each one as it commits, in position order, each exactly
    /// once (see [`Subscription`]). Under [`Durability::Sync`] only durable events are
    /// delivered. A position beyond the end waits for the log to reach it.
    ///
    /// The subscription does not keep the store open: closing it, or dropping its last
    /// clone, ends every subscription (`next()` returns `None`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a filter built from bad input; [`Error::Closed`].
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, Filter, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let mut orders = store.subscribe(0, Filter::category("order"))?;
    /// store.append("order-7", ExpectedVersion::Any, [NewEvent::new("OrderPlaced", "{}")])?;
    /// let event = orders.next().unwrap()?;
    /// assert_eq!(event.stream_id, "order-7");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe(&self, from_position: u64, filter: Filter) -> Result<Subscription> {
        self.ensure_open()?;
        filter.validate()?;
        let subscription = match (&self.inner.writer, &self.inner.follower) {
            (Some(writer), _) => Subscription::new(self.shared(), writer, from_position, filter),
            (None, Some(follower)) => Subscription::following(self.shared(), follower, from_position, filter),
            (None, None) => return Err(Error::internal("a store with neither a writer nor a follower")),
        };
        Ok(subscription)
    }

    /// A durable consumer: a subscription that starts just after the last position
    /// acknowledged ([`Subscription::ack`]) under `name` (at 0 the first time) and keeps its
    /// checkpoint in the store directory (`consumer-{name}.chk`). Delivery is
    /// at-least-once: after a crash or restart the consumer resumes at or before its first
    /// unacknowledged event. One live subscription per name.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a name that is empty, over
    /// [`CONSUMER_NAME_BYTES_MAX`](crate::CONSUMER_NAME_BYTES_MAX) bytes, or holds anything
    /// but ASCII letters, digits, `_`, `-`, `.` (or starts with `.`), and for a bad filter;
    /// [`Error::ConsumerInUse`] if another live subscription has this name;
    /// [`Error::Corruption`] if its checkpoint file is damaged; [`Error::Io`];
    /// [`Error::Closed`].
    ///
    /// ```
    /// use chronicle::{Error, Filter, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let billing = store.subscribe_durable("billing", Filter::all())?;
    /// assert!(matches!(store.subscribe_durable("billing", Filter::all()), Err(Error::ConsumerInUse { .. })));
    /// drop(billing);
    /// assert!(store.subscribe_durable("billing", Filter::all()).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe_durable(&self, name: &str, filter: Filter) -> Result<Subscription> {
        self.ensure_open()?;
        consumer::validate_name(name)?;
        filter.validate()?;
        // A durable consumer writes its checkpoint: only the writing store has one.
        Subscription::durable(self.shared(), self.writer("subscribe_durable")?, name, filter)
    }

    /// The last position acknowledged by durable consumer `name`; `None` if it never
    /// acknowledged one (or was deleted).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an invalid name (as [`Store::subscribe_durable`]);
    /// [`Error::Corruption`] for a damaged checkpoint; [`Error::Io`]; [`Error::Closed`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// assert_eq!(store.consumer_position("billing")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn consumer_position(&self, name: &str) -> Result<Option<u64>> {
        self.ensure_open()?;
        consumer::validate_name(name)?;
        consumer::read(&*self.shared().storage, &self.shared().dir, name)
    }

    /// Deletes durable consumer `name`'s checkpoint: a later
    /// [`Store::subscribe_durable`] with this name starts at 0. Deleting a consumer that
    /// has no checkpoint is not an error.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an invalid name; [`Error::ConsumerInUse`] while a live
    /// subscription holds the name (nothing deleted); [`Error::Io`]; [`Error::Closed`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// store.delete_consumer("billing")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_consumer(&self, name: &str) -> Result<()> {
        let _writing = sync::read(&self.inner.direct_writes);
        self.ensure_open()?;
        consumer::validate_name(name)?;
        // Held while removing, so no subscription can claim the name meanwhile.
        let _claim = consumer::ConsumerClaim::take(self.shared(), name)?;
        let _parking = sync::lock(&self.shared().park_lock);
        park::remove(&*self.shared().storage, &self.shared().dir, name)?;
        consumer::remove(&*self.shared().storage, &self.shared().dir, name)
    }

    /// Runs `projection` on a background thread: loads its saved `(version, position)`,
    /// resets it if the version changed (rebuilding from position 0), then applies every
    /// matching event in batches (at most
    /// [`PROJECTION_BATCH_EVENTS_MAX`](crate::PROJECTION_BATCH_EVENTS_MAX)), each saved by
    /// the projection together with its checkpoint. [`ProjectionRunner::wait_for`] reads
    /// your own writes; [`ProjectionRunner::stop`] returns the projection. The runner ends
    /// when the store closes.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the projection's error if `load` or `reset` failed,
    /// or for a bad filter; [`Error::Closed`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use chronicle::{ExpectedVersion, Filter, NewEvent, Projection, ProjectionError, RecordedEvent, Store};
    /// #[derive(Default)]
    /// struct OrderCount { count: u64, saved: Option<(u32, u64)> }
    /// impl Projection for OrderCount {
    ///     fn name(&self) -> &str { "order-count" }
    ///     fn version(&self) -> u32 { 1 }
    ///     fn filter(&self) -> Filter { Filter::category("order") }
    ///     fn load(&mut self) -> Result<Option<(u32, u64)>, ProjectionError> { Ok(self.saved) }
    ///     fn reset(&mut self) -> Result<(), ProjectionError> { self.count = 0; Ok(()) }
    ///     fn apply(&mut self, events: &[RecordedEvent], version: u32, through: u64) -> Result<(), ProjectionError> {
    ///         self.count += events.len() as u64; // a real one writes state + checkpoint in one transaction
    ///         self.saved = Some((version, through));
    ///         Ok(())
    ///     }
    /// }
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let runner = store.run_projection(OrderCount::default())?;
    /// let written = store.append("order-1", ExpectedVersion::Any, [NewEvent::new("Placed", "")])?;
    /// assert!(runner.wait_for(written.last_position, Duration::from_secs(10))?);
    /// assert_eq!(runner.stop()?.count, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_projection<P: Projection>(&self, projection: P) -> Result<ProjectionRunner<P>> {
        self.ensure_open()?;
        ProjectionRunner::start(projection, |from, filter| self.subscribe(from, filter))
    }

    /// The events durable consumer `name` parked ([`Subscription::park`]), by position.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an invalid name; [`Error::Corruption`] if the parked
    /// list is damaged; [`Error::Io`]; [`Error::Closed`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// assert!(store.parked_events("mailer")?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parked_events(&self, name: &str) -> Result<Vec<ParkedEvent>> {
        self.ensure_open()?;
        consumer::validate_name(name)?;
        let _parking = sync::lock(&self.shared().park_lock);
        park::read(&*self.shared().storage, &self.shared().dir, name)
    }

    /// Takes the event at `position` out of consumer `name`'s parked list and returns it,
    /// to be handled again (`None` if deletion or retention discarded it meanwhile; it is
    /// taken out of the list either way). Works whether or not a subscription of `name`
    /// is live.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an invalid name or a position that is not parked
    /// (nothing changed); [`Error::Corruption`]; [`Error::Io`] (the list is unchanged);
    /// [`Error::Closed`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = chronicle::Store::open(dir.path())?;
    /// assert!(store.unpark("mailer", 3).is_err()); // nothing parked
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unpark(&self, name: &str, position: u64) -> Result<Option<crate::RecordedEvent>> {
        let _writing = sync::read(&self.inner.direct_writes);
        self.ensure_open()?;
        consumer::validate_name(name)?;
        let _parking = sync::lock(&self.shared().park_lock);
        let (storage, dir) = (&*self.shared().storage, &self.shared().dir);
        let mut parked = park::read(storage, dir, name)?;
        let Ok(at) = parked.binary_search_by_key(&position, |p| p.position) else {
            return Err(Error::invalid(format!("consumer {name:?} has no parked event at position {position}")));
        };
        let stream = Filter::stream(parked.get(at).map(|p| p.stream_id.clone()).unwrap_or_default());
        let event =
            FilteredIter::new(self.shared(), position, Some(position.saturating_add(1)), stream).next().transpose()?;
        parked.remove(at);
        park::write(storage, dir, name, &parked)?;
        Ok(event)
    }
}
