//! `Options::coalesce_writes` under `Durability::Buffered`: appends are acknowledged before
//! they are written and written many per `write` call, by size, by the window's timer, and
//! before any other call; readers in the process still see every acknowledged append; a
//! process crash loses at most the unwritten ones (whole appends, a suffix); a failed
//! deferred write poisons the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle::{Durability, Error, ExpectedVersion, Filter, NewEvent, Options, Store};
use chronicle_testkit::{InjectedError, SimStorage};

mod common;

const DIR: &str = "/coalesce-db";

/// A window longer than any test: only size and other calls write.
const LONG_WINDOW: Duration = Duration::from_secs(3600);

fn options(window: Duration) -> Options {
    Options::default().durability(Durability::Buffered).coalesce_writes(window)
}

fn open(sim: &SimStorage, window: Duration) -> Store {
    Store::open_with_storage(DIR, options(window), Arc::new(sim.clone())).expect("open")
}

fn append(store: &Store, stream: &str, data: &str) {
    store.append(stream, ExpectedVersion::Any, [NewEvent::new("T", data.to_owned())]).expect("append");
}

#[test]
fn appends_wait_in_memory_and_the_next_read_writes_them_in_one_call() {
    let sim = SimStorage::new();
    let store = open(&sim, LONG_WINDOW);
    let calls_before = sim.calls();
    for i in 0..100 {
        append(&store, "s", &i.to_string());
    }
    assert_eq!(sim.calls(), calls_before, "no I/O call while the appends coalesce");
    // A read sees every acknowledged append: it writes them first, with one write.
    assert_eq!(store.stream_version("s").expect("version"), Some(99));
    assert_eq!(sim.calls(), calls_before + 1, "one write for 100 appends");
    let data: Vec<_> =
        common::read_stream(&store, "s").iter().map(|e| String::from_utf8_lossy(&e.data).into_owned()).collect();
    assert_eq!(data, (0..100).map(|i| i.to_string()).collect::<Vec<_>>());
    store.close().expect("close");
    let reopened = open(&sim, LONG_WINDOW);
    assert_eq!(reopened.stream_version("s").expect("version"), Some(99), "close writes and syncs them");
}

#[test]
fn a_full_buffer_is_written_without_waiting_for_a_read() {
    let sim = SimStorage::new();
    let store = open(&sim, LONG_WINDOW);
    let calls_before = sim.calls();
    let data = "x".repeat(1000);
    // Well over COALESCED_BYTES_MAX in all.
    let appends = 2 * chronicle::COALESCED_BYTES_MAX / data.len();
    for _ in 0..appends {
        append(&store, "s", &data);
    }
    let writes = sim.calls() - calls_before;
    assert!(writes >= 1, "the size limit must write without a read");
    assert!(writes <= 3, "{writes} writes for {appends} appends: they must coalesce");
}

#[test]
fn the_window_writes_them_when_nothing_else_does_and_wakes_subscribers() {
    let sim = SimStorage::new();
    let store = open(&sim, Duration::from_millis(5));
    // Subscribed (and caught up) before the append: it waits live.
    let mut subscription = store.subscribe(0, Filter::all()).expect("subscribe");
    assert!(subscription.recv_timeout(Duration::ZERO).expect("nothing yet").is_none());
    let calls_before = sim.calls();
    append(&store, "s", "timed");
    let started = Instant::now();
    while sim.calls() == calls_before {
        assert!(started.elapsed() < Duration::from_secs(20), "the window's timer never wrote the append");
        std::thread::sleep(Duration::from_millis(1));
    }
    let delivered = subscription.recv_timeout(Duration::from_secs(20)).expect("recv").expect("an event");
    assert_eq!(&delivered.data[..], b"timed");
}

#[test]
fn a_process_crash_loses_only_the_unwritten_appends_a_suffix_of_whole_ones() {
    let sim = SimStorage::new();
    let store = open(&sim, LONG_WINDOW);
    for i in 0..10 {
        append(&store, "s", &i.to_string());
    }
    assert_eq!(store.stream_version("s").expect("read writes them"), Some(9));
    for i in 10..20 {
        append(&store, "s", &i.to_string());
    }
    // The process dies: nothing more reaches the storage (the OS keeps what was written).
    sim.stop_at(sim.calls() + 1);
    drop(store);
    sim.clear_faults();
    let reopened = open(&sim, LONG_WINDOW);
    let data: Vec<_> =
        common::read_stream(&reopened, "s").iter().map(|e| String::from_utf8_lossy(&e.data).into_owned()).collect();
    assert_eq!(data, (0..10).map(|i| i.to_string()).collect::<Vec<_>>(), "written ones kept, unwritten ones lost");
}

#[test]
fn a_failed_deferred_write_poisons_the_store_and_the_read_reports_it() {
    let sim = SimStorage::new();
    let store = open(&sim, LONG_WINDOW);
    append(&store, "s", "lost");
    sim.fail_from(sim.calls() + 1, InjectedError::Io);
    let read = store.stream_version("s");
    assert!(matches!(read, Err(Error::Poisoned { .. })), "{read:?}");
    sim.clear_faults();
    let later = store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "refused")]);
    assert!(matches!(later, Err(Error::Poisoned { .. })), "{later:?}");
    // Reads work on a poisoned store; the lost append is not there.
    assert_eq!(store.stream_version("s").expect("read"), None);
}

#[test]
fn expected_versions_and_retries_see_the_coalesced_appends() {
    let sim = SimStorage::new();
    let store = open(&sim, LONG_WINDOW);
    let first = store.append("s", ExpectedVersion::NoStream, [NewEvent::new("T", "a").with_id(1)]).expect("first");
    let next = store.append("s", ExpectedVersion::Exact(0), [NewEvent::new("T", "b")]).expect("exact");
    assert_eq!(next.first_version, 1);
    let wrong = store.append("s", ExpectedVersion::Exact(0), [NewEvent::new("T", "c")]);
    assert!(matches!(wrong, Err(Error::WrongExpectedVersion { actual: Some(1), .. })), "{wrong:?}");
    let retry = store.append("s", ExpectedVersion::NoStream, [NewEvent::new("T", "a").with_id(1)]).expect("retry");
    assert_eq!(retry, first, "a retry of a coalesced append is recognised");
    assert_eq!(store.stream_version("s").expect("version"), Some(1));
}

#[test]
fn coalescing_is_refused_outside_buffered_and_with_a_zero_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    for options in [
        Options::default().coalesce_writes(Duration::from_millis(1)),
        Options::default().durability(Durability::Periodic(Duration::from_millis(5))).coalesce_writes(LONG_WINDOW),
        Options::default().durability(Durability::Buffered).coalesce_writes(Duration::ZERO),
    ] {
        let refused = Store::open_with(dir.path(), options);
        assert!(matches!(refused, Err(Error::InvalidInput { .. })), "{refused:?}");
    }
}

#[test]
fn the_conformance_suite_passes_with_coalesced_writes() {
    use chronicle_testkit::conformance;
    let make = || Store::open_in_memory_with(options(LONG_WINDOW)).expect("open");
    conformance::run_shared(&make).unwrap();
    for (name, check) in conformance::STORE_CHECKS {
        check(&make).map_err(|reason| format!("{name}: {reason}")).unwrap();
    }
    // A subscription already waiting sees a coalesced append up to the window later (the
    // documented visibility rule): the follow checks run with a short window, not an hour.
    let make = || Store::open_in_memory_with(options(Duration::from_millis(2))).expect("open");
    conformance::run_follow(&make).unwrap();
}
