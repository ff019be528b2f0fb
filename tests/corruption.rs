//! Proves that a flipped bit in any byte of a stored record (in a sealed segment or in the
//! middle of the active one) is reported as `Error::Corruption` naming the file and the
//! record's offset, that no read ever returns wrong bytes, and that other streams still read.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chronicle::{Error, ExpectedVersion, NewEvent, Options, RecordedEvent, Store};
use common::{RecordSpan, copy_store_dir, flip_bit, read_all, read_stream, records_of, segment_files};

const BYSTANDERS: [&str; 3] = ["bystander-0", "bystander-1", "bystander-2"];

fn options() -> Options {
    Options::default().segment_bytes(4096)
}

/// A closed store whose events alternate between "victim" and the bystanders, in four
/// segments of 4096 bytes, the last (active) one holding about 20 records; returns its
/// events in position order.
fn build(dir: &Path) -> Vec<RecordedEvent> {
    let store = Store::open_with(dir, options()).unwrap();
    let mut appended_in_fourth = 0;
    for i in 0u32.. {
        let stream = if i % 2 == 0 { "victim" } else { BYSTANDERS[(i as usize / 2) % 3] };
        let event = NewEvent::new("Happened", format!("event {i} of {stream}")).with_metadata(format!("meta {i}"));
        store.append(stream, ExpectedVersion::Any, [event]).unwrap();
        if segment_files(dir).len() == 4 {
            appended_in_fourth += 1;
            if appended_in_fourth == 20 {
                break;
            }
        }
    }
    let events = read_all(&store);
    store.close().unwrap();
    assert_eq!(segment_files(dir).len(), 4);
    events
}

/// A "victim" record in the middle of `segment`, with records of the segment on both sides.
fn victim_record(segment: &Path, events: &[RecordedEvent]) -> RecordSpan {
    let records = records_of(segment);
    assert!(records.len() >= 5, "{segment:?} has {} records", records.len());
    let middle = &records[records.len() / 2 - 1..records.len() / 2 + 1];
    *middle.iter().find(|r| events[r.position as usize].stream_id == "victim").unwrap()
}

/// Drains `items`, checking that every `Ok` is the original event at its position and
/// that an `Err` is `Corruption` and ends the iteration. Returns the error's file and offset.
fn check_items(
    items: impl Iterator<Item = Result<RecordedEvent, Error>>,
    originals: &HashMap<u64, RecordedEvent>,
    context: &str,
) -> (usize, Option<(PathBuf, u64)>) {
    let mut items = items;
    let mut good = 0;
    for item in items.by_ref() {
        match item {
            Ok(event) => {
                assert_eq!(Some(&event), originals.get(&event.position), "{context}: a read returned wrong bytes");
                good += 1;
            }
            Err(Error::Corruption { file, offset, reason }) => {
                assert!(!reason.is_empty());
                assert!(items.next().is_none(), "{context}: iteration goes on after a corruption");
                return (good, Some((file, offset)));
            }
            Err(other) => panic!("{context}: expected Corruption, got {other:?}"),
        }
    }
    (good, None)
}

/// Flips one bit in every byte of the victim record of `segment_index` (a copy of the store
/// for each byte) and checks every read of the reopened store.
fn flip_every_byte_of_a_record(segment_index: impl Fn(usize) -> usize) {
    let original = tempfile::tempdir().unwrap();
    let events = build(original.path());
    let by_position: HashMap<u64, RecordedEvent> = events.iter().map(|e| (e.position, e.clone())).collect();
    let segments = segment_files(original.path());
    let segment_name = segments[segment_index(segments.len())].file_name().unwrap().to_owned();
    let target = victim_record(&original.path().join(&segment_name), &events);
    let victim = &events[target.position as usize];
    let victim_version = victim.version;
    let victim_count = events.iter().filter(|e| e.stream_id == "victim").count();

    for byte in target.offset..target.offset + target.len {
        let context =
            format!("{segment_name:?} record at {} (position {}), byte {byte}", target.offset, target.position);
        let copy = tempfile::tempdir().unwrap();
        copy_store_dir(original.path(), copy.path());
        let segment = copy.path().join(&segment_name);
        flip_bit(&segment, byte, (byte % 8) as u8);
        let expected_error = Some((segment.clone(), target.offset));

        // A cleanly closed store opens from its index files without reading records.
        let store = Store::open_with(copy.path(), options()).unwrap_or_else(|e| panic!("{context}: open: {e}"));

        let (good, error) = check_items(store.read_stream("victim", 0).unwrap(), &by_position, &context);
        assert_eq!((good as u64, &error), (victim_version, &expected_error), "{context}: read_stream");
        let (good, error) = check_items(store.read_stream_backward("victim", None).unwrap(), &by_position, &context);
        assert_eq!(
            (good, &error),
            (victim_count - 1 - victim_version as usize, &expected_error),
            "{context}: backward"
        );
        // Versions after the damaged one are found through the index and still read.
        let (good, error) =
            check_items(store.read_stream("victim", victim_version + 1).unwrap(), &by_position, &context);
        assert_eq!((good, error), (victim_count - 1 - victim_version as usize, None), "{context}: after the damage");

        let (good, error) = check_items(store.read_all(0).unwrap(), &by_position, &context);
        assert_eq!((good as u64, &error), (target.position, &expected_error), "{context}: read_all");
        let (_, error) = check_items(store.read_all_backward(None).unwrap(), &by_position, &context);
        assert_eq!(error, expected_error, "{context}: read_all_backward");
        // Reads starting elsewhere may or may not cross the record; they never return it wrong.
        for from in [target.position.saturating_sub(3), target.position + 1, target.position + 40] {
            check_items(store.read_all(from).unwrap(), &by_position, &context);
            check_items(store.read_all_backward(Some(from)).unwrap(), &by_position, &context);
        }

        for stream in BYSTANDERS {
            let expected: Vec<&RecordedEvent> = events.iter().filter(|e| e.stream_id == stream).collect();
            let read = read_stream(&store, stream);
            assert_eq!(read.iter().collect::<Vec<_>>(), expected, "{context}: {stream} is unaffected");
        }
        assert_eq!(store.stream_version("victim").unwrap(), Some(victim_count as u64 - 1));
    }
}

#[test]
fn bit_flip_in_a_sealed_segment_is_reported_never_returned() {
    flip_every_byte_of_a_record(|_| 1);
}

#[test]
fn bit_flip_in_the_middle_of_the_active_segment_is_reported_never_returned() {
    flip_every_byte_of_a_record(|count| count - 1);
}

#[test]
fn damaged_sealed_segment_without_its_index_refuses_to_open() {
    // Rebuilding the index reads every record; a bad one in a sealed segment is corruption,
    // not a torn tail to cut.
    let dir = tempfile::tempdir().unwrap();
    let events = build(dir.path());
    let segment = segment_files(dir.path())[1].clone();
    let target = victim_record(&segment, &events);
    flip_bit(&segment, target.offset + target.len - 1, 3);
    std::fs::remove_file(segment.with_extension("idx")).unwrap();
    match Store::open_with(dir.path(), options()) {
        Err(Error::Corruption { file, offset, .. }) => assert_eq!((file, offset), (segment, target.offset)),
        other => panic!("expected Corruption, got {other:?}"),
    }
}

#[test]
fn damaged_segment_header_refuses_to_open() {
    let original = tempfile::tempdir().unwrap();
    build(original.path());
    let count = segment_files(original.path()).len();
    for segment_index in [0, 1, count - 1] {
        for byte in [0u64, 9, 17, 30, 62] {
            let copy = tempfile::tempdir().unwrap();
            copy_store_dir(original.path(), copy.path());
            let segment = segment_files(copy.path())[segment_index].clone();
            flip_bit(&segment, byte, 0);
            match Store::open_with(copy.path(), options()) {
                Err(Error::Corruption { file, .. }) => assert_eq!(file, segment, "byte {byte}"),
                other => panic!("segment {segment_index}, byte {byte}: expected Corruption, got {other:?}"),
            }
        }
    }
}

#[test]
fn damaged_record_followed_by_committed_groups_in_the_active_segment_is_not_cut() {
    // After a crash (no index checkpoint) the active segment is scanned. A bad record
    // followed by whole, valid, fsynced commit groups is damage, not a torn tail:
    // `Store::open` documents `Corruption` for it. Today the scan stops at the bad record
    // and recovery truncates the file there, destroying every later acknowledged event.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..20 {
        store.append("s", ExpectedVersion::Any, [NewEvent::new("T", format!("{i}"))]).unwrap();
    }
    drop(store);
    let segment = segment_files(dir.path())[0].clone();
    let target = records_of(&segment)[5];
    let len = common::file_len(&segment);
    std::fs::remove_file(segment.with_extension("idx")).unwrap();
    flip_bit(&segment, target.offset + target.len - 1, 0);
    match Store::open(dir.path()) {
        Err(Error::Corruption { file, offset, .. }) => assert_eq!((file, offset), (segment.clone(), target.offset)),
        Ok(store) => panic!("opened with {} of 20 events", read_all(&store).len()),
        Err(other) => panic!("expected Corruption, got {other:?}"),
    }
    assert_eq!(common::file_len(&segment), len, "no acknowledged bytes were cut");
}
