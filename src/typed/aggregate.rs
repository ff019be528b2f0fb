//! The [`Aggregate`] trait and the [`SnapshotPolicy`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::schema::Event;

/// A consistency boundary whose state is rebuilt from its events: one stream per
/// aggregate instance, named `"{AGGREGATE_TYPE}-{id}"`.
///
/// `handle` decides (it has no side effects and may run more than once, when the
/// repository retries after a concurrent write); `apply` records what was decided (it
/// cannot fail: an event is a fact). The state is serde-serializable for snapshots.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use chronicle::typed::{Aggregate, Event};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum CounterEvent { Incremented { by: u32 } }
/// impl Event for CounterEvent {
///     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Incremented", 1)];
///     fn event_type(&self) -> &'static str { "Incremented" }
/// }
///
/// #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
/// struct Counter { value: u64 }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("increment by zero")]
/// struct Zero;
///
/// impl Aggregate for Counter {
///     type Event = CounterEvent;
///     type Command = u32;
///     type Error = Zero;
///     const AGGREGATE_TYPE: &'static str = "counter";
///     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) {
///         self.value += u64::from(*by);
///     }
///     fn handle(&self, by: u32) -> Result<Vec<CounterEvent>, Zero> {
///         if by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by }]) }
///     }
/// }
/// let mut counter = Counter::default();
/// for event in counter.handle(5)? { counter.apply(&event); }
/// assert_eq!(counter.value, 5);
/// # Ok::<(), Zero>(())
/// ```
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The aggregate's events.
    type Event: Event;
    /// What it is asked to do.
    type Command;
    /// Why a command is refused.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Stream prefix: instance `id` lives in stream `"{AGGREGATE_TYPE}-{id}"`.
    const AGGREGATE_TYPE: &'static str;

    /// Version of the state's serialized form. Bump it when the state's fields change:
    /// snapshots of another version are ignored (the state is replayed from the events).
    const STATE_VERSION: u32 = 1;

    /// Applies one event to the state.
    fn apply(&mut self, event: &Self::Event);

    /// Decides which events `command` produces, or refuses it. No side effects.
    ///
    /// # Errors
    /// The domain's reason to refuse the command.
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
}

/// When the repository saves a snapshot of an aggregate's state after appending to it.
///
/// ```
/// use chronicle::typed::SnapshotPolicy;
/// assert_eq!(SnapshotPolicy::default(), SnapshotPolicy::EveryEvents(100));
/// assert!(SnapshotPolicy::EveryEvents(100).is_due(None, 99));   // 100 events: versions 0..=99
/// assert!(!SnapshotPolicy::EveryEvents(100).is_due(Some(99), 150));
/// assert!(!SnapshotPolicy::Never.is_due(None, 1_000_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotPolicy {
    /// Never; loads replay the whole stream.
    Never,
    /// Once at least this many events were appended since the newest usable snapshot (or
    /// since the start). 0 is treated as 1.
    EveryEvents(u64),
}

impl Default for SnapshotPolicy {
    /// Every 100 events.
    fn default() -> Self {
        SnapshotPolicy::EveryEvents(100)
    }
}

impl SnapshotPolicy {
    /// Whether a snapshot is due at `version`, the newest usable one being at
    /// `snapshot_version`.
    ///
    /// ```
    /// assert!(chronicle::typed::SnapshotPolicy::EveryEvents(10).is_due(Some(5), 15));
    /// ```
    pub fn is_due(self, snapshot_version: Option<u64>, version: u64) -> bool {
        match self {
            SnapshotPolicy::Never => false,
            SnapshotPolicy::EveryEvents(every) => {
                let since = match snapshot_version {
                    Some(snapshot) => version.saturating_sub(snapshot),
                    None => version.saturating_add(1),
                };
                since >= every.max(1)
            }
        }
    }
}
