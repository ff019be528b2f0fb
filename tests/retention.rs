//! Proves each retention rule: compaction discards exactly the events the rule releases,
//! never a stream's last event; settings persist across reopen; reading a trimmed stream
//! starts at its first remaining version and `read_stream(s, 0)` does not error.

use std::time::Duration;

use chronicle::{ExpectedVersion, NewEvent, Options, Retention, Store};

fn versions(store: &Store, stream: &str) -> Vec<u64> {
    store.read_stream(stream, 0).unwrap().map(|e| e.unwrap().version).collect()
}

fn fill(store: &Store, stream: &str, count: u64) {
    store
        .append(stream, ExpectedVersion::Any, (0..count).map(|i| NewEvent::new("T", i.to_le_bytes().to_vec())))
        .unwrap();
}

#[test]
fn keep_all_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, "s", 10);
    assert_eq!(store.compact().unwrap().events_removed, 0);
    assert_eq!(versions(&store, "s"), (0..10).collect::<Vec<_>>());
}

#[test]
fn max_count_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, "s", 10);
    fill(&store, "other", 10);
    store.set_stream_retention("s", Retention::MaxCount(4)).unwrap();
    let report = store.compact().unwrap();
    assert_eq!(report.events_removed, 6);
    assert_eq!(versions(&store, "s"), [6, 7, 8, 9]);
    assert_eq!(versions(&store, "other").len(), 10);
    assert_eq!(store.stream_version("s").unwrap(), Some(9));
    // Appends continue from the last version.
    store.append("s", ExpectedVersion::Exact(9), [NewEvent::new("T", "")]).unwrap();
}

#[test]
fn max_count_zero_still_keeps_the_last_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, "s", 5);
    store.set_stream_retention("s", Retention::MaxCount(0)).unwrap();
    store.compact().unwrap();
    assert_eq!(versions(&store, "s"), [4]);
}

#[test]
fn before_snapshot_discards_covered_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, "s", 10);
    store.set_stream_retention("s", Retention::BeforeSnapshot).unwrap();
    // No snapshot yet: nothing to discard.
    assert_eq!(store.compact().unwrap().events_removed, 0);
    store.save_snapshot("s", 5, b"state").unwrap();
    assert_eq!(store.compact().unwrap().events_removed, 6);
    assert_eq!(versions(&store, "s"), [6, 7, 8, 9]);
    assert_eq!(store.load_snapshot("s").unwrap().unwrap().version, 5);
}

#[test]
fn max_age_discards_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, "s", 5);
    // Margins of a second either side: a loaded machine can take tens of milliseconds
    // between an append and the compaction that judges its age.
    std::thread::sleep(Duration::from_secs(2));
    fill(&store, "s", 3);
    store.set_stream_retention("s", Retention::MaxAge(Duration::from_secs(1))).unwrap();
    assert_eq!(store.compact().unwrap().events_removed, 5);
    assert_eq!(versions(&store, "s"), [5, 6, 7]);
    std::thread::sleep(Duration::from_millis(1100));
    // Everything is old now, but the last event stays.
    store.compact().unwrap();
    assert_eq!(versions(&store, "s"), [7]);
}

#[test]
fn settings_and_store_default_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, "a", 6);
    fill(&store, "b", 6);
    store.set_stream_retention("a", Retention::MaxCount(2)).unwrap();
    store.set_stream_retention("b", Retention::KeepAll).unwrap();
    store.close().unwrap();
    let store = Store::open_with(dir.path(), Options::default().retention(Retention::MaxCount(1))).unwrap();
    fill(&store, "c", 6);
    store.compact().unwrap();
    assert_eq!(versions(&store, "a"), [4, 5]);
    assert_eq!(versions(&store, "b").len(), 6, "explicit KeepAll overrides the store default");
    assert_eq!(versions(&store, "c"), [5], "store default applies to streams without a rule");
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(versions(&store, "a"), [4, 5]);
    assert_eq!(store.read_stream("a", 0).unwrap().next().unwrap().unwrap().version, 4);
    assert_eq!(store.read_stream_backward("a", None).unwrap().count(), 2);
}

#[test]
fn stream_info_reports_where_a_trimmed_stream_starts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.stream_info("s").unwrap(), None);
    fill(&store, "s", 10);
    let info = store.stream_info("s").unwrap().unwrap();
    assert_eq!((info.first_version, info.last_version), (0, 9));

    store.set_stream_retention("s", Retention::MaxCount(3)).unwrap();
    store.compact().unwrap();
    let info = store.stream_info("s").unwrap().unwrap();
    assert_eq!((info.first_version, info.last_version), (7, 9));
    assert_eq!(versions(&store, "s").first(), Some(&info.first_version));

    // Kept across reopen; the last event is always kept.
    store.set_stream_retention("s", Retention::MaxCount(0)).unwrap();
    store.compact().unwrap();
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let info = store.stream_info("s").unwrap().unwrap();
    assert_eq!((info.first_version, info.last_version), (9, 9));

    store.delete_stream("s", ExpectedVersion::Any).unwrap();
    assert!(matches!(store.stream_info("s"), Err(chronicle::Error::StreamDeleted { .. })));
    assert!(matches!(store.stream_info(""), Err(chronicle::Error::InvalidInput { .. })));
}
