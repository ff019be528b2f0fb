//! The stream-table checkpoint (`streams.chk`, written at a clean close) is a cache: the
//! stream table after every reopen equals the one rebuilt from the segments alone, whether
//! the checkpoint is current, stale (appends, deletions and a crash after it), counts bytes
//! recovery later cut off, is damaged, or describes segments compaction has replaced.

mod common;

use chronicle::{Durability, ExpectedVersion, NewEvent, Options, Store};
use std::collections::BTreeMap;
use std::path::Path;

const CHECKPOINT: &str = "streams.chk";

fn options() -> Options {
    Options::default().segment_bytes(4096)
}

/// Every stream's version as the store reports it, deleted streams as `None`.
fn table(store: &Store, streams: &[String]) -> BTreeMap<String, Option<u64>> {
    streams.iter().map(|s| (s.clone(), store.stream_version(s).ok().flatten())).collect()
}

fn names(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("stream-{i}")).collect()
}

/// Appends `rounds` events to each stream, round-robin, so every stream spans segments.
fn fill(store: &Store, streams: &[String], rounds: usize) {
    for round in 0..rounds {
        for stream in streams {
            store.append(stream, ExpectedVersion::Any, [NewEvent::new("E", format!("{stream} {round}"))]).unwrap();
        }
    }
}

/// The table as the segments alone say: opened without the checkpoint.
fn table_without_checkpoint(dir: &Path, streams: &[String]) -> BTreeMap<String, Option<u64>> {
    let copy = tempfile::tempdir().unwrap();
    common::copy_store_dir(dir, copy.path());
    let _ = std::fs::remove_file(copy.path().join(CHECKPOINT));
    let store = Store::open_with(copy.path(), options()).unwrap();
    table(&store, streams)
}

#[test]
fn a_clean_close_writes_a_checkpoint_the_next_open_agrees_with() {
    let dir = tempfile::tempdir().unwrap();
    let streams = names(20);
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store, &streams, 10);
    store.delete_stream(&streams[3], ExpectedVersion::Any).unwrap();
    let before = table(&store, &streams);
    store.close().unwrap();
    assert!(dir.path().join(CHECKPOINT).exists());
    assert!(common::segment_files(dir.path()).len() > 3, "the streams span several segments");
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(table(&store, &streams), before);
    assert_eq!(before[&streams[3]], None);
    drop(store);
    assert_eq!(table_without_checkpoint(dir.path(), &streams), before);
}

#[test]
fn a_stale_checkpoint_is_completed_by_what_was_appended_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let streams = names(12);
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store, &streams, 6);
    store.close().unwrap();
    let checkpoint = std::fs::read(dir.path().join(CHECKPOINT)).unwrap();
    // Appends (new segments too), a deletion and new streams after the checkpoint; then the
    // directory as a crash would leave it: copied while the store is open.
    let store = Store::open_with(dir.path(), options()).unwrap();
    let mut all = streams.clone();
    all.extend(names(16).into_iter().skip(12));
    fill(&store, &all, 3);
    store.delete_stream(&streams[0], ExpectedVersion::Any).unwrap();
    let expected = table(&store, &all);
    let crashed = tempfile::tempdir().unwrap();
    common::copy_store_dir(dir.path(), crashed.path());
    drop(store);
    assert_eq!(std::fs::read(crashed.path().join(CHECKPOINT)).unwrap(), checkpoint, "the stale one is in place");
    let store = Store::open_with(crashed.path(), options()).unwrap();
    assert_eq!(table(&store, &all), expected);
    assert_eq!(expected[&streams[0]], None);
}

#[test]
fn a_checkpoint_counting_bytes_that_recovery_cut_off_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let streams = names(3);
    let store = Store::open_with(dir.path(), Options::default().durability(Durability::Sync)).unwrap();
    fill(&store, &streams, 2);
    let before_last = table(&store, &streams);
    let active = common::segment_files(dir.path()).pop().unwrap();
    // The end of the log, not of the file: under Sync the active segment is zero-filled
    // ahead of its log while the store is open.
    let len_before_last = common::records_of(&active).last().map(|r| r.offset + r.len).unwrap();
    store.append(&streams[0], ExpectedVersion::Any, [NewEvent::new("Last", "x")]).unwrap();
    store.close().unwrap();
    // Damage, not a crash (close synced it all): the last commit group turns to zeros and the
    // segment's index checkpoint is lost, so the file is as long as the stream checkpoint
    // says, but recovery scans it and cuts the zeros off.
    std::fs::remove_file(active.with_extension("idx")).unwrap();
    let len = std::fs::metadata(&active).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&active).unwrap();
    file.set_len(len_before_last).unwrap();
    file.set_len(len + 100).unwrap();
    drop(file);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(table(&store, &streams), before_last);
}

#[test]
fn a_damaged_checkpoint_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let streams = names(8);
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store, &streams, 5);
    let before = table(&store, &streams);
    store.close().unwrap();
    let path = dir.path().join(CHECKPOINT);
    let mut bytes = std::fs::read(&path).unwrap();
    for at in [0, bytes.len() / 2, bytes.len() - 1] {
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let store = Store::open_with(dir.path(), options()).unwrap();
        assert_eq!(table(&store, &streams), before, "flipped byte {at}");
        drop(store);
        // The clean close rewrote it; damage it again.
        bytes = std::fs::read(&path).unwrap();
    }
}

#[test]
fn a_checkpoint_of_segments_compaction_replaced_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let streams = names(6);
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store, &streams, 8);
    store.close().unwrap();
    let stale = std::fs::read(dir.path().join(CHECKPOINT)).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    store.delete_stream(&streams[1], ExpectedVersion::Any).unwrap();
    store.seal().unwrap();
    let report = store.compact().unwrap();
    assert!(report.segments_rewritten > 0, "{report:?}");
    let expected = table(&store, &streams);
    store.close().unwrap();
    // Put back the checkpoint of the segments before compaction.
    std::fs::write(dir.path().join(CHECKPOINT), stale).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(table(&store, &streams), expected);
    assert_eq!(expected[&streams[1]], None);
}

#[test]
fn every_eighth_roll_writes_a_checkpoint_a_crash_image_starts_from() {
    let dir = tempfile::tempdir().unwrap();
    let streams = names(30);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert!(!dir.path().join(CHECKPOINT).exists());
    fill(&store, &streams, 30);
    assert!(common::segment_files(dir.path()).len() > 9, "more than 8 rolls");
    assert!(dir.path().join(CHECKPOINT).exists(), "written at a roll, before any close");
    store.delete_stream(&streams[5], ExpectedVersion::Any).unwrap();
    fill(&store, &streams[..4], 1);
    let expected = table(&store, &streams);
    let crashed = tempfile::tempdir().unwrap();
    common::copy_store_dir(dir.path(), crashed.path());
    drop(store);
    let store = Store::open_with(crashed.path(), options()).unwrap();
    assert_eq!(table(&store, &streams), expected);
    drop(store);
    assert_eq!(table_without_checkpoint(crashed.path(), &streams), expected);
}
