//! Proves that a log spread over hundreds of small segments reads back completely and in
//! order (forward, backward, from any position, per stream), also after reopen and index
//! rebuild, that `seal` starts a new segment file, and that an event as large as a segment
//! allows fits.

mod common;

use std::fs;

use chronicle::{Durability, Error, ExpectedVersion, NewEvent, Options, RecordedEvent, Store};
use common::{file_len, index_files, positions, read_all, read_all_backward, read_stream, segment_files};

const SEGMENT_BYTES: u64 = 4096;

fn small_segments() -> Options {
    Options::default().segment_bytes(SEGMENT_BYTES).durability(Durability::Buffered)
}

/// (stream, version, data) of each event, in position order.
type Expected = Vec<(String, u64, String)>;

/// Appends 2000 batches of 5 events: one to "long" (so it spans every segment) and four
/// to 20 other streams.
fn fill(store: &Store) -> Expected {
    let mut expected = Expected::new();
    let mut versions = std::collections::HashMap::<String, u64>::new();
    for batch in 0..2000u32 {
        let mut push = |stream: String| {
            let version = versions.entry(stream.clone()).and_modify(|v| *v += 1).or_insert(0);
            let data = format!("batch {batch} of {stream} v{version} {}", "-".repeat((batch % 17) as usize));
            expected.push((stream, *version, data.clone()));
            NewEvent::new("Filled", data)
        };
        let long = push("long".to_string());
        store.append("long", ExpectedVersion::Any, [long]).unwrap();
        let stream = format!("s-{}", batch % 20);
        let events: Vec<NewEvent> = (0..4).map(|_| push(stream.clone())).collect();
        store.append(&stream, ExpectedVersion::Any, events).unwrap();
    }
    expected
}

fn shape(events: &[RecordedEvent]) -> Expected {
    events.iter().map(|e| (e.stream_id.clone(), e.version, String::from_utf8(e.data.to_vec()).unwrap())).collect()
}

/// Every read API agrees with `expected`.
fn check_reads(store: &Store, expected: &Expected) {
    let count = expected.len() as u64;
    let all = read_all(store);
    assert_eq!(shape(&all), *expected);
    assert_eq!(positions(&all), (0..count).collect::<Vec<_>>());
    let mut backward = read_all_backward(store);
    backward.reverse();
    assert_eq!(backward, all);

    for from in (0..count).step_by(997).chain([count - 1, count, count + 5]) {
        let forward: Vec<u64> = store.read_all(from).unwrap().map(|e| e.unwrap().position).collect();
        assert_eq!(forward, (from.min(count)..count).collect::<Vec<_>>(), "read_all({from})");
        let mut backward = store.read_all_backward(Some(from)).unwrap().map(|e| e.unwrap().position);
        assert_eq!(backward.next(), Some(from.min(count - 1)), "read_all_backward(Some({from}))");
        assert_eq!(backward.count() as u64, from.min(count - 1));
    }

    let long: Expected = expected.iter().filter(|e| e.0 == "long").cloned().collect();
    assert_eq!(shape(&read_stream(store, "long")), long);
    let mut long_backward = common::read_stream_backward(store, "long");
    long_backward.reverse();
    assert_eq!(shape(&long_backward), long);
    for from in [1u64, 333, 1000, 1999] {
        let tail: Vec<RecordedEvent> = store.read_stream("long", from).unwrap().map(Result::unwrap).collect();
        assert_eq!(shape(&tail), long[from as usize..], "read_stream(long, {from})");
        let head: Vec<u64> =
            store.read_stream_backward("long", Some(from)).unwrap().map(|e| e.unwrap().version).collect();
        assert_eq!(head, (0..=from).rev().collect::<Vec<_>>(), "read_stream_backward(long, {from})");
    }
    for s in 0..20 {
        let stream = format!("s-{s}");
        let events: Expected = expected.iter().filter(|e| e.0 == stream).cloned().collect();
        assert_eq!(shape(&read_stream(store, &stream)), events, "{stream}");
        assert_eq!(store.stream_version(&stream).unwrap(), Some(events.len() as u64 - 1));
    }
}

#[test]
fn hundreds_of_segments_read_back_in_order_also_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    let expected = fill(&store);
    let segment_count = segment_files(dir.path()).len();
    assert!(segment_count >= 200, "only {segment_count} segments");
    for segment in segment_files(dir.path()) {
        assert!(file_len(&segment) <= SEGMENT_BYTES, "{segment:?} is larger than segment_size");
    }
    check_reads(&store, &expected);
    store.close().unwrap();

    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    check_reads(&store, &expected);
    store.close().unwrap();

    for index in index_files(dir.path()) {
        fs::remove_file(index).unwrap();
    }
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    check_reads(&store, &expected);

    // Appends continue after the last segment.
    let result = store.append("long", ExpectedVersion::Exact(1999), [NewEvent::new("After", "")]).unwrap();
    assert_eq!((result.first_version, result.first_position), (2000, expected.len() as u64));
    assert_eq!(segment_files(dir.path()).len(), segment_count);
}

#[test]
fn seal_starts_a_new_segment_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    store.seal().unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1, "sealing an empty segment changes nothing");

    store.append("s", ExpectedVersion::NoStream, [NewEvent::new("First", "1")]).unwrap();
    store.seal().unwrap();
    let segments = segment_files(dir.path());
    assert_eq!(segments.len(), 2);
    let sealed_len = file_len(&segments[0]);
    assert_eq!(file_len(&segments[1]), common::SEGMENT_HEADER_BYTES, "the new segment holds only its header");

    store.append("s", ExpectedVersion::Exact(0), [NewEvent::new("Second", "2")]).unwrap();
    assert_eq!(file_len(&segments[0]), sealed_len, "a sealed segment is never written again");
    assert!(file_len(&segments[1]) > common::SEGMENT_HEADER_BYTES, "the append went to the new segment");
    store.seal().unwrap();
    store.seal().unwrap();
    assert_eq!(segment_files(dir.path()).len(), 3);

    let before = read_all(&store);
    assert_eq!(positions(&before), [0, 1]);
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read_all(&store), before);
    assert_eq!(read_stream(&store, "s").len(), 2);
}

#[test]
fn an_event_as_large_as_a_segment_allows_fits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    // Encoded size: 64-byte header + 8-byte durable mark (first record of its commit group)
    // + "s" + "T" + data; the segment header takes 64 bytes.
    let largest = |extra: u64| NewEvent::new("T", vec![7u8; (SEGMENT_BYTES - 64 - 64 - 8 - 2 + extra) as usize]);
    assert!(matches!(store.append("s", ExpectedVersion::Any, [largest(1)]), Err(Error::InvalidInput { .. })));

    store.append("s", ExpectedVersion::Any, [NewEvent::new("Small", "x")]).unwrap();
    store.append("s", ExpectedVersion::Any, [largest(0)]).unwrap();
    store.append("s", ExpectedVersion::Any, [NewEvent::new("Small", "y")]).unwrap();
    let segments = segment_files(dir.path());
    assert_eq!(segments.len(), 3);
    assert_eq!(file_len(&segments[1]), SEGMENT_BYTES, "the large event fills its segment exactly");

    let expected = ["x".as_bytes().to_vec(), vec![7u8; (SEGMENT_BYTES - 138) as usize], b"y".to_vec()];
    let data: Vec<Vec<u8>> = read_stream(&store, "s").iter().map(|e| e.data.to_vec()).collect();
    assert_eq!(data, expected);
    store.close().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    let data: Vec<Vec<u8>> = read_all(&store).iter().map(|e| e.data.to_vec()).collect();
    assert_eq!(data, expected);
}
