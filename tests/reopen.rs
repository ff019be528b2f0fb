//! Proves that everything appended survives closing (or dropping) and reopening the store in
//! every durability mode, that versions and positions continue after a reopen, and that
//! missing or corrupt index files are rebuilt from the segments with identical reads.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use chronicle::{Durability, ExpectedVersion, NewEvent, Options, RecordedEvent, Store, StreamAppend};
use common::{index_files, read_all, read_all_backward, read_stream, segment_files};

const STREAMS: [&str; 4] = ["order-1", "order-2", "customer-7", "inventory"];

/// Appends `batches` batches spread over [`STREAMS`], some with every optional field.
fn fill(store: &Store, batches: u64) {
    for batch in 0..batches {
        let stream = STREAMS[(batch % STREAMS.len() as u64) as usize];
        let events = (0..=batch % 3).map(|i| {
            let event =
                NewEvent::new(format!("Type{i}"), format!("batch {batch} event {i} {}", "x".repeat(i as usize * 40)));
            if batch % 2 == 0 {
                event.with_metadata(format!("meta {batch}")).with_correlation_id(batch.into()).with_causation_id(7)
            } else {
                event
            }
        });
        store.append(stream, ExpectedVersion::Any, events).unwrap();
    }
    store
        .append_multi([
            StreamAppend::new("order-1", ExpectedVersion::Any, [NewEvent::new("Multi", "a")]),
            StreamAppend::new("order-2", ExpectedVersion::Any, [NewEvent::new("Multi", "b")]),
        ])
        .unwrap();
}

/// Everything a reader can observe: all events forward and backward, each stream's
/// events, stream versions and the stream list.
#[derive(Debug, PartialEq)]
struct Observed {
    all: Vec<RecordedEvent>,
    all_backward: Vec<RecordedEvent>,
    streams: Vec<String>,
    per_stream: Vec<(Vec<RecordedEvent>, Option<u64>)>,
}

fn observe(store: &Store) -> Observed {
    let streams = store.streams().unwrap();
    let per_stream = streams.iter().map(|s| (read_stream(store, s), store.stream_version(s).unwrap())).collect();
    Observed { all: read_all(store), all_backward: read_all_backward(store), streams, per_stream }
}

/// Appends once more after a reopen and checks that versions and positions continue.
fn assert_continues(store: &Store, before: &Observed) {
    let next_position = before.all.len() as u64;
    let last_version = store.stream_version("order-1").unwrap().unwrap();
    let result = store.append("order-1", ExpectedVersion::Exact(last_version), [NewEvent::new("After", "")]).unwrap();
    assert_eq!((result.first_version, result.first_position), (last_version + 1, next_position));
    let fresh = store.append("brand-new", ExpectedVersion::NoStream, [NewEvent::new("First", "")]).unwrap();
    assert_eq!((fresh.first_version, fresh.first_position), (0, next_position + 1));
}

#[test]
fn close_and_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, 30);
    let before = observe(&store);
    store.close().unwrap();

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(observe(&store), before);
    assert_continues(&store, &before);
    let after = observe(&store);
    store.close().unwrap();
    // A second round trip, now starting from a store that was itself reopened.
    assert_eq!(observe(&Store::open(dir.path()).unwrap()), after);
}

#[test]
fn drop_and_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, 30);
    let before = observe(&store);
    let clone = store.clone();
    drop(store);
    drop(clone);

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(observe(&store), before);
    assert_continues(&store, &before);
}

#[test]
fn every_durability_mode_survives_close_and_drop() {
    let modes = [Durability::Sync, Durability::Periodic(Duration::from_millis(5)), Durability::Buffered];
    for mode in modes {
        for close_explicitly in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_with(dir.path(), Options::default().durability(mode)).unwrap();
            fill(&store, 20);
            let before = observe(&store);
            if close_explicitly {
                store.close().unwrap();
            } else {
                drop(store);
            }
            // Reopen in another mode: the mode is not a property of the files.
            let store = Store::open_with(dir.path(), Options::default().durability(Durability::Buffered)).unwrap();
            assert_eq!(observe(&store), before, "{mode:?}, close_explicitly={close_explicitly}");
            assert_continues(&store, &before);
        }
    }
}

#[test]
fn sync_then_drop_keeps_buffered_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().durability(Durability::Buffered)).unwrap();
    fill(&store, 10);
    store.sync().unwrap();
    let before = observe(&store);
    drop(store);
    assert_eq!(observe(&Store::open(dir.path()).unwrap()), before);
}

/// A closed store with several sealed segments and an active one; returns what it held.
fn multi_segment_store(dir: &Path) -> Observed {
    let store = Store::open_with(dir, Options::default().segment_bytes(4096)).unwrap();
    fill(&store, 120);
    let observed = observe(&store);
    store.close().unwrap();
    assert!(segment_files(dir).len() >= 5, "test needs several segments, got {}", segment_files(dir).len());
    assert_eq!(index_files(dir).len(), segment_files(dir).len(), "a clean close leaves an index for every segment");
    observed
}

fn reopen_small(dir: &Path) -> Store {
    Store::open_with(dir, Options::default().segment_bytes(4096)).unwrap()
}

#[test]
fn missing_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let before = multi_segment_store(dir.path());
    for index in index_files(dir.path()) {
        fs::remove_file(index).unwrap();
    }
    let store = reopen_small(dir.path());
    assert_eq!(observe(&store), before);
    assert_continues(&store, &before);
    let after = observe(&store);
    store.close().unwrap();
    assert_eq!(index_files(dir.path()).len(), segment_files(dir.path()).len(), "index files are written again");
    assert_eq!(observe(&reopen_small(dir.path())), after);
}

#[test]
fn only_the_active_segments_index_missing() {
    let dir = tempfile::tempdir().unwrap();
    let before = multi_segment_store(dir.path());
    fs::remove_file(index_files(dir.path()).pop().unwrap()).unwrap();
    let store = reopen_small(dir.path());
    assert_eq!(observe(&store), before);
    assert_continues(&store, &before);
}

/// Ways to damage an index file.
fn damage(path: &Path, how: usize, other_index: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    match how {
        0 => bytes[middle] ^= 0x10,                        // a bit in the body
        1 => bytes[20] ^= 0x01,                            // a bit in the header
        2 => bytes.truncate(middle),                       // cut short
        3 => bytes.clear(),                                // empty
        4 => bytes.iter_mut().for_each(|b| *b = 0xff),     // overwritten
        5 => bytes.extend_from_slice(b"trailing garbage"), // grown
        6 => bytes = fs::read(other_index).unwrap(),       // another segment's valid index
        _ => unreachable!(),
    }
    fs::write(path, bytes).unwrap();
}

#[test]
fn corrupt_index_files_are_rebuilt_with_identical_reads() {
    let original = tempfile::tempdir().unwrap();
    let before = multi_segment_store(original.path());
    let index_count = index_files(original.path()).len();
    for how in 0..7 {
        // Damage a sealed segment's index, the active segment's index, and all of them.
        for target in [Some(1), Some(index_count - 1), None] {
            let dir = tempfile::tempdir().unwrap();
            common::copy_store_dir(original.path(), dir.path());
            let indexes = index_files(dir.path());
            let other = indexes[0].clone();
            let targets: Vec<_> = match target {
                Some(i) => vec![indexes[i].clone()],
                None => indexes[1..].to_vec(),
            };
            for path in &targets {
                damage(path, how, &other);
            }
            let store = reopen_small(dir.path());
            assert_eq!(observe(&store), before, "damage {how} to {target:?}");
            assert_continues(&store, &before);
        }
    }
}

#[test]
fn leftover_temporary_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let before = multi_segment_store(dir.path());
    let leftover = dir.path().join("segment-0000000000000001.idx.tmp");
    fs::write(&leftover, b"half an index").unwrap();
    let store = reopen_small(dir.path());
    assert_eq!(observe(&store), before);
    assert!(!leftover.exists());
}

#[test]
fn reopen_with_a_different_segment_size() {
    let dir = tempfile::tempdir().unwrap();
    let before = multi_segment_store(dir.path());
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(observe(&store), before);
    assert_continues(&store, &before);
}

#[test]
fn stale_active_index_checkpoint_is_extended_by_scanning() {
    // Close, reopen, append more, then "crash" before the next checkpoint: the active
    // segment's index file covers only a prefix of it and the rest must be scanned.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, 10);
    store.close().unwrap();
    let checkpoint = index_files(dir.path()).pop().unwrap();
    let stale = fs::read(&checkpoint).unwrap();

    let store = Store::open(dir.path()).unwrap();
    fill(&store, 10);
    let before = observe(&store);
    store.close().unwrap();
    fs::write(&checkpoint, stale).unwrap();

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(observe(&store), before);
    assert_continues(&store, &before);
}
