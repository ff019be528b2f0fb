//! Proves that a commit group torn at ANY byte is wholly absent after reopen while every
//! earlier group stays intact, with or without an index checkpoint and with garbage after
//! the cut, and that appends afterwards continue versions and positions correctly.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use chronicle::{Durability, ExpectedVersion, NewEvent, Options, RecordedEvent, Store, StreamAppend};
use common::{copy_store_dir, file_len, index_files, read_all, segment_files};

/// What the store held before the last batch, and what the last batch added.
struct Scenario {
    dir: tempfile::TempDir,
    /// The segment file the last batch was written to.
    segment: PathBuf,
    /// The bytes of the last batch within `segment`.
    last_batch: Range<u64>,
    before: Vec<RecordedEvent>,
    after: Vec<RecordedEvent>,
    /// The index checkpoint of `segment` as it was before the last batch, if it existed.
    checkpoint_before: Option<Vec<u8>>,
}

/// Streams touched by the scenario; the last batch appends to "order-1" and creates "fresh".
const STREAMS: [&str; 4] = ["order-1", "order-2", "customer-9", "fresh"];

fn earlier_batches(store: &Store) {
    for batch in 0..12u64 {
        let stream = STREAMS[(batch % 3) as usize];
        let events = (0..=batch % 2).map(|i| NewEvent::new("Earlier", format!("batch {batch} event {i}")));
        store.append(stream, ExpectedVersion::Any, events).unwrap();
    }
}

fn last_batch(store: &Store) {
    let order_version = store.stream_version("order-1").unwrap().unwrap();
    store
        .append_multi([
            StreamAppend::new(
                "order-1",
                ExpectedVersion::Exact(order_version),
                [
                    NewEvent::new("ItemAdded", "sku-1"),
                    NewEvent::new("ItemAdded", "sku-2").with_metadata("m").with_correlation_id(5),
                    NewEvent::new("Checkout", vec![9u8; 40]),
                ],
            ),
            StreamAppend::new("fresh", ExpectedVersion::NoStream, [NewEvent::new("Created", "").with_id(1234)]),
        ])
        .unwrap();
}

/// Builds the scenario: earlier batches, a clean close, a reopen (after `seal` if asked,
/// so the last batch is the first of a new segment), the last batch, a clean close.
fn scenario(seal_before_last: bool) -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    earlier_batches(&store);
    if seal_before_last {
        store.seal().unwrap();
    }
    let before = read_all(&store);
    store.close().unwrap();
    let segments_before = segment_files(dir.path());
    let len_before = file_len(segments_before.last().unwrap());
    let checkpoint_before = index_files(dir.path()).last().map(|p| fs::read(p).unwrap());

    let store = Store::open(dir.path()).unwrap();
    last_batch(&store);
    let after = read_all(&store);
    store.close().unwrap();

    // The scenario must be what it claims: the last batch is the tail of the last segment,
    // which (after seal) held nothing but its header before.
    assert_eq!(segment_files(dir.path()), segments_before);
    let segment = segments_before.last().unwrap().clone();
    if seal_before_last {
        assert_eq!(len_before, common::SEGMENT_HEADER_BYTES);
    }
    let start = if seal_before_last { 0 } else { len_before };
    let last_batch = start..file_len(&segment);
    assert!(last_batch.end - len_before > 200, "last batch spans {len_before}..{}", last_batch.end);
    assert_eq!(after.len(), before.len() + 4);
    Scenario { dir, segment, last_batch, before, after, checkpoint_before }
}

/// How the active segment's index file looks at the moment of the simulated crash.
#[derive(Debug, Clone, Copy)]
enum Checkpoint {
    /// No index file: the whole segment is scanned.
    Missing,
    /// The checkpoint from before the last batch: only the part after it is scanned.
    Stale,
}

#[derive(Debug, Clone, Copy)]
enum Garbage {
    None,
    Zeros(usize),
    Ones(usize),
    Random(usize, u64),
}

fn garbage_bytes(garbage: Garbage) -> Vec<u8> {
    match garbage {
        Garbage::None => Vec::new(),
        Garbage::Zeros(len) => vec![0; len],
        Garbage::Ones(len) => vec![0xff; len],
        Garbage::Random(len, seed) => {
            let mut state = seed | 1;
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        }
    }
}

/// Copies the scenario, cuts the segment at `cut`, adds `garbage`, sets up the index
/// checkpoint, reopens, and checks what a crash there must leave.
fn check_cut(scenario: &Scenario, cut: u64, checkpoint: Checkpoint, garbage: Garbage, expected: &[RecordedEvent]) {
    let context = format!("cut at {cut} (last batch {:?}), {checkpoint:?}, {garbage:?}", scenario.last_batch);
    let copy = tempfile::tempdir().unwrap();
    copy_store_dir(scenario.dir.path(), copy.path());
    let segment = copy.path().join(scenario.segment.file_name().unwrap());
    let file = OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len(cut).unwrap();
    drop(file);
    let garbage = garbage_bytes(garbage);
    OpenOptions::new().append(true).open(&segment).unwrap().write_all(&garbage).unwrap();
    let index = segment.with_extension("idx");
    match (checkpoint, &scenario.checkpoint_before) {
        (Checkpoint::Stale, Some(bytes)) => fs::write(&index, bytes).unwrap(),
        _ => remove_if_exists(&index),
    }

    let options = Options::default().durability(Durability::Buffered);
    let store = Store::open_with(copy.path(), options.clone()).unwrap_or_else(|e| panic!("{context}: open: {e}"));
    let events = read_all(&store);
    assert_eq!(events, expected, "{context}");
    let last_kept = expected.last().unwrap();
    for stream in STREAMS {
        let version = expected.iter().filter(|e| e.stream_id == stream).map(|e| e.version).max();
        assert_eq!(store.stream_version(stream).unwrap(), version, "{context}: version of {stream}");
        let stream_events = common::read_stream(&store, stream);
        assert_eq!(stream_events.len() as u64, version.map_or(0, |v| v + 1), "{context}: events of {stream}");
    }

    // New appends continue right after what was kept, and survive another reopen.
    let order_version = store.stream_version("order-1").unwrap().unwrap();
    let result =
        store.append("order-1", ExpectedVersion::Exact(order_version), [NewEvent::new("AfterCrash", "new")]).unwrap();
    assert_eq!((result.first_version, result.first_position), (order_version + 1, last_kept.position + 1), "{context}");
    let fresh_expected = if expected.iter().any(|e| e.stream_id == "fresh") {
        ExpectedVersion::Exact(0)
    } else {
        ExpectedVersion::NoStream
    };
    store.append("fresh", fresh_expected, [NewEvent::new("AfterCrash", "")]).unwrap();
    let with_new = read_all(&store);
    store.close().unwrap();
    let store = Store::open_with(copy.path(), options).unwrap();
    assert_eq!(read_all(&store), with_new, "{context}: after a second reopen");
}

fn remove_if_exists(path: &Path) {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("remove {path:?}: {e}"),
        _ => {}
    }
}

/// Garbage of every kind, rotating with the offset so every kind meets many offsets.
fn garbage_for(cut: u64) -> Garbage {
    let len = 1 + (cut as usize * 7) % 300;
    match cut % 3 {
        0 => Garbage::Zeros(len),
        1 => Garbage::Ones(len),
        _ => Garbage::Random(len, cut),
    }
}

#[test]
fn torn_last_batch_at_every_offset_is_wholly_absent() {
    let scenario = scenario(false);
    assert!(scenario.checkpoint_before.is_some());
    for cut in scenario.last_batch.clone() {
        check_cut(&scenario, cut, Checkpoint::Missing, Garbage::None, &scenario.before);
        check_cut(&scenario, cut, Checkpoint::Stale, Garbage::None, &scenario.before);
    }
}

#[test]
fn torn_last_batch_with_garbage_after_the_cut_is_wholly_absent() {
    let scenario = scenario(false);
    for cut in scenario.last_batch.clone() {
        let checkpoint = if cut % 2 == 0 { Checkpoint::Missing } else { Checkpoint::Stale };
        check_cut(&scenario, cut, checkpoint, garbage_for(cut), &scenario.before);
    }
}

#[test]
fn whole_last_batch_survives_garbage_after_it() {
    let scenario = scenario(false);
    let end = scenario.last_batch.end;
    for garbage in [Garbage::None, Garbage::Zeros(1), Garbage::Zeros(4096), Garbage::Ones(64), Garbage::Random(999, 3)]
    {
        check_cut(&scenario, end, Checkpoint::Missing, garbage, &scenario.after);
        check_cut(&scenario, end, Checkpoint::Stale, garbage, &scenario.after);
    }
}

#[test]
fn torn_first_batch_of_a_new_segment_is_wholly_absent() {
    // After seal() the last batch is the only content of a fresh segment: cuts inside its
    // header simulate a crash while the segment was being created (the writer syncs the
    // header before any record, so garbage can only follow a whole header).
    let scenario = scenario(true);
    assert_eq!(scenario.last_batch.start, 0);
    for cut in scenario.last_batch.clone() {
        let garbage =
            if cut >= common::SEGMENT_HEADER_BYTES && cut % 5 == 0 { garbage_for(cut) } else { Garbage::None };
        check_cut(&scenario, cut, Checkpoint::Missing, garbage, &scenario.before);
    }
    check_cut(&scenario, scenario.last_batch.end, Checkpoint::Missing, Garbage::None, &scenario.after);
}
