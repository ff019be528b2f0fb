//! The values callers pass in and get back: events to append, recorded events, versions.

use std::time::SystemTime;

use bytes::Bytes;

/// What the caller expects of a stream's current version; checked by the writer thread
/// in commit order, so exactly one of several racing `Exact(v)` appends wins.
///
/// ```
/// use chronicle::{ExpectedVersion, NewEvent, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("cart-7", ExpectedVersion::NoStream, [NewEvent::new("Created", "{}")])?;
/// store.append("cart-7", ExpectedVersion::Exact(0), [NewEvent::new("ItemAdded", "{}")])?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must have no event.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have this version; new events start at `v + 1`.
    Exact(u64),
}

/// An event to append. The store assigns version, position and timestamp, and an id
/// when none is given.
///
/// ```
/// use chronicle::NewEvent;
/// let event = NewEvent::new("OrderPlaced", r#"{"total":42}"#)
///     .with_metadata("{}")
///     .with_id(7)
///     .with_correlation_id(1)
///     .with_causation_id(2);
/// assert_eq!(event.event_type(), "OrderPlaced");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub(crate) event_type: String,
    pub(crate) data: Bytes,
    pub(crate) metadata: Bytes,
    pub(crate) id: Option<u128>,
    pub(crate) correlation_id: Option<u128>,
    pub(crate) causation_id: Option<u128>,
}

impl NewEvent {
    /// An event of `event_type` carrying `data` (opaque bytes, e.g. JSON).
    ///
    /// ```
    /// let event = chronicle::NewEvent::new("Deposited", vec![1, 2, 3]);
    /// assert_eq!(event.data().as_ref(), &[1, 2, 3]);
    /// ```
    pub fn new(event_type: impl Into<String>, data: impl Into<Bytes>) -> Self {
        NewEvent {
            event_type: event_type.into(),
            data: data.into(),
            metadata: Bytes::new(),
            id: None,
            correlation_id: None,
            causation_id: None,
        }
    }

    /// Attaches metadata (opaque bytes).
    ///
    /// ```
    /// let event = chronicle::NewEvent::new("Deposited", "{}").with_metadata("user=7");
    /// assert_eq!(event.metadata().as_ref(), b"user=7");
    /// ```
    pub fn with_metadata(mut self, metadata: impl Into<Bytes>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// Sets the event id. Retrying an append whose events all carry ids returns the
    /// original result and writes nothing; see [`Store::append`](crate::Store::append) for
    /// exactly what is recognised as a retry under each [`ExpectedVersion`].
    ///
    /// ```
    /// let event = chronicle::NewEvent::new("Deposited", "{}").with_id(42);
    /// assert_eq!(event.id(), Some(42));
    /// ```
    pub fn with_id(mut self, id: u128) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the correlation id (the conversation this event belongs to).
    ///
    /// ```
    /// let event = chronicle::NewEvent::new("Deposited", "{}").with_correlation_id(9);
    /// # let _ = event;
    /// ```
    pub fn with_correlation_id(mut self, correlation_id: u128) -> Self {
        self.correlation_id = Some(correlation_id);
        self
    }

    /// Sets the causation id (the message that caused this event).
    ///
    /// ```
    /// let event = chronicle::NewEvent::new("Deposited", "{}").with_causation_id(8);
    /// # let _ = event;
    /// ```
    pub fn with_causation_id(mut self, causation_id: u128) -> Self {
        self.causation_id = Some(causation_id);
        self
    }

    /// The event type.
    ///
    /// ```
    /// assert_eq!(chronicle::NewEvent::new("A", "").event_type(), "A");
    /// ```
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The payload.
    ///
    /// ```
    /// assert!(chronicle::NewEvent::new("A", "").data().is_empty());
    /// ```
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The metadata.
    ///
    /// ```
    /// assert!(chronicle::NewEvent::new("A", "").metadata().is_empty());
    /// ```
    pub fn metadata(&self) -> &Bytes {
        &self.metadata
    }

    /// The id, if the caller set one.
    ///
    /// ```
    /// assert_eq!(chronicle::NewEvent::new("A", "").id(), None);
    /// ```
    pub fn id(&self) -> Option<u128> {
        self.id
    }

    /// The correlation id, if the caller set one.
    ///
    /// ```
    /// assert_eq!(chronicle::NewEvent::new("A", "").with_correlation_id(3).correlation_id(), Some(3));
    /// ```
    pub fn correlation_id(&self) -> Option<u128> {
        self.correlation_id
    }

    /// The causation id, if the caller set one.
    ///
    /// ```
    /// assert_eq!(chronicle::NewEvent::new("A", "").causation_id(), None);
    /// ```
    pub fn causation_id(&self) -> Option<u128> {
        self.causation_id
    }
}

/// An event as stored: the caller's fields plus what the store assigned.
///
/// `data` and `metadata` are zero-copy views of the memory-mapped segment.
///
/// ```
/// use chronicle::{ExpectedVersion, NewEvent, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "payload")])?;
/// let event = store.read_stream("s", 0)?.next().unwrap()?;
/// assert_eq!((event.version, event.position, &event.data[..]), (0, 0, &b"payload"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedEvent {
    /// The stream the event belongs to.
    pub stream_id: String,
    /// 0-based version within the stream.
    pub version: u64,
    /// 0-based global position, strictly increasing in commit order, never reassigned.
    pub position: u64,
    /// The event type.
    pub event_type: String,
    /// The payload.
    pub data: Bytes,
    /// The metadata.
    pub metadata: Bytes,
    /// The caller's id, or one the store assigned (unique, time-ordered).
    pub id: u128,
    /// The correlation id, if one was set.
    pub correlation_id: Option<u128>,
    /// The causation id, if one was set.
    pub causation_id: Option<u128>,
    /// When the writer thread committed the event (microsecond resolution).
    pub timestamp: SystemTime,
}

impl RecordedEvent {
    /// The event as a borrowed [`EventView`] (nothing copied), the form the zero-copy reads
    /// ([`Store::read_all_with`](crate::Store::read_all_with) and the like) hand out, so that
    /// code written for views also takes owned events.
    ///
    /// ```
    /// use chronicle::RecordedEvent;
    /// let event = RecordedEvent::new("order-1", 0, 7, "OrderPlaced", "{}");
    /// let view = event.view();
    /// assert_eq!((view.stream_id, view.position, view.data), ("order-1", 7, &b"{}"[..]));
    /// assert_eq!(view.to_recorded(), event);
    /// ```
    pub fn view(&self) -> EventView<'_> {
        EventView {
            stream_id: &self.stream_id,
            version: self.version,
            position: self.position,
            event_type: &self.event_type,
            data: &self.data,
            metadata: &self.metadata,
            id: self.id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            timestamp: self.timestamp,
        }
    }

    /// A recorded event built by hand, for unit tests of code that consumes events
    /// (projections, aggregates, read models) without a store. Metadata is empty, the id
    /// is 0, correlation and causation ids are unset and the timestamp is the Unix epoch
    /// until set with the `with_*` methods. The store itself never returns an event it did
    /// not read from its segments.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use chronicle::RecordedEvent;
    ///
    /// fn balance(events: &[RecordedEvent]) -> u64 {
    ///     events.iter().filter(|e| e.event_type == "Deposited").map(|e| u64::from(e.data[0])).sum()
    /// }
    ///
    /// let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let events = [
    ///     RecordedEvent::new("account-1", 0, 10, "Deposited", vec![5]).with_id(1).with_timestamp(at),
    ///     RecordedEvent::new("account-1", 1, 12, "Deposited", vec![7]).with_metadata("user=7"),
    /// ];
    /// assert_eq!(balance(&events), 12);
    /// assert_eq!((events[0].id, events[0].timestamp), (1, at));
    /// ```
    pub fn new(
        stream_id: impl Into<String>,
        version: u64,
        position: u64,
        event_type: impl Into<String>,
        data: impl Into<Bytes>,
    ) -> Self {
        RecordedEvent {
            stream_id: stream_id.into(),
            version,
            position,
            event_type: event_type.into(),
            data: data.into(),
            metadata: Bytes::new(),
            id: 0,
            correlation_id: None,
            causation_id: None,
            timestamp: SystemTime::UNIX_EPOCH,
        }
    }

    /// Sets the metadata.
    ///
    /// ```
    /// let event = chronicle::RecordedEvent::new("s", 0, 0, "T", "").with_metadata("m");
    /// assert_eq!(&event.metadata[..], b"m");
    /// ```
    pub fn with_metadata(mut self, metadata: impl Into<Bytes>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// Sets the event id.
    ///
    /// ```
    /// assert_eq!(chronicle::RecordedEvent::new("s", 0, 0, "T", "").with_id(9).id, 9);
    /// ```
    pub fn with_id(mut self, id: u128) -> Self {
        self.id = id;
        self
    }

    /// Sets the correlation id.
    ///
    /// ```
    /// let event = chronicle::RecordedEvent::new("s", 0, 0, "T", "").with_correlation_id(3);
    /// assert_eq!(event.correlation_id, Some(3));
    /// ```
    pub fn with_correlation_id(mut self, correlation_id: u128) -> Self {
        self.correlation_id = Some(correlation_id);
        self
    }

    /// Sets the causation id.
    ///
    /// ```
    /// let event = chronicle::RecordedEvent::new("s", 0, 0, "T", "").with_causation_id(4);
    /// assert_eq!(event.causation_id, Some(4));
    /// ```
    pub fn with_causation_id(mut self, causation_id: u128) -> Self {
        self.causation_id = Some(causation_id);
        self
    }

    /// Sets the commit timestamp.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// let at = SystemTime::UNIX_EPOCH + Duration::from_secs(60);
    /// assert_eq!(chronicle::RecordedEvent::new("s", 0, 0, "T", "").with_timestamp(at).timestamp, at);
    /// ```
    pub fn with_timestamp(mut self, timestamp: SystemTime) -> Self {
        self.timestamp = timestamp;
        self
    }
}

/// What [`Store::stream_info`](crate::Store::stream_info) reports about a stream that has
/// events.
///
/// `first_version` is above 0 once retention and compaction discarded the stream's oldest
/// events: code that rebuilds state from a stream without a snapshot must check it (a read
/// from version 0 silently starts at `first_version`).
///
/// ```
/// use chronicle::{ExpectedVersion, NewEvent, Retention, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("metrics", ExpectedVersion::Any, (0..10).map(|i| NewEvent::new("Sample", vec![i])))?;
/// store.set_stream_retention("metrics", Retention::MaxCount(4))?;
/// store.compact()?;
/// let info = store.stream_info("metrics")?.expect("the stream has events");
/// assert_eq!((info.first_version, info.last_version), (6, 9));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct StreamInfo {
    /// Version of the stream's first event still stored (0 unless retention discarded
    /// earlier ones).
    pub first_version: u64,
    /// Version of the stream's last event.
    pub last_version: u64,
}

/// One event borrowed from the store's memory map, as [`Store::read_all_with`] hands it
/// to its visitor: every field of a [`RecordedEvent`], checksum verified, without copying
/// or allocating anything. [`EventView::to_recorded`] makes an owned copy.
///
/// [`Store::read_all_with`]: crate::Store::read_all_with
///
/// ```
/// use std::ops::ControlFlow;
/// use chronicle::{ExpectedVersion, NewEvent, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("cart-1", ExpectedVersion::Any, [NewEvent::new("Added", "apple")])?;
/// let mut types = Vec::new();
/// store.read_all_with(0, |event| {
///     types.push(format!("{}:{}", event.stream_id, event.event_type));
///     ControlFlow::Continue(())
/// })?;
/// assert_eq!(types, ["cart-1:Added"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventView<'a> {
    /// The stream the event belongs to.
    pub stream_id: &'a str,
    /// 0-based version within the stream.
    pub version: u64,
    /// 0-based global position.
    pub position: u64,
    /// The event type.
    pub event_type: &'a str,
    /// The payload.
    pub data: &'a [u8],
    /// The metadata.
    pub metadata: &'a [u8],
    /// The event id.
    pub id: u128,
    /// The correlation id, if one was set.
    pub correlation_id: Option<u128>,
    /// The causation id, if one was set.
    pub causation_id: Option<u128>,
    /// When the writer committed the event (microsecond resolution).
    pub timestamp: SystemTime,
}

impl EventView<'_> {
    /// An owned copy of the event (data and metadata copied).
    ///
    /// ```
    /// # use std::ops::ControlFlow;
    /// # use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::open(dir.path())?;
    /// # store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "x")])?;
    /// let mut kept = Vec::new();
    /// store.read_all_with(0, |event| {
    ///     kept.push(event.to_recorded());
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert_eq!(kept, store.read_all(0)?.collect::<Result<Vec<_>, _>>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_recorded(&self) -> RecordedEvent {
        RecordedEvent {
            stream_id: self.stream_id.to_owned(),
            version: self.version,
            position: self.position,
            event_type: self.event_type.to_owned(),
            data: Bytes::copy_from_slice(self.data),
            metadata: Bytes::copy_from_slice(self.metadata),
            id: self.id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            timestamp: self.timestamp,
        }
    }
}

/// What a successful append assigned.
///
/// ```
/// use chronicle::{ExpectedVersion, NewEvent, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let result = store.append("s", ExpectedVersion::Any, [NewEvent::new("A", ""), NewEvent::new("B", "")])?;
/// assert_eq!((result.first_version, result.last_version), (0, 1));
/// assert_eq!((result.first_position, result.last_position), (0, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppendResult {
    /// Version of the first event appended.
    pub first_version: u64,
    /// Version of the last event appended.
    pub last_version: u64,
    /// Global position of the first event appended.
    pub first_position: u64,
    /// Global position of the last event appended.
    pub last_position: u64,
}

/// One stream's part of an [`append_multi`](crate::Store::append_multi).
///
/// ```
/// use chronicle::{ExpectedVersion, NewEvent, StreamAppend};
/// let part = StreamAppend::new("account-1", ExpectedVersion::Any, [NewEvent::new("Debited", "5")]);
/// # let _ = part;
/// ```
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub(crate) stream: String,
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: Vec<NewEvent>,
}

impl StreamAppend {
    /// Events for `stream`, checked against `expected`.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, StreamAppend};
    /// let part = StreamAppend::new("a", ExpectedVersion::NoStream, vec![NewEvent::new("X", "")]);
    /// # let _ = part;
    /// ```
    pub fn new(
        stream: impl Into<String>,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> Self {
        StreamAppend { stream: stream.into(), expected, events: events.into_iter().collect() }
    }

    /// The stream appended to.
    ///
    /// ```
    /// # use chronicle::{ExpectedVersion, StreamAppend};
    /// assert_eq!(StreamAppend::new("a", ExpectedVersion::Any, []).stream(), "a");
    /// ```
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The expected version of the stream.
    ///
    /// ```
    /// # use chronicle::{ExpectedVersion, StreamAppend};
    /// assert_eq!(StreamAppend::new("a", ExpectedVersion::NoStream, []).expected(), ExpectedVersion::NoStream);
    /// ```
    pub fn expected(&self) -> ExpectedVersion {
        self.expected
    }

    /// The events to append.
    ///
    /// ```
    /// # use chronicle::{ExpectedVersion, NewEvent, StreamAppend};
    /// assert_eq!(StreamAppend::new("a", ExpectedVersion::Any, [NewEvent::new("T", "")]).events().len(), 1);
    /// ```
    pub fn events(&self) -> &[NewEvent] {
        &self.events
    }

    /// Stream, expected version and events, by value (for backends that move the events).
    ///
    /// ```
    /// # use chronicle::{ExpectedVersion, NewEvent, StreamAppend};
    /// let (stream, _, events) = StreamAppend::new("a", ExpectedVersion::Any, [NewEvent::new("T", "")]).into_parts();
    /// assert_eq!((stream.as_str(), events.len()), ("a", 1));
    /// ```
    pub fn into_parts(self) -> (String, ExpectedVersion, Vec<NewEvent>) {
        (self.stream, self.expected, self.events)
    }
}
