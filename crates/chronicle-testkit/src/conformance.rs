//! The behaviour suite every store must pass, whatever its storage: run it against
//! `Store::open(dir)` and `Store::open_in_memory()` (the root crate's
//! `tests/conformance.rs`) and against `chronicle_postgres::PostgresStore`
//! (`crates/chronicle-postgres/tests/conformance.rs`).
//!
//! The shared part ([`SHARED_CHECKS`], [`run_shared`]) uses only the
//! [`chronicle::EventStore`] trait and is generic over it: a check that only some backends
//! pass is a bug in one of them. Following the log ([`FOLLOW_CHECKS`], [`run_follow`]:
//! subscriptions and durable consumers) is shared the same way, through
//! [`chronicle::FollowStore`]. The rest ([`STORE_CHECKS`]: compaction, retention,
//! `close`, the zero-copy `read_all_with`, `streams`, `stream_info`) is administration of
//! the embedded engine and takes a [`Store`]. [`run_all`] runs both on a `Store`.
//!
//! Each check takes a function that makes a fresh, empty store and returns the first
//! deviation as an `Err` naming the check, so a failure reads
//! `idempotent_retries: retry returned ...`.
//!
//! ```
//! use chronicle::Store;
//! chronicle_testkit::conformance::run_all(&|| Store::open_in_memory().expect("open"))?;
//! chronicle_testkit::conformance::run_shared(&|| Store::open_in_memory().expect("open"))?;
//! chronicle_testkit::conformance::run_follow(&|| Store::open_in_memory().expect("open"))?;
//! # Ok::<(), String>(())
//! ```

mod follow;

use std::ops::ControlFlow;

use std::sync::Barrier;

use chronicle::{
    AppendCondition, Error, EventStore, ExpectedVersion, Filter, FollowStore, NewEvent, RecordedEvent, Retention,
    Store, StreamAppend,
};

/// Makes a fresh, empty store.
pub type MakeStore<'a> = &'a dyn Fn() -> Store;

/// Makes a fresh, empty store of any backend.
pub type Make<'a, S> = &'a dyn Fn() -> S;

/// A check's verdict: `Err` describes the first deviation.
pub type Check = Result<(), String>;

/// One shared check, for a backend `S`.
pub type SharedCheckFn<S> = fn(Make<'_, S>) -> Check;

/// One check of the Store-only part.
pub type CheckFn = fn(MakeStore<'_>) -> Check;

/// The names of the shared checks, in the order [`run_shared`] runs them.
pub const SHARED_CHECKS: &[&str] = &[
    "expected_versions",
    "idempotent_retries",
    "multi_stream_appends",
    "reads",
    "snapshots",
    "deletion",
    "hostile_input",
    "deletion_positions",
    "filtered_reads",
    "conditional_appends",
    "racing_conditional_appends",
    "conditions_hold_at_commit",
];

/// The names of the shared checks of following the log, in the order [`run_follow`]
/// runs them.
pub const FOLLOW_CHECKS: &[&str] = &[
    "catch_up_then_live",
    "filtered_positions",
    "beyond_the_end_and_timeouts",
    "stop_wakes_a_blocked_next",
    "subscription_past_a_deletion",
    "durable_consumer_resumes",
    "ack_bounds",
    "one_live_subscription_per_name",
    "delete_consumer_starts_over",
    "bad_names_and_filters",
    "partitioned_consumers",
];

/// The Store-only checks, with their names.
pub const STORE_CHECKS: &[(&str, CheckFn)] = &[
    ("store_listing_and_views", store_listing_and_views),
    ("retention_and_compaction", retention_and_compaction),
    ("compaction_erases_deleted_streams", compaction_erases_deleted_streams),
    ("close", close),
];

/// Runs every shared check ([`SHARED_CHECKS`]) on fresh stores from `make_store`: only
/// [`EventStore`] methods, so any backend can run it.
///
/// # Errors
/// The first failing check, as `"name: what went wrong"`.
///
/// ```
/// chronicle_testkit::conformance::run_shared(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn run_shared<S: EventStore>(make_store: Make<'_, S>) -> Check {
    let checks: [(&str, SharedCheckFn<S>); 12] = [
        ("expected_versions", expected_versions::<S>),
        ("idempotent_retries", idempotent_retries::<S>),
        ("multi_stream_appends", multi_stream_appends::<S>),
        ("reads", reads::<S>),
        ("snapshots", snapshots::<S>),
        ("deletion", deletion::<S>),
        ("hostile_input", hostile_input::<S>),
        ("deletion_positions", deletion_positions::<S>),
        ("filtered_reads", filtered_reads::<S>),
        ("conditional_appends", conditional_appends::<S>),
        ("racing_conditional_appends", racing_conditional_appends::<S>),
        ("conditions_hold_at_commit", conditions_hold_at_commit::<S>),
    ];
    debug_assert_eq!(checks.len(), SHARED_CHECKS.len());
    for (name, check) in checks {
        check(make_store).map_err(|reason| format!("{name}: {reason}"))?;
    }
    Ok(())
}

/// Runs every shared check of following the log ([`FOLLOW_CHECKS`]: subscriptions and
/// durable consumers) on fresh stores from `make_store`, through [`FollowStore`] only.
///
/// # Errors
/// The first failing check, as `"name: what went wrong"`.
///
/// ```
/// chronicle_testkit::conformance::run_follow(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn run_follow<S: FollowStore>(make_store: Make<'_, S>) -> Check {
    let checks: [(&str, SharedCheckFn<S>); 11] = [
        ("catch_up_then_live", follow::catch_up_then_live::<S>),
        ("filtered_positions", follow::filtered_positions::<S>),
        ("beyond_the_end_and_timeouts", follow::beyond_the_end_and_timeouts::<S>),
        ("stop_wakes_a_blocked_next", follow::stop_wakes_a_blocked_next::<S>),
        ("subscription_past_a_deletion", follow::subscription_past_a_deletion::<S>),
        ("durable_consumer_resumes", follow::durable_consumer_resumes::<S>),
        ("ack_bounds", follow::ack_bounds::<S>),
        ("one_live_subscription_per_name", follow::one_live_subscription_per_name::<S>),
        ("delete_consumer_starts_over", follow::delete_consumer_starts_over::<S>),
        ("bad_names_and_filters", follow::bad_names_and_filters::<S>),
        ("partitioned_consumers", follow::partitioned_consumers::<S>),
    ];
    debug_assert_eq!(checks.len(), FOLLOW_CHECKS.len());
    for (name, check) in checks {
        check(make_store).map_err(|reason| format!("{name}: {reason}"))?;
    }
    Ok(())
}

/// Runs the shared checks, those of following the log, and then every Store-only check
/// of [`STORE_CHECKS`].
///
/// # Errors
/// The first failing check, as `"name: what went wrong"`.
///
/// ```
/// chronicle_testkit::conformance::run_all(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn run_all(make_store: MakeStore<'_>) -> Check {
    run_shared(make_store)?;
    run_follow(make_store)?;
    for (name, check) in STORE_CHECKS {
        check(make_store).map_err(|reason| format!("{name}: {reason}"))?;
    }
    Ok(())
}

fn ensure(condition: bool, what: impl FnOnce() -> String) -> Check {
    if condition { Ok(()) } else { Err(what()) }
}

fn step<T>(result: Result<T, Error>, what: &str) -> Result<T, String> {
    result.map_err(|error| format!("{what}: {error}"))
}

fn event(kind: &str, data: &str) -> NewEvent {
    NewEvent::new(kind, data.to_owned())
}

fn stream_events<S: EventStore>(store: &S, stream: &str, from: u64) -> Result<Vec<RecordedEvent>, String> {
    step(step(store.read_stream(stream, from), "read_stream")?.collect::<Result<Vec<_>, _>>(), "read_stream item")
}

fn all_events<S: EventStore>(store: &S, from: u64) -> Result<Vec<RecordedEvent>, String> {
    step(step(store.read_all(from), "read_all")?.collect::<Result<Vec<_>, _>>(), "read_all item")
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

fn append<S: EventStore>(
    store: &S,
    stream: &str,
    expected: ExpectedVersion,
    events: impl IntoIterator<Item = NewEvent>,
) -> Result<chronicle::AppendResult, Error> {
    store.append(stream, expected, events.into_iter().collect())
}

/// `NoStream`, `Exact`, `StreamExists` and `Any`: what each accepts, and that a refused
/// append writes nothing.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::expected_versions(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn expected_versions<S: EventStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    let refused = append(&store, "s", ExpectedVersion::StreamExists, [event("A", "0")]);
    ensure(matches!(refused, Err(Error::WrongExpectedVersion { actual: None, .. })), || {
        format!("StreamExists on a missing stream: {refused:?}")
    })?;
    let first = step(append(&store, "s", ExpectedVersion::NoStream, [event("A", "0"), event("B", "1")]), "NoStream")?;
    ensure(first.first_version == 0 && first.last_version == 1, || format!("first append: {first:?}"))?;
    let again = append(&store, "s", ExpectedVersion::NoStream, [event("A", "x")]);
    ensure(matches!(again, Err(Error::WrongExpectedVersion { actual: Some(1), .. })), || {
        format!("NoStream on an existing stream: {again:?}")
    })?;
    let stale = append(&store, "s", ExpectedVersion::Exact(0), [event("A", "x")]);
    ensure(matches!(stale, Err(Error::WrongExpectedVersion { actual: Some(1), .. })), || {
        format!("Exact(0) at version 1: {stale:?}")
    })?;
    let exact = step(append(&store, "s", ExpectedVersion::Exact(1), [event("C", "2")]), "Exact(1)")?;
    ensure(exact.first_version == 2, || format!("Exact(1) append: {exact:?}"))?;
    step(append(&store, "s", ExpectedVersion::StreamExists, [event("D", "3")]), "StreamExists")?;
    let any = step(append(&store, "s", ExpectedVersion::Any, [event("E", "4")]), "Any")?;
    ensure(any.last_version == 4 && any.last_position == 4, || format!("Any append: {any:?}"))?;
    let events = stream_events(&store, "s", 0)?;
    let data: Vec<&[u8]> = events.iter().map(|e| &e.data[..]).collect();
    ensure(data == [b"0", b"1", b"2", b"3", b"4"], || format!("refused appends wrote something: {data:?}"))?;
    ensure(step(store.stream_version("s"), "stream_version")? == Some(4), || "stream_version".into())?;
    ensure(step(store.stream_version("missing"), "stream_version")?.is_none(), || {
        "missing stream has a version".into()
    })?;
    let invalid = append(&store, "", ExpectedVersion::Any, [event("A", "")]);
    ensure(matches!(invalid, Err(Error::InvalidInput { .. })), || format!("empty stream id: {invalid:?}"))?;
    let empty = append(&store, "s", ExpectedVersion::Any, []);
    ensure(matches!(empty, Err(Error::InvalidInput { .. })), || format!("no events: {empty:?}"))
}

/// An append whose events all carry ids, retried after it succeeded, returns the original
/// result and writes nothing.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::idempotent_retries(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn idempotent_retries<S: EventStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    let batch = || [event("A", "a").with_id(1), event("B", "b").with_id(2)];
    let first = step(append(&store, "s", ExpectedVersion::NoStream, batch()), "first")?;
    let retry = step(append(&store, "s", ExpectedVersion::NoStream, batch()), "retry under NoStream")?;
    ensure(retry == first, || format!("retry returned {retry:?}, first {first:?}"))?;
    step(append(&store, "s", ExpectedVersion::Exact(1), [event("C", "c").with_id(3)]), "next")?;
    let late = step(append(&store, "s", ExpectedVersion::NoStream, batch()), "late retry under NoStream")?;
    ensure(late == first, || format!("late retry returned {late:?}"))?;
    let any = step(append(&store, "s", ExpectedVersion::Any, [event("C", "c").with_id(3)]), "retry under Any")?;
    ensure(any.first_version == 2, || format!("Any retry of the last append: {any:?}"))?;
    let events = stream_events(&store, "s", 0)?;
    ensure(versions(&events) == [0, 1, 2], || format!("retries wrote events: {:?}", versions(&events)))?;
    ensure(events.iter().map(|e| e.id).collect::<Vec<_>>() == [1, 2, 3], || "ids not kept".into())
}

/// `append_multi`: all parts or none, positions contiguous in the given order.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::multi_stream_appends(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn multi_stream_appends<S: EventStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    step(append(&store, "a", ExpectedVersion::Any, [event("T", "a0")]), "seed")?;
    let results = step(
        store.append_multi(vec![
            StreamAppend::new("a", ExpectedVersion::Exact(0), [event("T", "a1")]),
            StreamAppend::new("b", ExpectedVersion::NoStream, [event("T", "b0"), event("T", "b1")]),
        ]),
        "append_multi",
    )?;
    ensure(results.len() == 2 && results[1].first_position == results[0].last_position + 1, || {
        format!("positions not contiguous: {results:?}")
    })?;
    let refused = store.append_multi(vec![
        StreamAppend::new("c", ExpectedVersion::Any, [event("T", "c0")]),
        StreamAppend::new("b", ExpectedVersion::NoStream, [event("T", "b2")]),
    ]);
    ensure(matches!(refused, Err(Error::WrongExpectedVersion { .. })), || format!("bad part: {refused:?}"))?;
    ensure(step(store.stream_version("c"), "stream_version")?.is_none(), || {
        "a refused multi-append wrote part c".into()
    })?;
    let b = stream_events(&store, "b", 0)?;
    ensure(versions(&b) == [0, 1], || format!("b after a refused multi-append: {:?}", versions(&b)))?;
    let all = all_events(&store, 0)?;
    let order: Vec<(&str, u64)> = all.iter().map(|e| (e.stream_id.as_str(), e.position)).collect();
    ensure(order == [("a", 0), ("a", 1), ("b", 2), ("b", 3)], || format!("read_all after multi-append: {order:?}"))
}

/// Forward and backward stream reads, `read_all` (iterator, callback, backward), from any
/// start.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::reads(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn reads<S: EventStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    for i in 0..30u32 {
        let stream = if i % 3 == 0 { "x" } else { "y" };
        let data = format!("{i}");
        step(append(&store, stream, ExpectedVersion::Any, [event("T", &data).with_metadata("m")]), "append")?;
    }
    let x = stream_events(&store, "x", 0)?;
    ensure(versions(&x) == (0..10).collect::<Vec<_>>(), || format!("x versions {:?}", versions(&x)))?;
    ensure(x.iter().all(|e| &e.metadata[..] == b"m" && e.stream_id == "x"), || "metadata or stream id".into())?;
    let tail = stream_events(&store, "y", 15)?;
    ensure(versions(&tail) == [15, 16, 17, 18, 19], || format!("y from 15: {:?}", versions(&tail)))?;
    let backward: Vec<u64> = step(
        step(store.read_stream_backward("x", Some(3)), "backward")?.collect::<Result<Vec<_>, _>>(),
        "backward item",
    )?
    .iter()
    .map(|e| e.version)
    .collect();
    ensure(backward == [3, 2, 1, 0], || format!("backward from 3: {backward:?}"))?;
    let all: Vec<u64> = step(step(store.read_all(25), "read_all")?.collect::<Result<Vec<_>, _>>(), "read_all item")?
        .iter()
        .map(|e| e.position)
        .collect();
    ensure(all == [25, 26, 27, 28, 29], || format!("read_all from 25: {all:?}"))?;
    let all = all_events(&store, 0)?;
    let in_order = all.iter().enumerate().all(|(i, e)| e.position == i as u64 && e.data == format!("{i}").as_bytes());
    ensure(all.len() == 30 && in_order, || format!("read_all from 0: {} events", all.len()))?;
    let past = all_events(&store, 30)?;
    ensure(past.is_empty(), || format!("read_all past the end: {past:?}"))?;
    let backward_all: Vec<u64> = step(
        step(store.read_all_backward(Some(2)), "read_all_backward")?.collect::<Result<Vec<_>, _>>(),
        "read_all_backward item",
    )?
    .iter()
    .map(|e| e.position)
    .collect();
    ensure(backward_all == [2, 1, 0], || format!("read_all_backward from 2: {backward_all:?}"))?;
    let last_two: Vec<u64> = step(
        step(store.read_stream_backward("y", None), "backward")?.take(2).collect::<Result<Vec<_>, _>>(),
        "backward item",
    )?
    .iter()
    .map(|e| e.version)
    .collect();
    ensure(last_two == [19, 18], || format!("read_stream_backward from the end: {last_two:?}"))?;
    let newest = step(step(store.read_all_backward(None), "read_all_backward")?.next().transpose(), "item")?;
    ensure(newest.is_some_and(|e| e.position == 29), || "read_all_backward starts at the end".into())?;
    ensure(stream_events(&store, "missing", 0)?.is_empty(), || "missing stream reads events".into())?;
    let invalid = store.read_stream("", 0).map(|_| ());
    ensure(matches!(invalid, Err(Error::InvalidInput { .. })), || format!("read of an empty stream id: {invalid:?}"))
}

/// Snapshots: the newest one is loaded, one past the stream's version is refused.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::snapshots(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn snapshots<S: EventStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    ensure(step(store.load_snapshot("s"), "load")?.is_none(), || "snapshot of a missing stream".into())?;
    step(append(&store, "s", ExpectedVersion::Any, (0..5).map(|i| event("T", &i.to_string()))), "append")?;
    step(store.save_snapshot("s", 1, b"at 1"), "save at 1")?;
    step(store.save_snapshot("s", 4, b"at 4"), "save at 4")?;
    let newest = step(store.load_snapshot("s"), "load")?;
    ensure(newest.as_ref().is_some_and(|s| s.version == 4 && &s.data[..] == b"at 4"), || {
        format!("newest snapshot: {newest:?}")
    })?;
    let too_new = store.save_snapshot("s", 5, b"future");
    ensure(matches!(too_new, Err(Error::InvalidInput { .. })), || format!("snapshot past the end: {too_new:?}"))?;
    let none = store.save_snapshot("other", 0, b"x");
    ensure(matches!(none, Err(Error::InvalidInput { .. })), || format!("snapshot of a missing stream: {none:?}"))
}

/// Deletion: permanent, guarded by the expected version, visible to every call.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::deletion(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn deletion<S: EventStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    step(append(&store, "d", ExpectedVersion::Any, [event("T", "0"), event("T", "1")]), "append")?;
    step(append(&store, "keep", ExpectedVersion::Any, [event("T", "k")]), "append")?;
    let wrong = store.delete_stream("d", ExpectedVersion::Exact(0));
    ensure(matches!(wrong, Err(Error::WrongExpectedVersion { .. })), || format!("stale delete: {wrong:?}"))?;
    let missing = store.delete_stream("typo", ExpectedVersion::StreamExists);
    ensure(matches!(missing, Err(Error::WrongExpectedVersion { .. })), || format!("guarded delete: {missing:?}"))?;
    step(store.delete_stream("d", ExpectedVersion::Exact(1)), "delete")?;
    let read = store.read_stream("d", 0).map(|_| ());
    ensure(matches!(read, Err(Error::StreamDeleted { .. })), || format!("read after delete: {read:?}"))?;
    let appended = append(&store, "d", ExpectedVersion::Any, [event("T", "again")]);
    ensure(matches!(appended, Err(Error::StreamDeleted { .. })), || format!("append after delete: {appended:?}"))?;
    let snapshot = store.load_snapshot("d");
    ensure(matches!(snapshot, Err(Error::StreamDeleted { .. })), || format!("snapshot after delete: {snapshot:?}"))?;
    let version = store.stream_version("d");
    ensure(matches!(version, Err(Error::StreamDeleted { .. })), || format!("version after delete: {version:?}"))?;
    let again = store.delete_stream("d", ExpectedVersion::Any);
    ensure(matches!(again, Err(Error::StreamDeleted { .. })), || format!("second delete: {again:?}"))?;
    let snapshot_save = store.save_snapshot("d", 0, b"x");
    ensure(matches!(snapshot_save, Err(Error::StreamDeleted { .. })), || {
        format!("snapshot save after delete: {snapshot_save:?}")
    })?;
    let all = all_events(&store, 0)?;
    ensure(all.iter().all(|e| e.stream_id == "keep") && all.len() == 1, || {
        format!("read_all after delete: {:?}", all.iter().map(|e| &e.stream_id).collect::<Vec<_>>())
    })?;
    ensure(stream_events(&store, "keep", 0)?.len() == 1, || "the other stream lost events".into())?;
    // A stream that never had events is tombstoned under Any: the id is burnt.
    step(store.delete_stream("never", ExpectedVersion::NoStream), "delete a missing stream")?;
    let burnt = append(&store, "never", ExpectedVersion::Any, [event("T", "")]);
    ensure(matches!(burnt, Err(Error::StreamDeleted { .. })), || format!("append to a burnt id: {burnt:?}"))
}

/// A deletion takes one global position (the embedded store's tombstone record), which no
/// read returns: the next append's position is one past it, `read_all` from it starts at
/// the next event, and deleting a stream that never had events takes one too.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::deletion_positions(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn deletion_positions<S: EventStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    step(append(&store, "a", ExpectedVersion::Any, [event("T", "0")]), "append")?; // 0
    step(append(&store, "d", ExpectedVersion::Any, [event("T", "1"), event("T", "2")]), "append")?; // 1, 2
    step(store.delete_stream("d", ExpectedVersion::Exact(1)), "delete")?; // 3
    let next = step(append(&store, "a", ExpectedVersion::Any, [event("T", "4")]), "append")?;
    ensure(next.first_position == 4, || format!("append after a deletion at 3: {next:?}"))?;
    step(store.delete_stream("never", ExpectedVersion::NoStream), "delete a missing stream")?; // 5
    let last = step(append(&store, "a", ExpectedVersion::Any, [event("T", "6")]), "append")?;
    ensure(last.first_position == 6, || format!("append after a deletion at 5: {last:?}"))?;
    let all = positions(&all_events(&store, 0)?);
    ensure(all == [0, 4, 6], || format!("read_all: {all:?}"))?;
    let from_tombstone = positions(&all_events(&store, 3)?);
    ensure(from_tombstone == [4, 6], || format!("read_all from the tombstone: {from_tombstone:?}"))?;
    let backward: Vec<u64> = step(
        step(store.read_all_backward(Some(5)), "read_all_backward")?.collect::<Result<Vec<_>, _>>(),
        "read_all_backward item",
    )?
    .iter()
    .map(|e| e.position)
    .collect();
    ensure(backward == [4, 0], || format!("read_all_backward from the tombstone: {backward:?}"))?;
    let filtered_all = positions(&filtered(&store, 0, Filter::all())?);
    ensure(filtered_all == [0, 4, 6], || format!("read_all_filtered: {filtered_all:?}"))
}

/// Input hostile to encodings and query languages round-trips exactly or is refused with
/// `InvalidInput` before anything is written: quotes, NUL bytes, non-ASCII, 1 MiB of
/// metadata, ids at and past the limits, empty event types.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::hostile_input(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn hostile_input<S: EventStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    let streams = [
        "it's \"quoted\"; DROP TABLE events; --".to_owned(),
        "nul\0byte\0".to_owned(),
        "ünïcødé-流-🚀".to_owned(),
        "%_like_*?".to_owned(),
        "x".repeat(chronicle::STREAM_ID_BYTES_MAX),
    ];
    let big = vec![0u8; 1 << 20];
    for (i, stream) in streams.iter().enumerate() {
        let data: Vec<u8> = (0..=255u8).chain([0, 0, b'\'', b'"']).collect();
        let new = |metadata: &[u8]| {
            NewEvent::new("type'with\0\"quotes\"", data.clone())
                .with_metadata(metadata.to_vec())
                .with_id(u128::MAX - i as u128)
                .with_correlation_id(u128::MAX)
                .with_causation_id(0)
        };
        let mut metadata = if i == 0 { big.clone() } else { b"\0'\\".to_vec() };
        match append(&store, stream, ExpectedVersion::NoStream, [new(&metadata)]) {
            Ok(_) => {}
            // A store configured with small segments caps events below 1 MiB: refused
            // whole, before anything is written, as the limit says.
            Err(Error::InvalidInput { message }) if i == 0 && message.contains("event_bytes_max") => {
                metadata = b"small".to_vec();
                step(append(&store, stream, ExpectedVersion::NoStream, [new(&metadata)]), "hostile append")?;
            }
            Err(error) => return Err(format!("hostile append: {error}")),
        }
        let events = stream_events(&store, stream, 0)?;
        let ok = events.len() == 1
            && events[0].stream_id == *stream
            && events[0].event_type == "type'with\0\"quotes\""
            && events[0].data == data
            && events[0].metadata == metadata
            && events[0].id == u128::MAX - i as u128
            && events[0].correlation_id == Some(u128::MAX)
            && events[0].causation_id == Some(0);
        ensure(ok, || format!("stream {i} did not round-trip: {:?}", events.first().map(|e| &e.stream_id)))?;
        ensure(step(store.stream_version(stream), "stream_version")? == Some(0), || format!("version of stream {i}"))?;
        step(store.save_snapshot(stream, 0, &data), "hostile snapshot")?;
        let snapshot = step(store.load_snapshot(stream), "load hostile snapshot")?;
        ensure(snapshot.is_some_and(|s| s.version == 0 && s.data == data), || format!("snapshot {i} round-trip"))?;
    }
    let all = all_events(&store, 0)?;
    let ids: Vec<&str> = all.iter().map(|e| e.stream_id.as_str()).collect();
    let expected: Vec<&str> = streams.iter().map(String::as_str).collect();
    ensure(ids == expected, || "read_all order of hostile streams".into())?;
    let too_long = "x".repeat(chronicle::STREAM_ID_BYTES_MAX + 1);
    let refused = [
        ("stream id over the limit", append(&store, &too_long, ExpectedVersion::Any, [event("T", "")]).map(|_| ())),
        ("empty event type", append(&store, "s", ExpectedVersion::Any, [event("", "")]).map(|_| ())),
        (
            "event type over the limit",
            append(&store, "s", ExpectedVersion::Any, [event(&"t".repeat(chronicle::EVENT_TYPE_BYTES_MAX + 1), "")])
                .map(|_| ()),
        ),
        (
            "event over the size limit",
            append(
                &store,
                "s",
                ExpectedVersion::Any,
                [NewEvent::new("T", vec![0u8; chronicle::EVENT_BYTES_MAX_DEFAULT])],
            )
            .map(|_| ()),
        ),
        (
            "a stream twice in one append_multi",
            store
                .append_multi(vec![
                    StreamAppend::new("s", ExpectedVersion::Any, [event("T", "")]),
                    StreamAppend::new("s", ExpectedVersion::Any, [event("T", "")]),
                ])
                .map(|_| ()),
        ),
        ("append_multi of nothing", store.append_multi(vec![]).map(|_| ())),
        ("version of an oversized id", store.stream_version(&too_long).map(|_| ())),
        ("snapshot of an oversized id", store.load_snapshot(&too_long).map(|_| ())),
        ("delete of an empty id", store.delete_stream("", ExpectedVersion::Any)),
    ];
    for (what, result) in refused {
        ensure(matches!(result, Err(Error::InvalidInput { .. })), || format!("{what}: {result:?}"))?;
    }
    ensure(step(store.stream_version("s"), "stream_version")?.is_none(), || "a refused append wrote".into())
}

fn filtered<S: EventStore>(store: &S, from: u64, filter: Filter) -> Result<Vec<RecordedEvent>, String> {
    step(step(store.read_all_filtered(from, filter), "read_all_filtered")?.collect::<Result<Vec<_>, _>>(), "item")
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

fn one_part(stream: &str, event_type: &str, data: &[u8]) -> Vec<StreamAppend> {
    vec![StreamAppend::new(stream, ExpectedVersion::Any, [NewEvent::new(event_type, data.to_vec())])]
}

/// `read_all_filtered`: streams, categories, prefixes, event types and partitions, alone
/// and combined (a conjunction), from any position; a bad filter is `InvalidInput`.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::filtered_reads(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn filtered_reads<S: EventStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    let log = [
        ("order-1", "Placed"),   // 0
        ("order-2", "Placed"),   // 1
        ("orders-1", "Placed"),  // 2: another category
        ("order", "Paid"),       // 3: the category's own stream
        ("order-1", "Paid"),     // 4
        ("user-1", "Placed"),    // 5
        ("order-10", "Shipped"), // 6
    ];
    for (stream, event_type) in log {
        step(append(&store, stream, ExpectedVersion::Any, [event(event_type, stream)]), "append")?;
    }
    let cases = [
        ("all", Filter::all(), 0, vec![0, 1, 2, 3, 4, 5, 6]),
        ("all from 4", Filter::all(), 4, vec![4, 5, 6]),
        ("stream", Filter::stream("order-1"), 0, vec![0, 4]),
        ("category", Filter::category("order"), 0, vec![0, 1, 3, 4, 6]),
        ("category from 2", Filter::category("order"), 2, vec![3, 4, 6]),
        ("prefix", Filter::stream_prefix("order-1"), 0, vec![0, 4, 6]),
        ("types", Filter::event_types(["Paid", "Shipped"]), 0, vec![3, 4, 6]),
        ("category and types", Filter::category("order").with_event_types(["Placed"]), 0, vec![0, 1]),
        ("two types lists", Filter::event_types(["Placed", "Paid"]).with_event_types(["Paid"]), 0, vec![3, 4]),
        ("two streams", Filter::stream("order-1").with_stream("order-2"), 0, vec![]),
        ("no match", Filter::event_types(["Nothing"]), 0, vec![]),
        ("past the end", Filter::all(), 7, vec![]),
    ];
    for (what, filter, from, expected) in cases {
        let found = positions(&filtered(&store, from, filter)?);
        ensure(found == expected, || format!("{what}: {found:?}, expected {expected:?}"))?;
    }
    // Partitions: each stream in the one partition its hash names, every event once.
    let count = 3u32;
    let mut seen = Vec::new();
    for index in 0..count {
        for e in filtered(&store, 0, Filter::category("order").with_partition(index, count))? {
            let hash = Filter::partition_hash(&e.stream_id);
            ensure(hash % u64::from(count) == u64::from(index), || {
                format!("{} in partition {index} of {count}, its hash says {}", e.stream_id, hash % u64::from(count))
            })?;
            seen.push(e.position);
        }
    }
    seen.sort_unstable();
    ensure(seen == [0, 1, 3, 4, 6], || format!("partitions together: {seen:?}"))?;
    for (what, bad) in [
        ("empty category", Filter::category("")),
        ("empty type list", Filter::event_types(Vec::<String>::new())),
        ("partition index past count", Filter::all().with_partition(3, 3)),
        ("empty prefix", Filter::stream_prefix("")),
    ] {
        let result = store.read_all_filtered(0, bad).map(|_| ());
        ensure(matches!(result, Err(Error::InvalidInput { .. })), || format!("{what}: {result:?}"))?;
    }
    Ok(())
}

/// `append_if`: refused with `ConditionFailed` naming the first event that matches the
/// filter after the condition's position (nothing written), accepted otherwise; expected
/// versions are still checked; a bad filter or no parts is `InvalidInput`.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::conditional_appends(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn conditional_appends<S: EventStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    step(append(&store, "other-1", ExpectedVersion::Any, [event("Booked", "")]), "append")?; // 0
    step(append(&store, "seat-1", ExpectedVersion::Any, [event("Viewed", "")]), "append")?; // 1
    step(append(&store, "seat-1", ExpectedVersion::Any, [event("Booked", "")]), "append")?; // 2
    step(append(&store, "seat-2", ExpectedVersion::Any, [event("Booked", "")]), "append")?; // 3
    let booked = Filter::category("seat").with_event_types(["Booked"]);
    let none = store.append_if(AppendCondition::new(booked.clone(), None), one_part("seat-3", "Booked", b""));
    ensure(
        matches!(&none, Err(Error::ConditionFailed { position: 2, stream, event_type, after: None })
            if stream == "seat-1" && event_type == "Booked"),
        || format!("condition with no position: {none:?}"),
    )?;
    let after = store.append_if(AppendCondition::new(booked.clone(), Some(2)), one_part("seat-3", "Booked", b""));
    ensure(matches!(after, Err(Error::ConditionFailed { position: 3, after: Some(2), .. })), || {
        format!("condition after 2: {after:?}")
    })?;
    ensure(all_events(&store, 0)?.len() == 4, || "a failed condition wrote".into())?;
    let ok = step(
        store.append_if(AppendCondition::new(booked.clone(), Some(3)), one_part("seat-3", "Booked", b"")),
        "condition after 3",
    )?;
    ensure(ok.len() == 1 && ok[0].first_position == 4 && ok[0].first_version == 0, || format!("append_if: {ok:?}"))?;
    // Several parts, atomically, under a condition on a stream none of them touches.
    let multi = step(
        store.append_if(
            AppendCondition::new(Filter::stream("seat-9"), None),
            vec![
                StreamAppend::new("seat-9", ExpectedVersion::NoStream, [event("Booked", "a")]),
                StreamAppend::new("seat-1", ExpectedVersion::Exact(1), [event("Released", "b")]),
            ],
        ),
        "multi-part append_if",
    )?;
    ensure(multi.len() == 2 && multi[1].first_position == multi[0].last_position + 1, || {
        format!("multi-part append_if: {multi:?}")
    })?;
    // A condition that holds does not excuse a wrong expected version.
    let wrong = store.append_if(
        AppendCondition::new(Filter::stream("nope"), None),
        vec![StreamAppend::new("seat-9", ExpectedVersion::NoStream, [event("Booked", "")])],
    );
    ensure(matches!(wrong, Err(Error::WrongExpectedVersion { .. })), || format!("wrong version: {wrong:?}"))?;
    // A deleted stream's events no longer count.
    step(store.delete_stream("seat-2", ExpectedVersion::Any), "delete")?;
    let only_deleted = AppendCondition::new(Filter::stream("seat-2").with_event_types(["Booked"]), None);
    let deleted = store.append_if(only_deleted, one_part("seat-5", "Booked", b""));
    ensure(deleted.is_ok(), || format!("condition on a deleted stream's events: {deleted:?}"))?;
    let bad =
        store.append_if(AppendCondition::new(Filter::event_types(Vec::<String>::new()), None), one_part("a", "T", b""));
    ensure(matches!(bad, Err(Error::InvalidInput { .. })), || format!("bad filter: {bad:?}"))?;
    let empty = store.append_if(AppendCondition::new(Filter::all(), None), Vec::new());
    ensure(matches!(empty, Err(Error::InvalidInput { .. })), || format!("no parts: {empty:?}"))?;
    let count = all_events(&store, 0)?.len();
    ensure(count == 7, || format!("{count} events after the refusals, expected 7"))
}

/// Threads race to book one seat, each on an empty read (`after_position: None`): exactly
/// one wins each round, whatever the backend's concurrency.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::racing_conditional_appends(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn racing_conditional_appends<S: EventStore>(make_store: Make<'_, S>) -> Check {
    const THREADS: usize = 8;
    const ROUNDS: usize = 10;
    let store = make_store();
    for round in 0..ROUNDS {
        let seat = format!("seat-{round}");
        let barrier = Barrier::new(THREADS);
        let outcomes: Vec<Result<bool, String>> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (store, seat, barrier) = (&store, &seat, &barrier);
                    scope.spawn(move || {
                        // Each books its own stream, so only the condition can stop it.
                        let condition =
                            AppendCondition::new(Filter::category("seat").with_stream_prefix(seat.clone()), None);
                        let booking = one_part(&format!("{seat}-{t}"), "Booked", &[t as u8]);
                        barrier.wait();
                        match store.append_if(condition, booking) {
                            Ok(_) => Ok(true),
                            Err(Error::ConditionFailed { .. }) => Ok(false),
                            Err(other) => Err(format!("racer {t}: {other}")),
                        }
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap_or_else(|_| Err("racer panicked".into()))).collect()
        });
        let wins = outcomes.into_iter().collect::<Result<Vec<bool>, String>>()?.into_iter().filter(|w| *w).count();
        ensure(wins == 1, || format!("round {round}: {wins} racers won"))?;
        let booked = filtered(&store, 0, Filter::stream_prefix(seat.clone()))?;
        ensure(booked.len() == 1, || format!("round {round}: {} bookings stored", booked.len()))?;
    }
    Ok(())
}

/// Conditional appends racing plain appends of matching events: every conditional append
/// that succeeded saw no matching event between its condition's position and its own
/// position, and every refusal names a matching event after the condition's position.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::conditions_hold_at_commit(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn conditions_hold_at_commit<S: EventStore>(make_store: Make<'_, S>) -> Check {
    const PLAIN: usize = 2;
    const CONDITIONAL: usize = 2;
    const APPENDS: usize = 25;
    let store = make_store();
    let debited = Filter::category("acct").with_event_types(["Debited"]);
    let barrier = Barrier::new(PLAIN + CONDITIONAL);
    // Per worker: (the condition's position, the successful append's position).
    type Successes = Result<Vec<(Option<u64>, u64)>, String>;
    let results: Vec<Successes> = std::thread::scope(|scope| {
        let mut workers = Vec::new();
        for t in 0..PLAIN {
            let (store, barrier) = (&store, &barrier);
            workers.push(scope.spawn(move || {
                barrier.wait();
                for i in 0..APPENDS {
                    let stream = format!("acct-{}", i % 3);
                    store
                        .append(&stream, ExpectedVersion::Any, vec![NewEvent::new("Debited", vec![t as u8])])
                        .map_err(|e| format!("plain append: {e}"))?;
                }
                Ok(Vec::new())
            }));
        }
        for _ in 0..CONDITIONAL {
            let (store, barrier, debited) = (&store, &barrier, &debited);
            workers.push(scope.spawn(move || {
                barrier.wait();
                let mut successes = Vec::new();
                for _ in 0..APPENDS {
                    let seen = filtered(store, 0, debited.clone())?.last().map(|e| e.position);
                    let condition = AppendCondition::new(debited.clone(), seen);
                    match store.append_if(condition, one_part("acct-0", "Debited", b"c")) {
                        Ok(results) => successes.push((seen, results[0].first_position)),
                        Err(Error::ConditionFailed { position, after, .. }) => {
                            if after.is_some_and(|after| position <= after) {
                                return Err(format!("refused at {position}, not after {after:?}"));
                            }
                        }
                        Err(other) => return Err(format!("append_if: {other}")),
                    }
                }
                Ok(successes)
            }));
        }
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err("worker panicked".into()))).collect()
    });
    let mut successes = Vec::new();
    for result in results {
        successes.extend(result?);
    }
    let matching = positions(&filtered(&store, 0, debited)?);
    ensure(matching.len() == PLAIN * APPENDS + successes.len(), || format!("{} matching events", matching.len()))?;
    for (seen, own) in successes {
        let from = seen.map_or(0, |p| p + 1);
        let between = matching.iter().find(|&&p| p >= from && p < own);
        ensure(between.is_none(), || {
            format!("append at {own} succeeded on a condition after {seen:?}, but {between:?} matches in between")
        })?;
    }
    Ok(())
}

/// The embedded store's own views: `streams()`, `stream_info`, the zero-copy
/// `read_all_with`.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::store_listing_and_views(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn store_listing_and_views(make_store: MakeStore<'_>) -> Check {
    let store = make_store();
    for i in 0..30u32 {
        let stream = if i % 3 == 0 { "x" } else { "y" };
        step(store.append(stream, ExpectedVersion::Any, [event("T", &format!("{i}"))]), "append")?;
    }
    let mut seen = 0u64;
    step(
        store.read_all_with(0, |view| {
            if view.position == seen && view.data == format!("{seen}").as_bytes() {
                seen += 1;
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        }),
        "read_all_with",
    )?;
    ensure(seen == 30, || format!("read_all_with stopped at {seen}"))?;
    let info = step(store.stream_info("y"), "stream_info")?;
    ensure(info.is_some_and(|i| i.first_version == 0 && i.last_version == 19), || format!("stream_info {info:?}"))?;
    step(store.append("gone", ExpectedVersion::Any, [event("T", "")]), "append")?;
    step(store.delete_stream("gone", ExpectedVersion::Any), "delete")?;
    ensure(step(store.streams(), "streams")? == ["x", "y"], || "streams()".into())
}

/// Retention rules let compaction discard the start of a stream; the last event and the
/// stream's version survive.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::retention_and_compaction(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn retention_and_compaction(make_store: MakeStore<'_>) -> Check {
    let store = make_store();
    step(store.append("count", ExpectedVersion::Any, (0..10).map(|i| event("T", &i.to_string()))), "append")?;
    step(store.append("snap", ExpectedVersion::Any, (0..10).map(|i| event("T", &i.to_string()))), "append")?;
    step(store.save_snapshot("snap", 5, b"state"), "snapshot")?;
    step(store.set_stream_retention("count", Retention::MaxCount(3)), "MaxCount")?;
    step(store.set_stream_retention("snap", Retention::BeforeSnapshot), "BeforeSnapshot")?;
    let report = step(store.compact(), "compact")?;
    ensure(report.events_removed == 7 + 6, || format!("events removed: {report:?}"))?;
    let count = stream_events(&store, "count", 0)?;
    ensure(versions(&count) == [7, 8, 9], || format!("MaxCount(3) kept {:?}", versions(&count)))?;
    let snap = stream_events(&store, "snap", 0)?;
    ensure(versions(&snap) == [6, 7, 8, 9], || format!("BeforeSnapshot kept {:?}", versions(&snap)))?;
    ensure(step(store.stream_version("count"), "version")? == Some(9), || "version lost".into())?;
    let next = step(store.append("count", ExpectedVersion::Exact(9), [event("T", "10")]), "append after")?;
    ensure(next.first_version == 10, || format!("append after compaction: {next:?}"))?;
    let info = step(store.stream_info("count"), "stream_info")?;
    ensure(info.is_some_and(|i| i.first_version == 7 && i.last_version == 10), || format!("stream_info {info:?}"))
}

/// Compaction after `delete_stream` removes the stream's events and snapshots; other
/// streams keep every event at its position.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::compaction_erases_deleted_streams(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn compaction_erases_deleted_streams(make_store: MakeStore<'_>) -> Check {
    let store = make_store();
    for i in 0..20u32 {
        let stream = if i % 2 == 0 { "gone" } else { "kept" };
        step(store.append(stream, ExpectedVersion::Any, [event("T", &i.to_string())]), "append")?;
    }
    step(store.save_snapshot("gone", 3, b"s"), "snapshot")?;
    step(store.delete_stream("gone", ExpectedVersion::Any), "delete")?;
    let report = step(store.compact(), "compact")?;
    ensure(report.events_removed == 10 && report.snapshots_removed >= 1, || format!("report: {report:?}"))?;
    let all: Vec<RecordedEvent> = step(step(store.read_all(0), "read_all")?.collect(), "read_all item")?;
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    ensure(positions == (0..10).map(|i| 2 * i + 1).collect::<Vec<_>>(), || format!("positions: {positions:?}"))?;
    ensure(all.iter().all(|e| e.stream_id == "kept"), || "deleted events survived compaction".into())
}

/// After `close`, every method of every clone answers `Closed`.
///
/// # Errors
/// The first deviation.
///
/// ```
/// chronicle_testkit::conformance::close(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn close(make_store: MakeStore<'_>) -> Check {
    let store = make_store();
    let clone = store.clone();
    step(store.append("s", ExpectedVersion::Any, [event("T", "")]), "append")?;
    step(store.close(), "close")?;
    let append = clone.append("s", ExpectedVersion::Any, [event("T", "")]);
    ensure(matches!(append, Err(Error::Closed)), || format!("append after close: {append:?}"))?;
    let read = clone.read_stream("s", 0).map(|_| ());
    ensure(matches!(read, Err(Error::Closed)), || format!("read after close: {read:?}"))
}
