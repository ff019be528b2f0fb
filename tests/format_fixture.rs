//! Proves that stores written by format version 1 stay readable: `tests/fixtures/v1/` is a
//! store directory committed once (sealed segments with index files, an active segment with
//! its checkpoint), and a copy of it must open and read back exactly the events below,
//! every field, with and without its index files (which must be rebuilt byte for byte).
//! A change that breaks old stores fails here.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use chronicle::{ExpectedVersion, NewEvent, Options, RecordedEvent, Store, StreamAppend};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join("v1")
}

/// Payload of the event at `position`: deterministic, with every byte value somewhere.
fn data_of(position: u64) -> Vec<u8> {
    match position {
        3 => (0..=255u8).collect(),
        5 => Vec::new(),
        7 => vec![0x5A; 3500],
        _ => format!("{{\"position\":{position},\"text\":\"grüße\"}}").into_bytes(),
    }
}

fn metadata_of(position: u64) -> Vec<u8> {
    if position % 4 == 1 { format!("meta-{position}").into_bytes() } else { Vec::new() }
}

/// One expected event: position, stream, version, type, id, correlation, causation,
/// timestamp (µs since the epoch).
type Row = (u64, &'static str, u64, &'static str, u128, Option<u128>, Option<u128>, u64);

/// Written by `generate_format_fixture` and read back from the committed files.
const EXPECTED: &[Row] = &[
    (0, "order-1", 0, "OrderPlaced", 0x1000, Some(0xc0), Some(0xca), 1_795_427_132_783_713),
    (1, "order-1", 1, "ItemAdded", 0x1a207cbe56f7a359848a2ab000cc944, None, None, 1_795_427_132_783_713),
    (2, "käse-λ", 0, "Käse", 0x1002, None, None, 1_795_427_132_785_564),
    (3, "order-1", 2, "Binary", 0x1a207cbe57170b2b63d1ab591812fa7, Some(0xc3), None, 1_795_427_132_785_925),
    (4, "order-1", 3, "ItemAdded", 0x1004, None, None, 1_795_427_132_785_925),
    (5, "order-2", 0, "Empty", 0x1a207cbe579727a91249784df135a0a, None, Some(0xcf), 1_795_427_132_793_670),
    (6, "order-2", 1, "Paid", 0x1006, Some(0xc6), None, 1_795_427_132_807_973),
    (7, "big", 0, "Large", 0x1a207cbe5887bd4840c3dd387662f2a, None, None, 1_795_427_132_808_227),
    (8, "order-1", 4, "Shipped", 0x1008, None, None, 1_795_427_132_821_751),
    (9, "käse-λ", 1, "Gereift", 0x1a207cbe5957bb3abf612784e8a6314, Some(0xc9), None, 1_795_427_132_821_751),
    (10, "käse-λ", 2, "Verkauft", 0x100a, None, Some(0xd4), 1_795_427_132_821_751),
    (11, "order-2", 2, "Refunded", 0x1a207cbe5967a2d9e58fdf6f8958822, None, None, 1_795_427_132_822_062),
];

fn check_event(event: &RecordedEvent, row: &Row) {
    let &(position, stream, version, event_type, id, correlation_id, causation_id, timestamp_us) = row;
    let at = format!("position {position}");
    assert_eq!(event.position, position, "{at}");
    assert_eq!(event.stream_id, stream, "{at}");
    assert_eq!(event.version, version, "{at}");
    assert_eq!(event.event_type, event_type, "{at}");
    assert_eq!(event.data.as_ref(), &data_of(position)[..], "{at}: data");
    assert_eq!(event.metadata.as_ref(), &metadata_of(position)[..], "{at}: metadata");
    assert_eq!(event.id, id, "{at}: id");
    assert_eq!(event.correlation_id, correlation_id, "{at}");
    assert_eq!(event.causation_id, causation_id, "{at}");
    assert_eq!(event.timestamp, UNIX_EPOCH + Duration::from_micros(timestamp_us), "{at}: timestamp");
}

fn fixture_file_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("tests/fixtures/v1 is committed")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn copy_fixture(with_indexes: bool) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for name in fixture_file_names() {
        if with_indexes || !name.ends_with(".idx") {
            std::fs::copy(fixture_dir().join(&name), copy.path().join(&name)).unwrap();
        }
    }
    copy
}

fn check_store(dir: &Path) {
    let store = Store::open(dir).unwrap();
    let all: Vec<RecordedEvent> = store.read_all(0).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), EXPECTED.len());
    for (event, row) in all.iter().zip(EXPECTED) {
        check_event(event, row);
    }
    let backward: Vec<u64> = store.read_all_backward(None).unwrap().map(|e| e.unwrap().position).collect();
    assert_eq!(backward, EXPECTED.iter().rev().map(|r| r.0).collect::<Vec<_>>());
    let mut streams: Vec<&str> = EXPECTED.iter().map(|r| r.1).collect();
    streams.sort();
    streams.dedup();
    assert_eq!(store.streams().unwrap(), streams);
    for stream in streams {
        let rows: Vec<&Row> = EXPECTED.iter().filter(|r| r.1 == stream).collect();
        let events: Vec<RecordedEvent> = store.read_stream(stream, 0).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(events.len(), rows.len(), "{stream}");
        for (event, row) in events.iter().zip(&rows) {
            check_event(event, row);
        }
        assert_eq!(store.stream_version(stream).unwrap(), rows.last().map(|r| r.2));
    }
    // The old store keeps working: the next event continues its stream and the log.
    let last = EXPECTED.last().unwrap();
    let next = store.append(last.1, ExpectedVersion::Exact(last.2), [NewEvent::new("AfterUpgrade", "new")]).unwrap();
    assert_eq!((next.first_version, next.first_position), (last.2 + 1, last.0 + 1));
    store.close().unwrap();
}

#[test]
fn the_committed_v1_store_opens_and_reads_back_exactly() {
    let names = fixture_file_names();
    assert!(names.iter().filter(|n| n.ends_with(".log")).count() >= 3, "{names:?}");
    assert!(names.iter().filter(|n| n.ends_with(".idx")).count() >= 3, "{names:?}");
    let copy = copy_fixture(true);
    check_store(copy.path());
}

/// The committed index files are index format 1, which this version replaces with format 2
/// (checksummed per part) when it opens the store: index files are derived data, so an old
/// one costs a rebuild, never an event. Whether rebuilt from the segments alone or over the
/// old index files, the result is the same bytes.
#[test]
fn the_committed_v1_segments_rebuild_the_same_index_files_with_or_without_the_old_ones() {
    let with_old = copy_fixture(true);
    let without = copy_fixture(false);
    for copy in [&with_old, &without] {
        Store::open(copy.path()).unwrap().close().unwrap();
    }
    for name in fixture_file_names().iter().filter(|n| n.ends_with(".idx")) {
        let committed = std::fs::read(fixture_dir().join(name)).unwrap();
        let rebuilt = std::fs::read(without.path().join(name)).unwrap();
        assert_ne!(rebuilt, committed, "{name}: an index format 1 file was kept");
        assert_eq!(rebuilt, std::fs::read(with_old.path().join(name)).unwrap(), "{name}");
    }
    check_store(without.path());
}

/// Writes `tests/fixtures/v1/` and prints the `EXPECTED` table. Run once, by hand, when the
/// fixture is created; never to "fix" a failing format test.
#[test]
#[ignore = "generator: writes tests/fixtures/v1; run by hand with CHRONICLE_WRITE_FIXTURE=1"]
fn generate_format_fixture() {
    if std::env::var_os("CHRONICLE_WRITE_FIXTURE").is_none() {
        eprintln!("CHRONICLE_WRITE_FIXTURE not set: not rewriting the committed fixture");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().segment_bytes(4096)).unwrap();
    let event = |position: u64, event_type: &str| {
        let mut event = NewEvent::new(event_type, data_of(position)).with_metadata(metadata_of(position));
        if position.is_multiple_of(2) {
            event = event.with_id(0x1000 + u128::from(position));
        }
        if position.is_multiple_of(3) {
            event = event.with_correlation_id(0xC0 + u128::from(position));
        }
        if position.is_multiple_of(5) {
            event = event.with_causation_id(0xCA + u128::from(position));
        }
        event
    };
    store.append("order-1", ExpectedVersion::NoStream, [event(0, "OrderPlaced"), event(1, "ItemAdded")]).unwrap();
    store.append("käse-λ", ExpectedVersion::NoStream, [event(2, "Käse")]).unwrap();
    store.append("order-1", ExpectedVersion::Exact(1), [event(3, "Binary"), event(4, "ItemAdded")]).unwrap();
    store.append("order-2", ExpectedVersion::Any, [event(5, "Empty")]).unwrap();
    store.seal().unwrap();
    store.append("order-2", ExpectedVersion::StreamExists, [event(6, "Paid")]).unwrap();
    store.append("big", ExpectedVersion::NoStream, [event(7, "Large")]).unwrap();
    store
        .append_multi([
            StreamAppend::new("order-1", ExpectedVersion::Exact(3), [event(8, "Shipped")]),
            StreamAppend::new("käse-λ", ExpectedVersion::Exact(0), [event(9, "Gereift"), event(10, "Verkauft")]),
        ])
        .unwrap();
    store.append("order-2", ExpectedVersion::Exact(1), [event(11, "Refunded")]).unwrap();
    let events: Vec<RecordedEvent> = store.read_all(0).unwrap().collect::<Result<_, _>>().unwrap();
    store.close().unwrap();
    let target = fixture_dir();
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name != "LOCK" {
            std::fs::copy(dir.path().join(&name), target.join(&name)).unwrap();
        }
    }
    println!("const EXPECTED: &[Row] = &[");
    for e in &events {
        let micros = e.timestamp.duration_since(UNIX_EPOCH).unwrap().as_micros();
        let id = |v: Option<u128>| v.map_or("None".to_owned(), |v| format!("Some({v:#x})"));
        println!(
            "    ({}, {:?}, {}, {:?}, {:#x}, {}, {}, {}),",
            e.position,
            e.stream_id,
            e.version,
            e.event_type,
            e.id,
            id(e.correlation_id),
            id(e.causation_id),
            micros
        );
    }
    println!("];");
}
