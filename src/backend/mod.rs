//! The backend-neutral event-store interface: what the typed layer
//! ([`typed`](crate::typed), with the `typed` feature) needs from a store. [`Store`]
//! implements it, and so does `chronicle_postgres::PostgresStore`; both pass the same
//! conformance suite (`chronicle_testkit::conformance`). `docs/design.md` ("The backend
//! trait") explains why it is blocking and how async applications use it.
//!
//! [`check_append`] and [`check_stream_id`] are the embedded store's input checks (with
//! default [`Options`](crate::Options)), public so that every backend rejects exactly
//! the same input with the same [`Error::InvalidInput`](crate::Error::InvalidInput).
//!
//! [`FollowStore`] extends it with subscriptions and durable consumers (its
//! [`LogSubscription`]s stop through a [`SubscriptionStop`]); both backends implement it
//! by delegating to their own same-named methods.

mod follow;

pub use self::follow::{FollowStore, LogSubscription, SubscriptionStop};

use std::ops::ControlFlow;

use crate::error::{Error, Result};
use crate::event::{AppendResult, EventView, ExpectedVersion, NewEvent, RecordedEvent, StreamAppend};
use crate::options::{BATCH_STREAMS_MAX, Options};
use crate::read::{AllIter, Filter, FilteredIter, StreamIter};
use crate::snapshot::Snapshot;
use crate::store::Store;
use crate::writer::AppendCondition;

/// The operations an event-sourcing layer needs from an event store, with the semantics of
/// the same-named [`Store`] methods (expected versions, idempotent retries by event id,
/// newest valid snapshot, permanent deletion). Blocking: every method may wait for I/O.
///
/// ```
/// use chronicle::{EventStore, ExpectedVersion, NewEvent, Store};
/// fn count_events(store: &impl EventStore, stream: &str) -> chronicle::Result<usize> {
///     let mut n = 0;
///     for event in store.read_stream(stream, 0)? {
///         event?;
///         n += 1;
///     }
///     Ok(n)
/// }
/// let store = Store::open_in_memory()?;
/// EventStore::append(&store, "s", ExpectedVersion::NoStream, vec![NewEvent::new("T", "")])?;
/// assert_eq!(count_events(&store, "s")?, 1);
/// # Ok::<(), chronicle::Error>(())
/// ```
pub trait EventStore: Send + Sync {
    /// Events of one stream in version order.
    type StreamEvents: Iterator<Item = Result<RecordedEvent>>;
    /// Events of every stream in global order.
    type AllEvents: Iterator<Item = Result<RecordedEvent>>;
    /// Events matching a [`Filter`] in global order.
    type FilteredEvents: Iterator<Item = Result<RecordedEvent>>;

    /// Appends `events` to `stream` atomically if its version satisfies `expected`.
    ///
    /// # Errors
    /// As [`Store::append`]: [`Error::WrongExpectedVersion`](crate::Error::WrongExpectedVersion)
    /// (nothing written), [`Error::StreamDeleted`](crate::Error::StreamDeleted), invalid input,
    /// I/O.
    ///
    /// ```
    /// # use chronicle::{EventStore, ExpectedVersion, NewEvent, Store};
    /// let store = Store::open_in_memory()?;
    /// let written = EventStore::append(&store, "s", ExpectedVersion::NoStream, vec![NewEvent::new("T", "")])?;
    /// assert_eq!(written.last_version, 0);
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn append(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<AppendResult>;

    /// Appends to several streams atomically, each part with its own expected version.
    ///
    /// # Errors
    /// As [`Store::append_multi`].
    ///
    /// ```
    /// # use chronicle::{EventStore, ExpectedVersion, NewEvent, Store, StreamAppend};
    /// let store = Store::open_in_memory()?;
    /// let parts = vec![StreamAppend::new("a", ExpectedVersion::Any, [NewEvent::new("T", "")])];
    /// assert_eq!(EventStore::append_multi(&store, parts)?.len(), 1);
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn append_multi(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>>;

    /// The events of `stream` from `from_version` on (none for a missing stream).
    ///
    /// # Errors
    /// As [`Store::read_stream`]; items fail with corruption or I/O errors.
    ///
    /// ```
    /// # use chronicle::{EventStore, Store};
    /// let store = Store::open_in_memory()?;
    /// assert_eq!(EventStore::read_stream(&store, "nothing", 0)?.count(), 0);
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn read_stream(&self, stream: &str, from_version: u64) -> Result<Self::StreamEvents>;

    /// Calls `visit` with each event of `stream` from `from_version` on, in version order, as
    /// a borrowed [`EventView`], until it returns [`ControlFlow::Break`]. `Store` reads
    /// straight from its memory maps with no allocation per event
    /// ([`Store::read_stream_with`]); the provided method visits the events of
    /// [`EventStore::read_stream`], for backends with nothing faster.
    ///
    /// # Errors
    /// As [`Store::read_stream_with`]: the first error of the read ends it.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use chronicle::{EventStore, ExpectedVersion, NewEvent, Store};
    /// let store = Store::open_in_memory()?;
    /// EventStore::append(&store, "s", ExpectedVersion::Any, vec![NewEvent::new("A", ""), NewEvent::new("B", "")])?;
    /// let mut types = Vec::new();
    /// EventStore::read_stream_with(&store, "s", 0, &mut |event| {
    ///     types.push(event.event_type.to_owned());
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert_eq!(types, ["A", "B"]);
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn read_stream_with(
        &self,
        stream: &str,
        from_version: u64,
        visit: &mut dyn FnMut(&EventView<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        for event in self.read_stream(stream, from_version)? {
            if visit(&event?.view()).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The events of `stream` from `from_version` (`None`: its last) down to its first.
    ///
    /// # Errors
    /// As [`Store::read_stream_backward`].
    ///
    /// ```
    /// # use chronicle::{EventStore, ExpectedVersion, NewEvent, Store};
    /// let store = Store::open_in_memory()?;
    /// EventStore::append(&store, "s", ExpectedVersion::Any, vec![NewEvent::new("T", ""), NewEvent::new("T", "")])?;
    /// let versions: Vec<u64> = EventStore::read_stream_backward(&store, "s", None)?.map(|e| e.unwrap().version).collect();
    /// assert_eq!(versions, [1, 0]);
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn read_stream_backward(&self, stream: &str, from_version: Option<u64>) -> Result<Self::StreamEvents>;

    /// Every event from global position `from_position` (`None`: the last) down to the
    /// first, in reverse position order.
    ///
    /// # Errors
    /// As [`Store::read_all_backward`].
    ///
    /// ```
    /// # use chronicle::{EventStore, Store};
    /// let store = Store::open_in_memory()?;
    /// assert_eq!(EventStore::read_all_backward(&store, None)?.count(), 0);
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn read_all_backward(&self, from_position: Option<u64>) -> Result<Self::AllEvents>;

    /// Every event from global position `from_position` on.
    ///
    /// # Errors
    /// As [`Store::read_all`].
    ///
    /// ```
    /// # use chronicle::{EventStore, Store};
    /// let store = Store::open_in_memory()?;
    /// assert_eq!(EventStore::read_all(&store, 0)?.count(), 0);
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn read_all(&self, from_position: u64) -> Result<Self::AllEvents>;

    /// The stream's last version, `None` if it has no event.
    ///
    /// # Errors
    /// As [`Store::stream_version`].
    ///
    /// ```
    /// # use chronicle::{EventStore, Store};
    /// let store = Store::open_in_memory()?;
    /// assert_eq!(EventStore::stream_version(&store, "s")?, None);
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn stream_version(&self, stream: &str) -> Result<Option<u64>>;

    /// Saves `state` as the snapshot of `stream` at `version`.
    ///
    /// # Errors
    /// As [`Store::save_snapshot`].
    ///
    /// ```
    /// # use chronicle::{EventStore, ExpectedVersion, NewEvent, Store};
    /// let store = Store::open_in_memory()?;
    /// EventStore::append(&store, "s", ExpectedVersion::Any, vec![NewEvent::new("T", "")])?;
    /// EventStore::save_snapshot(&store, "s", 0, b"state")?;
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn save_snapshot(&self, stream: &str, version: u64, state: &[u8]) -> Result<()>;

    /// The newest valid snapshot of `stream`.
    ///
    /// # Errors
    /// As [`Store::load_snapshot`].
    ///
    /// ```
    /// # use chronicle::{EventStore, Store};
    /// let store = Store::open_in_memory()?;
    /// assert!(EventStore::load_snapshot(&store, "s")?.is_none());
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>>;

    /// The events matching `filter` from global position `from_position` on.
    ///
    /// # Errors
    /// As [`Store::read_all_filtered`]: [`Error::InvalidInput`](crate::Error::InvalidInput)
    /// for a filter built from bad input.
    ///
    /// ```
    /// # use chronicle::{EventStore, ExpectedVersion, Filter, NewEvent, Store};
    /// let store = Store::open_in_memory()?;
    /// EventStore::append(&store, "order-1", ExpectedVersion::Any, vec![NewEvent::new("Placed", "")])?;
    /// assert_eq!(EventStore::read_all_filtered(&store, 0, Filter::category("order"))?.count(), 1);
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn read_all_filtered(&self, from_position: u64, filter: Filter) -> Result<Self::FilteredEvents>;

    /// Appends `parts` atomically only if no event matching `condition.filter` was
    /// committed after `condition.after_position`; of two racing conditional appends whose
    /// conditions each exclude the other's events, at most one succeeds.
    ///
    /// # Errors
    /// As [`Store::append_if`]: [`Error::ConditionFailed`](crate::Error::ConditionFailed)
    /// naming the first conflicting event (nothing written), otherwise as
    /// [`EventStore::append_multi`].
    ///
    /// ```
    /// # use chronicle::{AppendCondition, EventStore, ExpectedVersion, Filter, NewEvent, Store, StreamAppend};
    /// let store = Store::open_in_memory()?;
    /// let part = || vec![StreamAppend::new("seat-1", ExpectedVersion::Any, [NewEvent::new("Booked", "")])];
    /// let condition = AppendCondition::new(Filter::stream("seat-1"), None);
    /// EventStore::append_if(&store, condition.clone(), part())?;
    /// assert!(EventStore::append_if(&store, condition, part()).is_err());
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn append_if(&self, condition: AppendCondition, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>>;

    /// Deletes `stream` for ever if its version satisfies `expected`.
    ///
    /// # Errors
    /// As [`Store::delete_stream`].
    ///
    /// ```
    /// # use chronicle::{EventStore, ExpectedVersion, NewEvent, Store};
    /// let store = Store::open_in_memory()?;
    /// EventStore::append(&store, "s", ExpectedVersion::Any, vec![NewEvent::new("T", "")])?;
    /// EventStore::delete_stream(&store, "s", ExpectedVersion::Exact(0))?;
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    fn delete_stream(&self, stream: &str, expected: ExpectedVersion) -> Result<()>;
}

impl EventStore for Store {
    type StreamEvents = StreamIter;
    type AllEvents = AllIter;
    type FilteredEvents = FilteredIter;

    fn read_stream_with(
        &self,
        stream: &str,
        from_version: u64,
        visit: &mut dyn FnMut(&EventView<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        Store::read_stream_with(self, stream, from_version, visit)
    }

    fn read_all_filtered(&self, from_position: u64, filter: Filter) -> Result<FilteredIter> {
        Store::read_all_filtered(self, from_position, filter)
    }

    fn append_if(&self, condition: AppendCondition, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        Store::append_if(self, condition, parts)
    }

    fn append(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<AppendResult> {
        Store::append(self, stream, expected, events)
    }

    fn append_multi(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        Store::append_multi(self, parts)
    }

    fn read_stream(&self, stream: &str, from_version: u64) -> Result<StreamIter> {
        Store::read_stream(self, stream, from_version)
    }

    fn read_all(&self, from_position: u64) -> Result<AllIter> {
        Store::read_all(self, from_position)
    }

    fn read_stream_backward(&self, stream: &str, from_version: Option<u64>) -> Result<StreamIter> {
        Store::read_stream_backward(self, stream, from_version)
    }

    fn read_all_backward(&self, from_position: Option<u64>) -> Result<AllIter> {
        Store::read_all_backward(self, from_position)
    }

    fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        Store::stream_version(self, stream)
    }

    fn save_snapshot(&self, stream: &str, version: u64, state: &[u8]) -> Result<()> {
        Store::save_snapshot(self, stream, version, state)
    }

    fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>> {
        Store::load_snapshot(self, stream)
    }

    fn delete_stream(&self, stream: &str, expected: ExpectedVersion) -> Result<()> {
        Store::delete_stream(self, stream, expected)
    }
}

/// Checks a stream id as every [`Store`] method does: not empty, at most
/// [`STREAM_ID_BYTES_MAX`](crate::STREAM_ID_BYTES_MAX) bytes.
///
/// # Errors
/// [`Error::InvalidInput`] saying what is wrong.
///
/// ```
/// assert!(chronicle::check_stream_id("order-1").is_ok());
/// assert!(matches!(chronicle::check_stream_id(""), Err(chronicle::Error::InvalidInput { .. })));
/// ```
pub fn check_stream_id(stream: &str) -> Result<()> {
    crate::validate::stream_id(stream)
}

/// Checks an append of `parts` (one part for [`Store::append`], several for
/// [`Store::append_multi`]) against the limits of a [`Store`] opened with default
/// [`Options`]: stream ids, event types, event and batch sizes, counts, a stream named twice.
/// Other backends call this so that they refuse exactly what the embedded store refuses.
///
/// # Errors
/// [`Error::InvalidInput`], with the embedded store's message.
///
/// ```
/// use chronicle::{ExpectedVersion, NewEvent, StreamAppend, check_append};
/// assert!(check_append(&[StreamAppend::new("a", ExpectedVersion::Any, [NewEvent::new("T", "")])]).is_ok());
/// assert!(check_append(&[StreamAppend::new("a", ExpectedVersion::Any, [])]).is_err());
/// ```
pub fn check_append(parts: &[StreamAppend]) -> Result<()> {
    let options = Options::default();
    if parts.is_empty() {
        return Err(Error::invalid("append_multi has no streams"));
    }
    if parts.len() > BATCH_STREAMS_MAX {
        return Err(Error::invalid(format!("append_multi has more than {BATCH_STREAMS_MAX} streams")));
    }
    let mut sizes = Vec::with_capacity(parts.len());
    for part in parts {
        sizes.push(crate::validate::events_bytes(&options, &part.stream, &part.events)?);
    }
    crate::validate::batch_totals(
        &options,
        parts.iter().zip(&sizes).map(|(part, bytes)| (part.stream.as_str(), *bytes, part.events.len())),
    )
}
