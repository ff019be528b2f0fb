//! Adversarial retention: MaxCount(1) and extreme values, MaxAge on events still in the
//! active segment, BeforeSnapshot with a corrupt newest snapshot (before and after
//! compaction), rules set before a stream exists, a damaged `retention.tbl`, and idempotent
//! retries whose original events retention already removed.

mod common;

use std::path::Path;
use std::time::Duration;

use chronicle::{Error, ExpectedVersion, NewEvent, Options, Retention, Store};

use common::{files_ending_with, flip_bit, read_stream};

fn versions(store: &Store, stream: &str) -> Vec<u64> {
    read_stream(store, stream).iter().map(|e| e.version).collect()
}

fn fill(store: &Store, stream: &str, from: u64, to: u64) {
    for i in from..to {
        store.append(stream, ExpectedVersion::Any, [NewEvent::new("T", format!("{stream}-{i}"))]).unwrap();
    }
}

fn small_segments() -> Options {
    Options::default().segment_bytes(4096)
}

#[test]
fn max_count_one_keeps_only_the_last_event_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    fill(&store, "s", 0, 150);
    fill(&store, "other", 0, 5);
    store.set_stream_retention("s", Retention::MaxCount(1)).unwrap();
    assert_eq!(store.compact().unwrap().events_removed, 149);
    let check = |store: &Store| {
        assert_eq!(versions(store, "s"), [149]);
        assert_eq!(store.read_stream("s", 0).unwrap().count(), 1, "read_stream(s, 0) starts at the first kept version");
        assert_eq!(store.read_stream("s", 100).unwrap().count(), 1);
        assert_eq!(store.read_stream("s", 150).unwrap().count(), 0);
        assert_eq!(store.read_stream_backward("s", Some(148)).unwrap().count(), 0);
        assert_eq!(
            store.read_stream_backward("s", None).unwrap().map(|e| e.unwrap().version).collect::<Vec<_>>(),
            [149]
        );
        assert_eq!(store.stream_version("s").unwrap(), Some(149));
        assert_eq!(versions(store, "other"), [0, 1, 2, 3, 4]);
    };
    check(&store);
    store.close().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    check(&store);
    assert!(matches!(
        store.append("s", ExpectedVersion::Exact(148), [NewEvent::new("T", "")]),
        Err(Error::WrongExpectedVersion { actual: Some(149), .. })
    ));
    store.append("s", ExpectedVersion::Exact(149), [NewEvent::new("T", "")]).unwrap();
    store.compact().unwrap();
    assert_eq!(versions(&store, "s"), [150]);
}

#[test]
fn extreme_rule_values_discard_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, "count", 0, 10);
    fill(&store, "age", 0, 10);
    store.set_stream_retention("count", Retention::MaxCount(u64::MAX)).unwrap();
    store.set_stream_retention("age", Retention::MaxAge(Duration::MAX)).unwrap();
    assert_eq!(store.compact().unwrap().events_removed, 0);
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.compact().unwrap().events_removed, 0, "the rules read back from retention.tbl");
    assert_eq!(versions(&store, "count").len(), 10);
    assert_eq!(versions(&store, "age").len(), 10);
}

#[test]
fn max_age_applies_to_events_still_in_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    // Default segment size: nothing is sealed before compact() seals it.
    let store = Store::open(dir.path()).unwrap();
    fill(&store, "s", 0, 6);
    // The old events are at least 2 s old at compaction; the young ones have a whole second
    // to be compacted before they age out too (a loaded CI machine once took over 50 ms).
    std::thread::sleep(Duration::from_secs(2));
    fill(&store, "s", 6, 8);
    store.set_stream_retention("s", Retention::MaxAge(Duration::from_secs(1))).unwrap();
    assert_eq!(store.compact().unwrap().events_removed, 6);
    assert_eq!(versions(&store, "s"), [6, 7]);
}

fn snapshot_files(dir: &Path) -> Vec<std::path::PathBuf> {
    files_ending_with(dir, ".snap")
}

/// A store with "s" at versions 0..=9, snapshots at 3 and 7, rule BeforeSnapshot.
fn store_with_two_snapshots(dir: &Path) -> Store {
    let store = Store::open(dir).unwrap();
    fill(&store, "s", 0, 10);
    store.set_stream_retention("s", Retention::BeforeSnapshot).unwrap();
    store.save_snapshot("s", 3, b"state-3").unwrap();
    store.save_snapshot("s", 7, b"state-7").unwrap();
    store
}

fn corrupt_newest_snapshot(dir: &Path) {
    let files = snapshot_files(dir);
    assert_eq!(files.len(), 2);
    // Names end with the version in fixed-width hex: the last one is the newest.
    flip_bit(files.last().unwrap(), 45, 2);
}

#[test]
fn before_snapshot_with_a_corrupt_newest_snapshot_uses_the_valid_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_snapshots(dir.path());
    corrupt_newest_snapshot(dir.path());
    assert_eq!(store.load_snapshot("s").unwrap().unwrap().version, 3);
    assert_eq!(store.compact().unwrap().events_removed, 4);
    // The fallback snapshot plus the remaining events rebuild the stream.
    let snapshot = store.load_snapshot("s").unwrap().unwrap();
    assert_eq!((snapshot.version, &snapshot.data[..]), (3, &b"state-3"[..]));
    assert_eq!(versions(&store, "s"), [4, 5, 6, 7, 8, 9]);
    assert_eq!(store.read_stream("s", snapshot.version + 1).unwrap().next().unwrap().unwrap().version, 4);
}

/// The store keeps two snapshots so that a damaged newest one falls back to the previous
/// one; once BeforeSnapshot discarded the events after the previous one, that fallback would
/// rebuild a wrong state, so the damage is reported instead of the fallback being returned.
#[test]
fn a_fallback_snapshot_without_its_events_is_refused_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_snapshots(dir.path());
    store.compact().unwrap();
    corrupt_newest_snapshot(dir.path());
    match store.load_snapshot("s") {
        Err(Error::Corruption { file, .. }) => assert!(file.to_string_lossy().ends_with(".snap")),
        other => panic!("expected Corruption for the damaged snapshot, got {other:?}"),
    }
}

#[test]
fn a_rule_set_before_the_stream_exists_applies_once_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.set_stream_retention("future", Retention::MaxCount(2)).unwrap();
    assert_eq!(store.streams().unwrap(), Vec::<String>::new(), "a rule does not create the stream");
    assert_eq!(store.stream_version("future").unwrap(), None);
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, "future", 0, 6);
    store.compact().unwrap();
    assert_eq!(versions(&store, "future"), [4, 5]);
}

#[test]
fn rules_for_deleted_or_invalid_streams_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, "gone", 0, 1);
    store.delete_stream("gone", ExpectedVersion::Any).unwrap();
    assert!(matches!(store.set_stream_retention("gone", Retention::MaxCount(1)), Err(Error::StreamDeleted { .. })));
    assert!(matches!(store.set_stream_retention("", Retention::MaxCount(1)), Err(Error::InvalidInput { .. })));
    let long = "x".repeat(chronicle::STREAM_ID_BYTES_MAX + 1);
    assert!(matches!(store.set_stream_retention(&long, Retention::MaxCount(1)), Err(Error::InvalidInput { .. })));
    assert!(!dir.path().join("retention.tbl").exists(), "a refused rule writes nothing");
}

#[test]
fn a_damaged_retention_table_is_corruption_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, "s", 0, 3);
    store.set_stream_retention("s", Retention::MaxCount(1)).unwrap();
    store.set_stream_retention("t", Retention::MaxAge(Duration::from_secs(60))).unwrap();
    store.close().unwrap();
    let table = dir.path().join("retention.tbl");
    let good = std::fs::read(&table).unwrap();
    let mut damaged: Vec<(String, Vec<u8>)> = Vec::new();
    for offset in [0, 8, 12, 16, 18, 20, good.len() - 5, good.len() - 1] {
        let mut bytes = good.clone();
        bytes[offset] ^= 0x04;
        damaged.push((format!("bit flip at {offset}"), bytes));
    }
    damaged.push(("truncated".into(), good[..good.len() - 3].to_vec()));
    damaged.push(("empty".into(), Vec::new()));
    damaged.push(("extended".into(), [good.as_slice(), &[0u8; 8]].concat()));
    for (label, bytes) in damaged {
        std::fs::write(&table, &bytes).unwrap();
        match Store::open(dir.path()) {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, table, "{label}"),
            other => panic!("{label}: expected Corruption naming retention.tbl, got {other:?}"),
        }
    }
    std::fs::write(&table, &good).unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.compact().unwrap();
    assert_eq!(versions(&store, "s"), [2]);
}

fn with_ids(first_id: u128, count: u128) -> Vec<NewEvent> {
    (first_id..first_id + count).map(|id| NewEvent::new("T", id.to_le_bytes().to_vec()).with_id(id)).collect()
}

#[test]
fn idempotent_retry_after_retention_removed_the_original_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = store.append("s", ExpectedVersion::NoStream, with_ids(100, 3)).unwrap();
    let second = store.append("s", ExpectedVersion::Exact(2), with_ids(200, 2)).unwrap();
    store.set_stream_retention("s", Retention::MaxCount(1)).unwrap();
    store.compact().unwrap();
    assert_eq!(versions(&store, "s"), [4]);
    // The first batch is gone: a retry cannot be recognised, and must not be appended again.
    let retry = store.append("s", ExpectedVersion::NoStream, with_ids(100, 3));
    assert!(matches!(retry, Err(Error::WrongExpectedVersion { actual: Some(4), .. })), "{retry:?}");
    // Half of the second batch is gone: not provably the same append either.
    let retry = store.append("s", ExpectedVersion::Exact(2), with_ids(200, 2));
    assert!(matches!(retry, Err(Error::WrongExpectedVersion { actual: Some(4), .. })), "{retry:?}");
    assert_eq!(store.stream_version("s").unwrap(), Some(4), "nothing was written");
    // The part still present is recognised as a retry.
    store.set_stream_retention("s", Retention::KeepAll).unwrap();
    let third = store.append("s", ExpectedVersion::Exact(4), with_ids(300, 2)).unwrap();
    store.set_stream_retention("s", Retention::MaxCount(2)).unwrap();
    store.compact().unwrap();
    assert_eq!(store.append("s", ExpectedVersion::Exact(4), with_ids(300, 2)).unwrap(), third);
    assert_eq!(store.stream_version("s").unwrap(), Some(6));
    let _ = (first, second);
}
