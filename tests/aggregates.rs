//! Aggregates and the repository: snapshot + events == full replay == the state held in
//! memory (property test), optimistic-concurrency retries between racing writers, old-schema
//! and damaged snapshots ignored, missing events reported.
#![cfg(feature = "typed")]

use chronicle::typed::{Aggregate, Codec, Event, LoadSource, Repository, RepositoryError, Schema, SnapshotPolicy};
use chronicle::{Error, Retention, Store};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum TabEvent {
    Opened { owner: String },
    Charged { item: String, cents: u64 },
    Refunded { cents: u64 },
    Closed,
}

impl Event for TabEvent {
    const EVENT_TYPES: &'static [(&'static str, u32)] =
        &[("Opened", 1), ("Charged", 1), ("Refunded", 1), ("Closed", 1)];
    fn event_type(&self) -> &'static str {
        match self {
            TabEvent::Opened { .. } => "Opened",
            TabEvent::Charged { .. } => "Charged",
            TabEvent::Refunded { .. } => "Refunded",
            TabEvent::Closed => "Closed",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Tab {
    owner: Option<String>,
    items: Vec<(String, u64)>,
    balance_cents: u64,
    closed: bool,
}

#[derive(Debug, Clone)]
enum TabCommand {
    Open(String),
    Charge(String, u64),
    Refund(u64),
    Close,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum TabError {
    #[error("tab is not open")]
    NotOpen,
    #[error("tab already opened")]
    AlreadyOpen,
    #[error("refund above balance")]
    RefundTooLarge,
}

impl Aggregate for Tab {
    type Event = TabEvent;
    type Command = TabCommand;
    type Error = TabError;
    const AGGREGATE_TYPE: &'static str = "tab";

    fn apply(&mut self, event: &TabEvent) {
        match event {
            TabEvent::Opened { owner } => self.owner = Some(owner.clone()),
            TabEvent::Charged { item, cents } => {
                self.items.push((item.clone(), *cents));
                self.balance_cents += cents;
            }
            TabEvent::Refunded { cents } => self.balance_cents -= cents,
            TabEvent::Closed => self.closed = true,
        }
    }

    fn handle(&self, command: TabCommand) -> Result<Vec<TabEvent>, TabError> {
        let open = self.owner.is_some() && !self.closed;
        match command {
            TabCommand::Open(_) if self.owner.is_some() => Err(TabError::AlreadyOpen),
            TabCommand::Open(owner) => Ok(vec![TabEvent::Opened { owner }]),
            _ if !open => Err(TabError::NotOpen),
            TabCommand::Charge(item, cents) => Ok(vec![TabEvent::Charged { item: item.clone(), cents }]),
            TabCommand::Refund(cents) if cents > self.balance_cents => Err(TabError::RefundTooLarge),
            TabCommand::Refund(cents) => Ok(vec![TabEvent::Refunded { cents }]),
            TabCommand::Close => Ok(vec![TabEvent::Closed]),
        }
    }
}

/// The state rebuilt from the first event, ignoring snapshots.
fn replay(store: &Store, id: &str) -> Tab {
    let schema = Schema::<TabEvent>::new();
    let mut state = Tab::default();
    for event in store.read_stream(&Repository::<Tab>::stream_id(id), 0).unwrap() {
        state.apply(&schema.decode(&event.unwrap()).unwrap().unwrap());
    }
    state
}

fn command() -> impl Strategy<Value = TabCommand> {
    prop_oneof![
        1 => "[a-z]{1,8}".prop_map(TabCommand::Open),
        8 => ("[a-z]{1,6}", 0u64..5_000).prop_map(|(item, cents)| TabCommand::Charge(item, cents)),
        3 => (0u64..3_000).prop_map(TabCommand::Refund),
        1 => Just(TabCommand::Close),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_load_equals_full_replay_equals_memory(
        commands in prop::collection::vec(command(), 1..250),
        every in 1u64..40,
        json in any::<bool>(),
    ) {
        let store = Store::open_in_memory().unwrap();
        let codec = if json { Codec::Json } else { Codec::Postcard };
        let tabs = Repository::<Tab>::new(store.clone())
            .schema(Schema::new().codec(codec))
            .snapshot_policy(SnapshotPolicy::EveryEvents(every));
        // Commands run in memory too: the model of what the state must be.
        let mut memory = Tab::default();
        let mut events = 0u64;
        // Open first, so most commands are accepted.
        for command in std::iter::once(TabCommand::Open("o".into())).chain(commands) {
            let expected = memory.handle(command.clone());
            match tabs.execute("t", command) {
                Ok(done) => {
                    let produced = expected.unwrap();
                    prop_assert_eq!(&done.events, &produced);
                    for event in &produced {
                        memory.apply(event);
                    }
                    events += produced.len() as u64;
                    prop_assert_eq!(&done.state, &memory);
                }
                Err(RepositoryError::Domain(error)) => prop_assert_eq!(Err(error), expected.map(|_| ())),
                Err(other) => prop_assert!(false, "unexpected {other}"),
            }
        }
        let loaded = tabs.load("t").unwrap();
        prop_assert_eq!(&loaded.state, &memory);
        prop_assert_eq!(&replay(&store, "t"), &memory);
        prop_assert_eq!(loaded.version, Some(events - 1));
        if events >= every {
            let from_snapshot = matches!(loaded.source, LoadSource::Snapshot { .. });
            prop_assert!(from_snapshot, "{:?} after {} events, every {}", loaded.source, events, every);
        }
        let unsnapshotted = Repository::<Tab>::new(store.clone()).snapshot_policy(SnapshotPolicy::Never);
        prop_assert_eq!(unsnapshotted.load("t").unwrap().state, memory);
    }
}

#[test]
fn racing_writers_retry_until_every_command_lands() {
    let store = Store::open_in_memory().unwrap();
    let tabs = Repository::<Tab>::new(store.clone()).retries_max(1_000);
    tabs.execute("shared", TabCommand::Open("both".into())).unwrap();
    let per_writer = 150u64;
    let attempts: u32 = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..2)
            .map(|writer| {
                let tabs = tabs.clone();
                scope.spawn(move || {
                    (0..per_writer)
                        .map(|i| {
                            tabs.execute("shared", TabCommand::Charge(format!("w{writer}-{i}"), 1)).unwrap().attempts
                        })
                        .sum::<u32>()
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let loaded = tabs.load("shared").unwrap();
    assert_eq!(loaded.state.balance_cents, 2 * per_writer, "no command lost or applied twice");
    assert_eq!(loaded.version, Some(2 * per_writer));
    assert!(attempts >= 2 * per_writer as u32);
    assert_eq!(replay(&store, "shared"), loaded.state);
}

#[test]
fn a_stale_save_conflicts_and_writes_nothing() {
    let store = Store::open_in_memory().unwrap();
    let tabs = Repository::<Tab>::new(store.clone());
    tabs.execute("x", TabCommand::Open("a".into())).unwrap();
    let mut stale = tabs.load("x").unwrap();
    tabs.execute("x", TabCommand::Charge("tea".into(), 300)).unwrap();
    let error = tabs.save("x", &mut stale, &[TabEvent::Closed]).unwrap_err();
    assert!(matches!(error, RepositoryError::Store(Error::WrongExpectedVersion { .. })), "{error}");
    assert!(!tabs.load("x").unwrap().state.closed, "a conflicting save writes nothing");
    let refused = tabs.execute("x", TabCommand::Refund(301)).unwrap_err();
    assert!(matches!(refused, RepositoryError::Domain(TabError::RefundTooLarge)));
    assert_eq!(store.stream_version("tab-x").unwrap(), Some(1));
}

/// `Tab` with a new state schema: snapshots of version 1 must be ignored.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct TabV2(Tab);

impl Aggregate for TabV2 {
    type Event = TabEvent;
    type Command = TabCommand;
    type Error = TabError;
    const AGGREGATE_TYPE: &'static str = "tab";
    const STATE_VERSION: u32 = 2;
    fn apply(&mut self, event: &TabEvent) {
        self.0.apply(event);
    }
    fn handle(&self, command: TabCommand) -> Result<Vec<TabEvent>, TabError> {
        self.0.handle(command)
    }
}

#[test]
fn old_schema_and_damaged_snapshots_fall_back_to_a_full_replay() {
    let store = Store::open_in_memory().unwrap();
    let tabs = Repository::<Tab>::new(store.clone()).snapshot_policy(SnapshotPolicy::EveryEvents(5));
    tabs.execute("s", TabCommand::Open("a".into())).unwrap();
    for i in 0..9 {
        tabs.execute("s", TabCommand::Charge(format!("i{i}"), 10)).unwrap();
    }
    assert_eq!(tabs.load("s").unwrap().source, LoadSource::Snapshot { version: 9, events_after: 0 });

    let v2 = Repository::<TabV2>::new(store.clone()).snapshot_policy(SnapshotPolicy::EveryEvents(5));
    let loaded = v2.load("s").unwrap();
    assert_eq!(loaded.source, LoadSource::Replay { events: 10 });
    assert_eq!(loaded.state.0, tabs.load("s").unwrap().state);
    // The next command snapshots in the new schema at once: none usable was found.
    v2.execute("s", TabCommand::Charge("new".into(), 1)).unwrap();
    assert_eq!(v2.load("s").unwrap().source, LoadSource::Snapshot { version: 10, events_after: 0 });

    store.save_snapshot("tab-s", 10, b"\xCE\x01\x02\x00\x00\x00garbage").unwrap();
    let damaged = v2.load("s").unwrap();
    assert_eq!(damaged.source, LoadSource::Replay { events: 11 });
    assert_eq!(damaged.state.0.balance_cents, 91);
}

#[test]
fn events_discarded_without_a_snapshot_are_reported_not_replayed_wrongly() {
    let store = Store::open_in_memory().unwrap();
    let tabs = Repository::<Tab>::new(store.clone()).snapshot_policy(SnapshotPolicy::Never);
    tabs.execute("r", TabCommand::Open("a".into())).unwrap();
    for _ in 0..4 {
        tabs.execute("r", TabCommand::Charge("x".into(), 1)).unwrap();
    }
    store.set_stream_retention("tab-r", Retention::MaxCount(2)).unwrap();
    store.compact().unwrap();
    let error = tabs.load("r").unwrap_err();
    assert!(matches!(error, RepositoryError::MissingEvents { expected: 0, found: 3, .. }), "{error}");
}

#[test]
fn an_event_that_does_not_decode_is_reported_with_where_it_is_and_stops_the_load() {
    let store = Store::open_in_memory().unwrap();
    let tabs = Repository::<Tab>::new(store.clone()).snapshot_policy(SnapshotPolicy::Never);
    tabs.execute("d", TabCommand::Open("a".into())).unwrap();
    // A stored "Charged" whose payload is no encoded event at all, then a valid one after it.
    store
        .append("tab-d", chronicle::ExpectedVersion::Exact(0), [chronicle::NewEvent::new("Charged", "not an event")])
        .unwrap();
    tabs.execute("d", TabCommand::Charge("x".into(), 1)).unwrap_err();
    let error = tabs.load("d").unwrap_err();
    match error {
        RepositoryError::Decode(decode) => {
            assert_eq!(
                (decode.stream.as_str(), decode.version, decode.position, decode.event_type.as_str()),
                ("tab-d", 1, 1, "Charged")
            );
        }
        other => panic!("expected a decode error, got {other}"),
    }
}

#[test]
fn aggregates_survive_a_reopen_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let tabs =
            Repository::<Tab>::new(Store::open(dir.path()).unwrap()).snapshot_policy(SnapshotPolicy::EveryEvents(3));
        tabs.execute("d", TabCommand::Open("disk".into())).unwrap();
        for _ in 0..4 {
            tabs.execute("d", TabCommand::Charge("x".into(), 2)).unwrap();
        }
    }
    let tabs = Repository::<Tab>::new(Store::open(dir.path()).unwrap());
    let loaded = tabs.load("d").unwrap();
    assert_eq!(loaded.state.balance_cents, 8);
    assert_eq!(loaded.source, LoadSource::Snapshot { version: 2, events_after: 2 });
}
