//! The [`Repository`]: load an aggregate (snapshot + later events), run a command, append
//! its events with the expected version it loaded at, retry on conflict, snapshot by policy.

use std::fmt;
use std::marker::PhantomData;
use std::ops::ControlFlow;

use super::aggregate::{Aggregate, SnapshotPolicy};
use super::codec;
use super::schema::{DecodeError, EncodeError, Schema};
use crate::backend::EventStore;
use crate::error::Error;
use crate::event::{AppendResult, ExpectedVersion};
use crate::store::Store;

/// How many times [`Repository::execute`] reloads and re-handles after a concurrent write,
/// by default.
///
/// ```
/// assert_eq!(chronicle::typed::EXECUTE_RETRIES_DEFAULT, 8);
/// ```
pub const EXECUTE_RETRIES_DEFAULT: u32 = 8;

/// Where a loaded state came from.
///
/// ```
/// use chronicle::typed::LoadSource;
/// let source = LoadSource::Snapshot { version: 99, events_after: 3 };
/// assert!(matches!(source, LoadSource::Snapshot { version: 99, .. }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// The stream has no event: the default state.
    New,
    /// Every event replayed from the first.
    Replay {
        /// Events applied.
        events: u64,
    },
    /// A snapshot, then the events after it.
    Snapshot {
        /// The snapshot's version (the last event it covers).
        version: u64,
        /// Events applied after it.
        events_after: u64,
    },
}

/// An aggregate's state and the version it was loaded at.
///
/// ```
/// use chronicle::typed::{LoadSource, Loaded};
/// let fresh = Loaded { state: 0u32, version: None, source: LoadSource::New, snapshot_version: None };
/// assert_eq!(fresh.version, None);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// The stream's version the state reflects; `None` for a new aggregate.
    pub version: Option<u64>,
    /// Where the state came from.
    pub source: LoadSource,
    /// Version of the newest usable snapshot (the one loaded, or one saved since).
    pub snapshot_version: Option<u64>,
}

/// The outcome of [`Repository::execute`].
///
/// See [`Repository::execute`] for an example.
#[derive(Debug)]
pub struct Executed<A: Aggregate> {
    /// The state after the command's events.
    pub state: A,
    /// The stream's version afterwards (`None`: a new aggregate whose command produced
    /// nothing).
    pub version: Option<u64>,
    /// The events the command produced and that were appended (possibly none).
    pub events: Vec<A::Event>,
    /// Where they were written; `None` if there were none.
    pub appended: Option<AppendResult>,
    /// How many times the command was handled (1 without conflicts).
    pub attempts: u32,
}

/// What can go wrong in the repository. `E` is the aggregate's domain error.
///
/// ```
/// use chronicle::typed::RepositoryError;
/// let error: RepositoryError<std::io::Error> = RepositoryError::Conflict { stream: "order-1".into(), attempts: 9 };
/// assert_eq!(error.to_string(), "stream \"order-1\" changed under each of 9 attempts");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError<E: std::error::Error + 'static> {
    /// The aggregate refused the command; nothing was written.
    #[error("command refused: {0}")]
    Domain(#[source] E),
    /// The store failed (including [`Error::WrongExpectedVersion`] from [`Repository::save`]).
    #[error(transparent)]
    Store(#[from] Error),
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A new event could not be encoded; nothing was written.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Other writers kept changing the stream: every attempt of `execute` conflicted.
    #[error("stream {stream:?} changed under each of {attempts} attempts")]
    Conflict {
        /// The aggregate's stream.
        stream: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The stream does not hold the events the state needs (retention discarded them
    /// without a usable snapshot).
    #[error("stream {stream:?} is missing events: expected version {expected}, found {found}")]
    MissingEvents {
        /// The aggregate's stream.
        stream: String,
        /// The version needed next.
        expected: u64,
        /// The version found instead.
        found: u64,
    },
}

/// Loads, changes and saves aggregates of type `A` on any [`EventStore`] backend.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use chronicle::typed::{Aggregate, Event};
/// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// # enum CounterEvent { Incremented { by: u32 } }
/// # impl Event for CounterEvent {
/// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Incremented", 1)];
/// #     fn event_type(&self) -> &'static str { "Incremented" }
/// # }
/// # #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
/// # struct Counter { value: u64 }
/// # #[derive(Debug, thiserror::Error)] #[error("zero")] struct Zero;
/// # impl Aggregate for Counter {
/// #     type Event = CounterEvent; type Command = u32; type Error = Zero;
/// #     const AGGREGATE_TYPE: &'static str = "counter";
/// #     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += u64::from(*by); }
/// #     fn handle(&self, by: u32) -> Result<Vec<CounterEvent>, Zero> {
/// #         if by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by }]) }
/// #     }
/// # }
/// use chronicle::typed::{LoadSource, Repository, SnapshotPolicy};
/// let store = chronicle::Store::open_in_memory()?;
/// let counters = Repository::<Counter>::new(store).snapshot_policy(SnapshotPolicy::EveryEvents(2));
/// counters.execute("c1", 2)?;
/// counters.execute("c1", 3)?;
/// let loaded = counters.load("c1")?;
/// assert_eq!(loaded.state.value, 5);
/// assert_eq!(loaded.source, LoadSource::Snapshot { version: 1, events_after: 0 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Repository<A: Aggregate, S: EventStore = Store> {
    store: S,
    schema: Schema<A::Event>,
    policy: SnapshotPolicy,
    retries_max: u32,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, S: EventStore + Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            schema: self.schema.clone(),
            policy: self.policy,
            retries_max: self.retries_max,
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate, S: EventStore + fmt::Debug> fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &A::AGGREGATE_TYPE)
            .field("store", &self.store)
            .field("schema", &self.schema)
            .field("policy", &self.policy)
            .field("retries_max", &self.retries_max)
            .finish()
    }
}

type RepoResult<T, A> = Result<T, RepositoryError<<A as Aggregate>::Error>>;

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository on `store` with the default [`Schema`], [`SnapshotPolicy::default`] and
    /// [`EXECUTE_RETRIES_DEFAULT`] retries.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use chronicle::typed::{Aggregate, Event};
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # impl Event for CounterEvent {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Incremented", 1)];
    /// #     fn event_type(&self) -> &'static str { "Incremented" }
    /// # }
    /// # #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    /// # struct Counter { value: u64 }
    /// # #[derive(Debug, thiserror::Error)] #[error("zero")] struct Zero;
    /// # impl Aggregate for Counter {
    /// #     type Event = CounterEvent; type Command = u32; type Error = Zero;
    /// #     const AGGREGATE_TYPE: &'static str = "counter";
    /// #     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += u64::from(*by); }
    /// #     fn handle(&self, by: u32) -> Result<Vec<CounterEvent>, Zero> {
    /// #         if by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by }]) }
    /// #     }
    /// # }
    /// use chronicle::typed::Repository;
    /// let counters = Repository::<Counter>::new(chronicle::Store::open_in_memory()?);
    /// assert_eq!(counters.load("c")?.version, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(store: S) -> Self {
        Repository {
            store,
            schema: Schema::new(),
            policy: SnapshotPolicy::default(),
            retries_max: EXECUTE_RETRIES_DEFAULT,
            aggregate: PhantomData,
        }
    }

    /// Uses `schema` (codec, upcasters, unknown types) for the aggregate's events; its codec
    /// also encodes snapshots.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use chronicle::typed::{Aggregate, Event};
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # impl Event for CounterEvent {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Incremented", 1)];
    /// #     fn event_type(&self) -> &'static str { "Incremented" }
    /// # }
    /// # #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    /// # struct Counter { value: u64 }
    /// # #[derive(Debug, thiserror::Error)] #[error("zero")] struct Zero;
    /// # impl Aggregate for Counter {
    /// #     type Event = CounterEvent; type Command = u32; type Error = Zero;
    /// #     const AGGREGATE_TYPE: &'static str = "counter";
    /// #     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += u64::from(*by); }
    /// #     fn handle(&self, by: u32) -> Result<Vec<CounterEvent>, Zero> {
    /// #         if by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by }]) }
    /// #     }
    /// # }
    /// use chronicle::typed::{Codec, Repository, Schema};
    /// let counters = Repository::<Counter>::new(chronicle::Store::open_in_memory()?).schema(Schema::new().codec(Codec::Json));
    /// counters.execute("c", 1)?;
    /// let stored = counters.store().read_stream("counter-c", 0)?.next().expect("event")?;
    /// assert_eq!(&stored.data[6..], br#"{"by":1}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schema(mut self, schema: Schema<A::Event>) -> Self {
        self.schema = schema;
        self
    }

    /// Uses `policy` to decide when to snapshot.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use chronicle::typed::{Aggregate, Event};
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # impl Event for CounterEvent {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Incremented", 1)];
    /// #     fn event_type(&self) -> &'static str { "Incremented" }
    /// # }
    /// # #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    /// # struct Counter { value: u64 }
    /// # #[derive(Debug, thiserror::Error)] #[error("zero")] struct Zero;
    /// # impl Aggregate for Counter {
    /// #     type Event = CounterEvent; type Command = u32; type Error = Zero;
    /// #     const AGGREGATE_TYPE: &'static str = "counter";
    /// #     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += u64::from(*by); }
    /// #     fn handle(&self, by: u32) -> Result<Vec<CounterEvent>, Zero> {
    /// #         if by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by }]) }
    /// #     }
    /// # }
    /// use chronicle::typed::{LoadSource, Repository, SnapshotPolicy};
    /// let counters = Repository::<Counter>::new(chronicle::Store::open_in_memory()?).snapshot_policy(SnapshotPolicy::Never);
    /// counters.execute("c", 1)?;
    /// assert_eq!(counters.load("c")?.source, LoadSource::Replay { events: 1 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot_policy(mut self, policy: SnapshotPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// [`Repository::execute`] retries at most `retries_max` times after a conflict.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use chronicle::typed::{Aggregate, Event};
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # impl Event for CounterEvent {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Incremented", 1)];
    /// #     fn event_type(&self) -> &'static str { "Incremented" }
    /// # }
    /// # #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    /// # struct Counter { value: u64 }
    /// # #[derive(Debug, thiserror::Error)] #[error("zero")] struct Zero;
    /// # impl Aggregate for Counter {
    /// #     type Event = CounterEvent; type Command = u32; type Error = Zero;
    /// #     const AGGREGATE_TYPE: &'static str = "counter";
    /// #     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += u64::from(*by); }
    /// #     fn handle(&self, by: u32) -> Result<Vec<CounterEvent>, Zero> {
    /// #         if by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by }]) }
    /// #     }
    /// # }
    /// use chronicle::typed::Repository;
    /// let counters = Repository::<Counter>::new(chronicle::Store::open_in_memory()?).retries_max(0);
    /// assert_eq!(counters.execute("c", 1)?.attempts, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retries_max(mut self, retries_max: u32) -> Self {
        self.retries_max = retries_max;
        self
    }

    /// The underlying store.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use chronicle::typed::{Aggregate, Event};
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # impl Event for CounterEvent {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Incremented", 1)];
    /// #     fn event_type(&self) -> &'static str { "Incremented" }
    /// # }
    /// # #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    /// # struct Counter { value: u64 }
    /// # #[derive(Debug, thiserror::Error)] #[error("zero")] struct Zero;
    /// # impl Aggregate for Counter {
    /// #     type Event = CounterEvent; type Command = u32; type Error = Zero;
    /// #     const AGGREGATE_TYPE: &'static str = "counter";
    /// #     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += u64::from(*by); }
    /// #     fn handle(&self, by: u32) -> Result<Vec<CounterEvent>, Zero> {
    /// #         if by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by }]) }
    /// #     }
    /// # }
    /// use chronicle::typed::Repository;
    /// let counters = Repository::<Counter>::new(chronicle::Store::open_in_memory()?);
    /// counters.execute("c", 1)?;
    /// assert_eq!(counters.store().stream_version("counter-c")?, Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The schema used for events.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use chronicle::typed::{Aggregate, Event};
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # impl Event for CounterEvent {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Incremented", 1)];
    /// #     fn event_type(&self) -> &'static str { "Incremented" }
    /// # }
    /// # #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    /// # struct Counter { value: u64 }
    /// # #[derive(Debug, thiserror::Error)] #[error("zero")] struct Zero;
    /// # impl Aggregate for Counter {
    /// #     type Event = CounterEvent; type Command = u32; type Error = Zero;
    /// #     const AGGREGATE_TYPE: &'static str = "counter";
    /// #     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += u64::from(*by); }
    /// #     fn handle(&self, by: u32) -> Result<Vec<CounterEvent>, Zero> {
    /// #         if by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by }]) }
    /// #     }
    /// # }
    /// use chronicle::typed::{Codec, Repository};
    /// let counters = Repository::<Counter>::new(chronicle::Store::open_in_memory()?);
    /// assert_eq!(counters.event_schema().codec_used(), Codec::Postcard);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn event_schema(&self) -> &Schema<A::Event> {
        &self.schema
    }

    /// The stream holding aggregate `id`: `"{AGGREGATE_TYPE}-{id}"`.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use chronicle::typed::{Aggregate, Event};
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # impl Event for CounterEvent {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Incremented", 1)];
    /// #     fn event_type(&self) -> &'static str { "Incremented" }
    /// # }
    /// # #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    /// # struct Counter { value: u64 }
    /// # #[derive(Debug, thiserror::Error)] #[error("zero")] struct Zero;
    /// # impl Aggregate for Counter {
    /// #     type Event = CounterEvent; type Command = u32; type Error = Zero;
    /// #     const AGGREGATE_TYPE: &'static str = "counter";
    /// #     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += u64::from(*by); }
    /// #     fn handle(&self, by: u32) -> Result<Vec<CounterEvent>, Zero> {
    /// #         if by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by }]) }
    /// #     }
    /// # }
    /// assert_eq!(chronicle::typed::Repository::<Counter>::stream_id("7"), "counter-7");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream_id(id: &str) -> String {
        format!("{}-{id}", A::AGGREGATE_TYPE)
    }

    /// Loads aggregate `id`: the newest usable snapshot plus the events after it, or every
    /// event. A snapshot of another [`Aggregate::STATE_VERSION`], or one that does not
    /// decode, is ignored (logged) and the state replayed from the first event.
    ///
    /// # Errors
    /// [`RepositoryError::Store`] (e.g. [`Error::StreamDeleted`]),
    /// [`RepositoryError::Decode`] for an event that does not decode,
    /// [`RepositoryError::MissingEvents`] if the events the state needs were discarded.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use chronicle::typed::{Aggregate, Event};
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # impl Event for CounterEvent {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Incremented", 1)];
    /// #     fn event_type(&self) -> &'static str { "Incremented" }
    /// # }
    /// # #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    /// # struct Counter { value: u64 }
    /// # #[derive(Debug, thiserror::Error)] #[error("zero")] struct Zero;
    /// # impl Aggregate for Counter {
    /// #     type Event = CounterEvent; type Command = u32; type Error = Zero;
    /// #     const AGGREGATE_TYPE: &'static str = "counter";
    /// #     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += u64::from(*by); }
    /// #     fn handle(&self, by: u32) -> Result<Vec<CounterEvent>, Zero> {
    /// #         if by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by }]) }
    /// #     }
    /// # }
    /// use chronicle::typed::{LoadSource, Repository};
    /// let counters = Repository::<Counter>::new(chronicle::Store::open_in_memory()?);
    /// counters.execute("c", 4)?;
    /// let loaded = counters.load("c")?;
    /// assert_eq!((loaded.state.value, loaded.version, loaded.source), (4, Some(0), LoadSource::Replay { events: 1 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(&self, id: &str) -> RepoResult<Loaded<A>, A> {
        let stream = Self::stream_id(id);
        let snapshot =
            self.store.load_snapshot(&stream)?.and_then(|snapshot| match decode_state::<A>(&snapshot.data) {
                Ok(state) => Some((snapshot.version, state)),
                Err(reason) => {
                    tracing::warn!(stream, version = snapshot.version, reason, "ignoring snapshot; replaying events");
                    None
                }
            });
        let (mut state, mut version, from, snapshot_version) = match snapshot {
            Some((at, state)) => (state, Some(at), at.saturating_add(1), Some(at)),
            None => (A::default(), None, 0, None),
        };
        let mut applied = 0u64;
        // Borrowed views: no owned event is built per record (the store's zero-copy stream
        // read where it has one). A failure ends the read and is returned after it.
        let mut failure = None;
        self.store.read_stream_with(&stream, from, &mut |event| {
            let expected = version.map_or(0, |v| v.saturating_add(1));
            if event.version != expected {
                failure =
                    Some(RepositoryError::MissingEvents { stream: stream.clone(), expected, found: event.version });
                return ControlFlow::Break(());
            }
            match self.schema.decode_view(event) {
                Ok(Some(decoded)) => state.apply(&decoded),
                Ok(None) => {}
                Err(error) => {
                    failure = Some(error.into());
                    return ControlFlow::Break(());
                }
            }
            version = Some(event.version);
            applied += 1;
            ControlFlow::Continue(())
        })?;
        if let Some(failure) = failure {
            return Err(failure);
        }
        let source = match (snapshot_version, version) {
            (Some(at), _) => LoadSource::Snapshot { version: at, events_after: applied },
            (None, None) => LoadSource::New,
            (None, Some(_)) => LoadSource::Replay { events: applied },
        };
        Ok(Loaded { state, version, source, snapshot_version })
    }

    /// Appends `events` to aggregate `id` expecting the version `loaded` was loaded at,
    /// then applies them to `loaded` and snapshots if the policy says so (a failed snapshot
    /// is logged, not returned: the events are committed). Returns where they were written
    /// (`None` for no events).
    ///
    /// # Errors
    /// [`RepositoryError::Store`] with [`Error::WrongExpectedVersion`] if the stream moved
    /// since `loaded` (nothing written; reload and decide again), other store errors,
    /// [`RepositoryError::Encode`].
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use chronicle::typed::{Aggregate, Event};
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # impl Event for CounterEvent {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Incremented", 1)];
    /// #     fn event_type(&self) -> &'static str { "Incremented" }
    /// # }
    /// # #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    /// # struct Counter { value: u64 }
    /// # #[derive(Debug, thiserror::Error)] #[error("zero")] struct Zero;
    /// # impl Aggregate for Counter {
    /// #     type Event = CounterEvent; type Command = u32; type Error = Zero;
    /// #     const AGGREGATE_TYPE: &'static str = "counter";
    /// #     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += u64::from(*by); }
    /// #     fn handle(&self, by: u32) -> Result<Vec<CounterEvent>, Zero> {
    /// #         if by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by }]) }
    /// #     }
    /// # }
    /// use chronicle::typed::{Repository, RepositoryError};
    /// let counters = Repository::<Counter>::new(chronicle::Store::open_in_memory()?);
    /// let mut stale = counters.load("c")?;
    /// let mut fresh = counters.load("c")?;
    /// counters.save("c", &mut fresh, &[CounterEvent::Incremented { by: 2 }])?;
    /// assert_eq!(fresh.state.value, 2);
    /// let conflict = counters.save("c", &mut stale, &[CounterEvent::Incremented { by: 9 }]);
    /// assert!(matches!(conflict, Err(RepositoryError::Store(chronicle::Error::WrongExpectedVersion { .. }))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save(&self, id: &str, loaded: &mut Loaded<A>, events: &[A::Event]) -> RepoResult<Option<AppendResult>, A> {
        if events.is_empty() {
            return Ok(None);
        }
        let stream = Self::stream_id(id);
        let new_events = events.iter().map(|e| self.schema.encode(e)).collect::<Result<Vec<_>, _>>()?;
        let expected = loaded.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let appended = self.store.append(&stream, expected, new_events)?;
        for event in events {
            loaded.state.apply(event);
        }
        loaded.version = Some(appended.last_version);
        if self.policy.is_due(loaded.snapshot_version, appended.last_version) {
            match self.save_snapshot_of(&stream, &loaded.state, appended.last_version) {
                Ok(()) => loaded.snapshot_version = Some(appended.last_version),
                Err(error) => tracing::warn!(stream, %error, "snapshot not saved"),
            }
        }
        Ok(Some(appended))
    }

    fn save_snapshot_of(&self, stream: &str, state: &A, version: u64) -> Result<(), String> {
        let codec = self.schema.codec_used();
        let mut data = Vec::new();
        codec::write_header(codec, A::STATE_VERSION, &mut data);
        codec.encode(state, &mut data)?;
        self.store.save_snapshot(stream, version, &data).map_err(|e| e.to_string())
    }

    /// Loads aggregate `id`, handles `command`, saves its events; on a concurrent write
    /// ([`Error::WrongExpectedVersion`]) reloads and handles the command again, at most
    /// [`Repository::retries_max`] more times.
    ///
    /// # Errors
    /// [`RepositoryError::Domain`] if the aggregate refuses (nothing written),
    /// [`RepositoryError::Conflict`] when every attempt conflicted, and the errors of
    /// [`Repository::load`] and [`Repository::save`].
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use chronicle::typed::{Aggregate, Event};
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # impl Event for CounterEvent {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Incremented", 1)];
    /// #     fn event_type(&self) -> &'static str { "Incremented" }
    /// # }
    /// # #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    /// # struct Counter { value: u64 }
    /// # #[derive(Debug, thiserror::Error)] #[error("zero")] struct Zero;
    /// # impl Aggregate for Counter {
    /// #     type Event = CounterEvent; type Command = u32; type Error = Zero;
    /// #     const AGGREGATE_TYPE: &'static str = "counter";
    /// #     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += u64::from(*by); }
    /// #     fn handle(&self, by: u32) -> Result<Vec<CounterEvent>, Zero> {
    /// #         if by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by }]) }
    /// #     }
    /// # }
    /// use chronicle::typed::{Repository, RepositoryError};
    /// let counters = Repository::<Counter>::new(chronicle::Store::open_in_memory()?);
    /// let done = counters.execute("c", 3)?;
    /// assert_eq!((done.state.value, done.version, done.attempts), (3, Some(0), 1));
    /// assert!(matches!(counters.execute("c", 0), Err(RepositoryError::Domain(Zero))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute(&self, id: &str, command: A::Command) -> RepoResult<Executed<A>, A>
    where
        A::Command: Clone,
    {
        let attempts_max = self.retries_max.saturating_add(1);
        for attempt in 1..=attempts_max {
            let mut loaded = self.load(id)?;
            let events = loaded.state.handle(command.clone()).map_err(RepositoryError::Domain)?;
            match self.save(id, &mut loaded, &events) {
                Ok(appended) => {
                    return Ok(Executed {
                        state: loaded.state,
                        version: loaded.version,
                        events,
                        appended,
                        attempts: attempt,
                    });
                }
                Err(RepositoryError::Store(Error::WrongExpectedVersion { .. })) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(RepositoryError::Conflict { stream: Self::stream_id(id), attempts: attempts_max })
    }
}

/// Decodes a snapshot written by [`Repository::save`]; `Err` says why it is unusable.
fn decode_state<A: Aggregate>(data: &[u8]) -> Result<A, String> {
    let (codec, version, payload) = codec::read_header(data)?;
    if version != A::STATE_VERSION {
        return Err(format!("state schema version {version}, current {}", A::STATE_VERSION));
    }
    codec.decode(payload)
}
