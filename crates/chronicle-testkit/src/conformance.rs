//! The behaviour suite every store must pass, whatever its storage: run it against
//! `Store::open(dir)` and `Store::open_in_memory()` (the root crate's
//! `tests/conformance.rs`), and later against every backend.
//!
//! Each check takes a function that makes a fresh, empty store and returns the first
//! deviation as an `Err` naming the check, so a failure reads
//! `idempotent_retries: retry returned ...`. [`run_all`] runs every check.
//!
//! ```
//! use chronicle::Store;
//! chronicle_testkit::conformance::run_all(&|| Store::open_in_memory().expect("open"))?;
//! # Ok::<(), String>(())
//! ```

use std::ops::ControlFlow;

use chronicle::{Error, ExpectedVersion, NewEvent, RecordedEvent, Retention, Store, StreamAppend};

/// Makes a fresh, empty store.
pub type MakeStore<'a> = &'a dyn Fn() -> Store;

/// A check's verdict: `Err` describes the first deviation.
pub type Check = Result<(), String>;

/// One check of the suite.
pub type CheckFn = fn(MakeStore<'_>) -> Check;

/// Every check, with its name.
pub const CHECKS: &[(&str, CheckFn)] = &[
    ("expected_versions", expected_versions),
    ("idempotent_retries", idempotent_retries),
    ("multi_stream_appends", multi_stream_appends),
    ("reads", reads),
    ("snapshots", snapshots),
    ("deletion", deletion),
    ("retention_and_compaction", retention_and_compaction),
    ("compaction_erases_deleted_streams", compaction_erases_deleted_streams),
    ("close", close),
];

/// Runs every check of [`CHECKS`] on fresh stores from `make_store`.
///
/// # Errors
/// The first failing check, as `"name: what went wrong"`.
///
/// ```
/// chronicle_testkit::conformance::run_all(&|| chronicle::Store::open_in_memory().expect("open"))?;
/// # Ok::<(), String>(())
/// ```
pub fn run_all(make_store: MakeStore<'_>) -> Check {
    for (name, check) in CHECKS {
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

fn stream_events(store: &Store, stream: &str, from: u64) -> Result<Vec<RecordedEvent>, String> {
    step(step(store.read_stream(stream, from), "read_stream")?.collect::<Result<Vec<_>, _>>(), "read_stream item")
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
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
pub fn expected_versions(make_store: MakeStore<'_>) -> Check {
    let store = make_store();
    let refused = store.append("s", ExpectedVersion::StreamExists, [event("A", "0")]);
    ensure(matches!(refused, Err(Error::WrongExpectedVersion { actual: None, .. })), || {
        format!("StreamExists on a missing stream: {refused:?}")
    })?;
    let first = step(store.append("s", ExpectedVersion::NoStream, [event("A", "0"), event("B", "1")]), "NoStream")?;
    ensure(first.first_version == 0 && first.last_version == 1, || format!("first append: {first:?}"))?;
    let again = store.append("s", ExpectedVersion::NoStream, [event("A", "x")]);
    ensure(matches!(again, Err(Error::WrongExpectedVersion { actual: Some(1), .. })), || {
        format!("NoStream on an existing stream: {again:?}")
    })?;
    let stale = store.append("s", ExpectedVersion::Exact(0), [event("A", "x")]);
    ensure(matches!(stale, Err(Error::WrongExpectedVersion { actual: Some(1), .. })), || {
        format!("Exact(0) at version 1: {stale:?}")
    })?;
    let exact = step(store.append("s", ExpectedVersion::Exact(1), [event("C", "2")]), "Exact(1)")?;
    ensure(exact.first_version == 2, || format!("Exact(1) append: {exact:?}"))?;
    step(store.append("s", ExpectedVersion::StreamExists, [event("D", "3")]), "StreamExists")?;
    let any = step(store.append("s", ExpectedVersion::Any, [event("E", "4")]), "Any")?;
    ensure(any.last_version == 4 && any.last_position == 4, || format!("Any append: {any:?}"))?;
    let events = stream_events(&store, "s", 0)?;
    let data: Vec<&[u8]> = events.iter().map(|e| &e.data[..]).collect();
    ensure(data == [b"0", b"1", b"2", b"3", b"4"], || format!("refused appends wrote something: {data:?}"))?;
    ensure(step(store.stream_version("s"), "stream_version")? == Some(4), || "stream_version".into())?;
    ensure(step(store.stream_version("missing"), "stream_version")?.is_none(), || {
        "missing stream has a version".into()
    })?;
    let invalid = store.append("", ExpectedVersion::Any, [event("A", "")]);
    ensure(matches!(invalid, Err(Error::InvalidInput { .. })), || format!("empty stream id: {invalid:?}"))?;
    let empty = store.append("s", ExpectedVersion::Any, []);
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
pub fn idempotent_retries(make_store: MakeStore<'_>) -> Check {
    let store = make_store();
    let batch = || [event("A", "a").with_id(1), event("B", "b").with_id(2)];
    let first = step(store.append("s", ExpectedVersion::NoStream, batch()), "first")?;
    let retry = step(store.append("s", ExpectedVersion::NoStream, batch()), "retry under NoStream")?;
    ensure(retry == first, || format!("retry returned {retry:?}, first {first:?}"))?;
    step(store.append("s", ExpectedVersion::Exact(1), [event("C", "c").with_id(3)]), "next")?;
    let late = step(store.append("s", ExpectedVersion::NoStream, batch()), "late retry under NoStream")?;
    ensure(late == first, || format!("late retry returned {late:?}"))?;
    let any = step(store.append("s", ExpectedVersion::Any, [event("C", "c").with_id(3)]), "retry under Any")?;
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
pub fn multi_stream_appends(make_store: MakeStore<'_>) -> Check {
    let store = make_store();
    step(store.append("a", ExpectedVersion::Any, [event("T", "a0")]), "seed")?;
    let results = step(
        store.append_multi([
            StreamAppend::new("a", ExpectedVersion::Exact(0), [event("T", "a1")]),
            StreamAppend::new("b", ExpectedVersion::NoStream, [event("T", "b0"), event("T", "b1")]),
        ]),
        "append_multi",
    )?;
    ensure(results.len() == 2 && results[1].first_position == results[0].last_position + 1, || {
        format!("positions not contiguous: {results:?}")
    })?;
    let refused = store.append_multi([
        StreamAppend::new("c", ExpectedVersion::Any, [event("T", "c0")]),
        StreamAppend::new("b", ExpectedVersion::NoStream, [event("T", "b2")]),
    ]);
    ensure(matches!(refused, Err(Error::WrongExpectedVersion { .. })), || format!("bad part: {refused:?}"))?;
    ensure(step(store.stream_version("c"), "stream_version")?.is_none(), || {
        "a refused multi-append wrote part c".into()
    })?;
    ensure(step(store.streams(), "streams")? == ["a", "b"], || "streams()".into())
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
pub fn reads(make_store: MakeStore<'_>) -> Check {
    let store = make_store();
    for i in 0..30u32 {
        let stream = if i % 3 == 0 { "x" } else { "y" };
        let data = format!("{i}");
        step(store.append(stream, ExpectedVersion::Any, [event("T", &data).with_metadata("m")]), "append")?;
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
    let newest = step(step(store.read_all_backward(None), "read_all_backward")?.next().transpose(), "item")?;
    ensure(newest.is_some_and(|e| e.position == 29), || "read_all_backward starts at the end".into())?;
    ensure(stream_events(&store, "missing", 0)?.is_empty(), || "missing stream reads events".into())?;
    let info = step(store.stream_info("y"), "stream_info")?;
    ensure(info.is_some_and(|i| i.first_version == 0 && i.last_version == 19), || format!("stream_info {info:?}"))
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
pub fn snapshots(make_store: MakeStore<'_>) -> Check {
    let store = make_store();
    ensure(step(store.load_snapshot("s"), "load")?.is_none(), || "snapshot of a missing stream".into())?;
    step(store.append("s", ExpectedVersion::Any, (0..5).map(|i| event("T", &i.to_string()))), "append")?;
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
pub fn deletion(make_store: MakeStore<'_>) -> Check {
    let store = make_store();
    step(store.append("d", ExpectedVersion::Any, [event("T", "0"), event("T", "1")]), "append")?;
    step(store.append("keep", ExpectedVersion::Any, [event("T", "k")]), "append")?;
    let wrong = store.delete_stream("d", ExpectedVersion::Exact(0));
    ensure(matches!(wrong, Err(Error::WrongExpectedVersion { .. })), || format!("stale delete: {wrong:?}"))?;
    let missing = store.delete_stream("typo", ExpectedVersion::StreamExists);
    ensure(matches!(missing, Err(Error::WrongExpectedVersion { .. })), || format!("guarded delete: {missing:?}"))?;
    step(store.delete_stream("d", ExpectedVersion::Exact(1)), "delete")?;
    let read = store.read_stream("d", 0).map(|_| ());
    ensure(matches!(read, Err(Error::StreamDeleted { .. })), || format!("read after delete: {read:?}"))?;
    let append = store.append("d", ExpectedVersion::Any, [event("T", "again")]);
    ensure(matches!(append, Err(Error::StreamDeleted { .. })), || format!("append after delete: {append:?}"))?;
    let snapshot = store.load_snapshot("d");
    ensure(matches!(snapshot, Err(Error::StreamDeleted { .. })), || format!("snapshot after delete: {snapshot:?}"))?;
    ensure(step(store.streams(), "streams")? == ["keep"], || "deleted stream still listed".into())
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
