//! Adversarial deletion: deleting a stream that was never written, deletes racing appends
//! under exact expectations, append_multi refused whole when one stream is deleted (and no
//! position consumed), idempotent retries against a deleted stream, and compaction removing
//! every snapshot file of a deleted stream, damaged ones included, and nobody else's.

mod common;

use std::sync::{Arc, Barrier};

use chronicle::{AppendResult, Error, ExpectedVersion, NewEvent, Store, StreamAppend};

use common::{files_ending_with, read_all, read_stream};

fn is_deleted<T: std::fmt::Debug>(result: Result<T, Error>) -> bool {
    matches!(result, Err(Error::StreamDeleted { .. }))
}

#[test]
fn deleting_a_stream_that_was_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let wrong = store.delete_stream("never", ExpectedVersion::Exact(0));
    assert!(matches!(wrong, Err(Error::WrongExpectedVersion { actual: None, .. })), "{wrong:?}");
    let wrong = store.delete_stream("never", ExpectedVersion::StreamExists);
    assert!(matches!(wrong, Err(Error::WrongExpectedVersion { actual: None, .. })), "{wrong:?}");
    assert_eq!(store.stream_version("never").unwrap(), None, "failed deletes leave no trace");
    store.delete_stream("never", ExpectedVersion::NoStream).unwrap();
    store.append("other", ExpectedVersion::Any, [NewEvent::new("T", "")]).unwrap();
    let check = |store: &Store, label: &str| {
        assert!(is_deleted(store.stream_version("never")), "{label}");
        assert!(is_deleted(store.read_stream("never", 0)), "{label}");
        assert!(is_deleted(store.append("never", ExpectedVersion::NoStream, [NewEvent::new("T", "")])), "{label}");
        assert!(is_deleted(store.delete_stream("never", ExpectedVersion::Any)), "{label}");
        assert!(is_deleted(store.save_snapshot("never", 0, b"")), "{label}");
        assert_eq!(store.streams().unwrap(), ["other"], "{label}");
        assert_eq!(read_all(store).len(), 1, "{label}");
    };
    check(&store, "live");
    store.compact().unwrap();
    check(&store, "after compaction");
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    check(&store, "after reopen");
    assert_eq!(store.append("other", ExpectedVersion::Exact(0), [NewEvent::new("T", "")]).unwrap().first_position, 2);
}

#[test]
fn deletes_racing_exact_appends_never_lose_an_acknowledged_event() {
    const WRITERS: usize = 3;
    const ROUNDS: usize = 30;
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stream = "contended";
        store.append(stream, ExpectedVersion::NoStream, [NewEvent::new("T", "0")]).unwrap();
        let start = Arc::new(Barrier::new(WRITERS + 1));
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (store, start) = (store.clone(), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    let mut acknowledged: Vec<AppendResult> = Vec::new();
                    while let Ok(Some(last)) = store.stream_version(stream) {
                        match store.append(stream, ExpectedVersion::Exact(last), [NewEvent::new("T", "x")]) {
                            Ok(result) => acknowledged.push(result),
                            Err(Error::WrongExpectedVersion { .. }) => {}
                            Err(Error::StreamDeleted { .. }) => break,
                            Err(other) => panic!("{other:?}"),
                        }
                    }
                    acknowledged
                })
            })
            .collect();
        start.wait();
        // Delete at an exact version observed a moment ago; retry until one matches.
        let deleted_at = loop {
            let last = store.stream_version(stream).unwrap().unwrap();
            match store.delete_stream(stream, ExpectedVersion::Exact(last)) {
                Ok(()) => break last,
                Err(Error::WrongExpectedVersion { .. }) => {}
                Err(other) => panic!("{other:?}"),
            }
        };
        let mut versions: Vec<u64> =
            writers.into_iter().flat_map(|w| w.join().unwrap()).map(|r| r.first_version).collect();
        versions.sort_unstable();
        // Exactly the versions 1..=deleted_at were acknowledged, each once: none after the
        // tombstone, none lost before it.
        assert_eq!(versions, (1..=deleted_at).collect::<Vec<_>>(), "round {round}");
        assert!(is_deleted(store.read_stream(stream, 0)));
    }
}

#[test]
fn append_multi_with_a_deleted_stream_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("alive", ExpectedVersion::Any, [NewEvent::new("T", "a0")]).unwrap();
    store.append("dead", ExpectedVersion::Any, [NewEvent::new("T", "d0")]).unwrap();
    store.delete_stream("dead", ExpectedVersion::Exact(0)).unwrap();
    for order in [["alive", "dead", "fresh"], ["fresh", "alive", "dead"], ["dead", "fresh", "alive"]] {
        let parts = order.map(|stream| StreamAppend::new(stream, ExpectedVersion::Any, [NewEvent::new("T", "x")]));
        let refused = store.append_multi(parts);
        assert!(matches!(&refused, Err(Error::StreamDeleted { stream }) if stream == "dead"), "{order:?}: {refused:?}");
    }
    assert_eq!(store.stream_version("alive").unwrap(), Some(0));
    assert_eq!(store.stream_version("fresh").unwrap(), None);
    assert_eq!(store.streams().unwrap(), ["alive"]);
    // No position was consumed by the refused batches: 0 alive, 1 dead, 2 tombstone.
    let next = store.append("alive", ExpectedVersion::Exact(0), [NewEvent::new("T", "a1")]).unwrap();
    assert_eq!(next.first_position, 3);
    // Deleted in the same commit group as the append_multi: still refused whole.
    store.append("soon", ExpectedVersion::Any, [NewEvent::new("T", "s0")]).unwrap();
    let racer = {
        let store = store.clone();
        std::thread::spawn(move || store.delete_stream("soon", ExpectedVersion::Any))
    };
    let multi = store.append_multi([
        StreamAppend::new("alive", ExpectedVersion::Any, [NewEvent::new("T", "a2")]),
        StreamAppend::new("soon", ExpectedVersion::Any, [NewEvent::new("T", "s1")]),
    ]);
    racer.join().unwrap().unwrap();
    match multi {
        Ok(results) => {
            // The batch went first: both parts are in, before the tombstone.
            assert_eq!(results.len(), 2);
            assert_eq!(store.stream_version("alive").unwrap(), Some(2));
        }
        Err(Error::StreamDeleted { .. }) => assert_eq!(store.stream_version("alive").unwrap(), Some(1)),
        Err(other) => panic!("{other:?}"),
    }
}

#[test]
fn idempotent_retry_against_a_deleted_stream_is_stream_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let events = || [NewEvent::new("T", "x").with_id(42)];
    store.append("s", ExpectedVersion::NoStream, events()).unwrap();
    store.delete_stream("s", ExpectedVersion::Exact(0)).unwrap();
    assert!(is_deleted(store.append("s", ExpectedVersion::NoStream, events())));
    store.compact().unwrap();
    assert!(is_deleted(store.append("s", ExpectedVersion::NoStream, events())));
}

#[test]
fn compaction_removes_every_snapshot_of_a_deleted_stream_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for stream in ["dead", "alive"] {
        store.append(stream, ExpectedVersion::Any, (0..5).map(|i| NewEvent::new("T", vec![i]))).unwrap();
        for version in [1, 2, 3] {
            store.save_snapshot(stream, version, format!("{stream}-snapshot-{version}").as_bytes()).unwrap();
        }
    }
    assert_eq!(files_ending_with(dir.path(), ".snap").len(), 4);
    // Damage the newest snapshot of "dead": invalid files that could be its own go too.
    let dead_newest = files_ending_with(dir.path(), ".snap")
        .into_iter()
        .find(|p| std::fs::read(p).unwrap().windows(15).any(|w| w == b"dead-snapshot-3"))
        .unwrap();
    common::flip_bit(&dead_newest, 42, 0);
    store.delete_stream("dead", ExpectedVersion::Any).unwrap();
    let report = store.compact().unwrap();
    assert_eq!(report.snapshots_removed, 2);
    let left = files_ending_with(dir.path(), ".snap");
    assert_eq!(left.len(), 2);
    for path in &left {
        assert!(!std::fs::read(path).unwrap().windows(13).any(|w| w == b"dead-snapshot"));
    }
    assert_eq!(&store.load_snapshot("alive").unwrap().unwrap().data[..], b"alive-snapshot-3");
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.load_snapshot("alive").unwrap().unwrap().version, 3);
    assert_eq!(read_stream(&store, "alive").len(), 5);
}
