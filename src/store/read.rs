//! Reading a store: streams forward and backward, the whole log, filtered reads, stream versions and the list of streams.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Store {
    /// Reads `stream` from `from_version` on, in version order. A missing stream reads as
    /// empty; versions discarded by retention are skipped.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`] for an invalid stream id. Items
    /// are [`Error::Corruption`] if a record fails its checksum.
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("s", ExpectedVersion::Any, (0..3).map(|i| NewEvent::new("T", vec![i])))?;
    /// let versions: Vec<u64> = store.read_stream("s", 1)?.map(|e| e.unwrap().version).collect();
    /// assert_eq!(versions, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_stream(&self, stream: &str, from_version: u64) -> Result<StreamIter> {
        self.follow()?;
        StreamIter::new(Arc::clone(self.shared()), stream, from_version, None, Direction::Forward)
    }

    /// Calls `visit` with every event of `stream` from `from_version` on, in version order,
    /// each as a borrowed [`EventView`] straight from the memory map: checksums and index
    /// checks are those of [`Store::read_stream`], but nothing is copied or allocated per
    /// event, which makes this the fastest way to load an aggregate. `visit` returns
    /// [`ControlFlow::Break`] to stop early. A missing stream visits nothing; versions
    /// discarded by retention are skipped. Sees the stream as it was when called.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`] for an invalid stream id,
    /// [`Error::Corruption`] at the first record that fails its checks (events before it have
    /// been visited), [`Error::Closed`] once [`Store::close`] has begun on any clone.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("account-1", ExpectedVersion::Any, [5u8, 7, 9].map(|a| NewEvent::new("Deposited", vec![a])))?;
    /// let mut balance = 0u64;
    /// store.read_stream_with("account-1", 1, |event| {
    ///     balance += u64::from(event.data[0]);
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert_eq!(balance, 16);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_stream_with(
        &self,
        stream: &str,
        from_version: u64,
        visit: impl FnMut(&EventView<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        self.follow()?;
        StreamIter::new(Arc::clone(self.shared()), stream, from_version, None, Direction::Forward)?.visit(visit)
    }

    /// Reads `stream` backward from `from_version` (`None`: from its last event) down to
    /// its first.
    ///
    /// # Errors
    /// As [`Store::read_stream`].
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("s", ExpectedVersion::Any, (0..3).map(|i| NewEvent::new("T", vec![i])))?;
    /// let versions: Vec<u64> = store.read_stream_backward("s", None)?.map(|e| e.unwrap().version).collect();
    /// assert_eq!(versions, [2, 1, 0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_stream_backward(&self, stream: &str, from_version: Option<u64>) -> Result<StreamIter> {
        self.follow()?;
        StreamIter::new(Arc::clone(self.shared()), stream, from_version.unwrap_or(u64::MAX), None, Direction::Backward)
    }

    /// Reads every event in global position order from `from_position` on.
    ///
    /// # Errors
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone; items are
    /// [`Error::Corruption`] if a record fails its checksum.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("a", ExpectedVersion::Any, [NewEvent::new("T", "")])?;
    /// assert_eq!(store.read_all(0)?.count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all(&self, from_position: u64) -> Result<AllIter> {
        self.follow()?;
        Ok(AllIter::new(self.shared(), Some(from_position), Direction::Forward))
    }

    /// Calls `visit` with every event from `from_position` on, in position order, each as a
    /// borrowed [`EventView`] straight from the memory map: checksums are verified as with
    /// [`Store::read_all`], but nothing is copied or allocated per event, which makes this
    /// the fastest way to rebuild a read model from the whole log. `visit` returns
    /// [`ControlFlow::Break`] to stop early. Sees the log as it was when called.
    ///
    /// # Errors
    /// [`Error::Corruption`] at the first record that fails its checks (events before it have
    /// been visited).
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// for amount in [5u8, 7, 9] {
    ///     store.append("account-1", ExpectedVersion::Any, [NewEvent::new("Deposited", vec![amount])])?;
    /// }
    /// let mut balance = 0u64;
    /// store.read_all_with(0, |event| {
    ///     balance += u64::from(event.data[0]);
    ///     if balance > 10 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    /// })?;
    /// assert_eq!(balance, 12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all_with(
        &self,
        from_position: u64,
        visit: impl FnMut(&EventView<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        self.follow()?;
        AllIter::new(self.shared(), Some(from_position), Direction::Forward).visit(visit)
    }

    /// Reads the events matching `filter` in position order from `from_position` on.
    /// Stream, category and prefix conditions are answered from the segments' stream
    /// indexes (only matching records are read); event types are checked on each record
    /// read. Events of deleted streams and events discarded by retention are skipped.
    /// Sees the log as it was when called.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if `filter` was built from bad input (an empty list of
    /// event types, an empty category or prefix, an invalid stream id);
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone. Items are
    /// [`Error::Corruption`] if a record fails its checksum.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, Filter, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("order-1", ExpectedVersion::Any, [NewEvent::new("OrderPlaced", "{}")])?;
    /// store.append("order-2", ExpectedVersion::Any, [NewEvent::new("OrderShipped", "{}")])?;
    /// let shipped = store.read_all_filtered(0, Filter::event_types(["OrderShipped"]))?;
    /// assert_eq!(shipped.map(|e| e.unwrap().stream_id).collect::<Vec<_>>(), ["order-2"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all_filtered(&self, from_position: u64, filter: Filter) -> Result<FilteredIter> {
        self.ensure_open()?;
        filter.validate()?;
        Ok(FilteredIter::new(self.shared(), from_position, None, filter))
    }

    /// Calls `visit` with every event matching `filter` from `from_position` on, in position
    /// order, each as a borrowed [`EventView`] straight from the memory map: the index use,
    /// skips and checks of [`Store::read_all_filtered`], but nothing is copied or allocated
    /// per event, which makes this the fastest way to catch a read model up on part of the
    /// log. `visit` returns [`ControlFlow::Break`] to stop early. Sees the log as it was when
    /// called.
    ///
    /// # Errors
    /// As [`Store::read_all_filtered`], returned instead of yielded: [`Error::InvalidInput`]
    /// for a filter built from bad input, [`Error::Closed`], and [`Error::Corruption`] at the
    /// first matching record that fails its checks (events before it have been visited).
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use chronicle::{ExpectedVersion, Filter, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("order-1", ExpectedVersion::Any, [NewEvent::new("OrderPlaced", "{}")])?;
    /// store.append("user-1", ExpectedVersion::Any, [NewEvent::new("Registered", "{}")])?;
    /// store.append("order-2", ExpectedVersion::Any, [NewEvent::new("OrderPlaced", "{}")])?;
    /// let mut orders = Vec::new();
    /// store.read_all_filtered_with(0, Filter::category("order"), |event| {
    ///     orders.push(event.stream_id.to_owned());
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert_eq!(orders, ["order-1", "order-2"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all_filtered_with(
        &self,
        from_position: u64,
        filter: Filter,
        visit: impl FnMut(&EventView<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        self.read_all_filtered(from_position, filter)?.visit(visit)
    }

    /// Reads every event in reverse position order from `from_position` (`None`: the last).
    ///
    /// # Errors
    /// As [`Store::read_all`].
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("a", ExpectedVersion::Any, [NewEvent::new("T", ""), NewEvent::new("U", "")])?;
    /// let positions: Vec<u64> = store.read_all_backward(None)?.map(|e| e.unwrap().position).collect();
    /// assert_eq!(positions, [1, 0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all_backward(&self, from_position: Option<u64>) -> Result<AllIter> {
        self.follow()?;
        Ok(AllIter::new(self.shared(), from_position, Direction::Backward))
    }

    /// The version of the stream's last event; `None` if the stream has no event.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`] for an invalid stream id.
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// assert_eq!(store.stream_version("s")?, None);
    /// store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "")])?;
    /// assert_eq!(store.stream_version("s")?, Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        self.follow()?;
        validate::stream_id(stream)?;
        match self.shared().stream_state(stream) {
            Some(state) if state.deleted => Err(Error::StreamDeleted { stream: stream.to_owned() }),
            Some(state) => Ok(state.last_version),
            None => Ok(None),
        }
    }

    /// The stream's first stored and last versions; `None` if the stream has no event.
    ///
    /// `first_version` is above 0 when retention ([`Retention::MaxCount`],
    /// [`Retention::MaxAge`], [`Retention::BeforeSnapshot`]) let compaction discard the oldest
    /// events: a [`Store::read_stream`] from 0 then starts there. Check it before rebuilding
    /// state from the events alone.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`] for an invalid stream id,
    /// [`Error::Corruption`] if the first stored event fails its checksum, [`Error::Closed`].
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// assert_eq!(store.stream_info("s")?, None);
    /// store.append("s", ExpectedVersion::Any, [NewEvent::new("A", ""), NewEvent::new("B", "")])?;
    /// let info = store.stream_info("s")?.expect("two events");
    /// assert_eq!((info.first_version, info.last_version), (0, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream_info(&self, stream: &str) -> Result<Option<StreamInfo>> {
        self.ensure_open()?;
        if self.stream_version(stream)?.is_none() {
            return Ok(None);
        }
        // First the first stored version, then the last: versions only grow and the last
        // event is never discarded, so the pair read this way always has first <= last.
        let first =
            StreamIter::new(Arc::clone(self.shared()), stream, 0, None, Direction::Forward)?.next().transpose()?;
        let last = self.stream_version(stream)?;
        match (first, last) {
            (Some(first), Some(last_version)) => {
                Ok(Some(StreamInfo { first_version: first.version, last_version: last_version.max(first.version) }))
            }
            _ => Ok(None),
        }
    }

    /// Every stream id with at least one event and no tombstone, sorted.
    ///
    /// # Errors
    /// [`Error::Closed`] once [`Store::close`] has begun on any clone.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("b", ExpectedVersion::Any, [NewEvent::new("T", "")])?;
    /// store.append("a", ExpectedVersion::Any, [NewEvent::new("T", "")])?;
    /// assert_eq!(store.streams()?, ["a", "b"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn streams(&self) -> Result<Vec<String>> {
        self.follow()?;
        let mut names: Vec<String> = self
            .shared()
            .streams()
            .iter()
            .filter(|(_, state)| !state.deleted && state.last_version.is_some())
            .map(|(name, _)| name.to_string())
            .collect();
        names.sort_unstable();
        Ok(names)
    }
}
