//! Proves that damaged bytes never become wrong data: every single-bit flip of a sealed
//! segment and of its index file (one at a time, then reopen and read everything every way)
//! yields either the exact events written or `Error::Corruption`, a bad index is rebuilt
//! byte for byte, and garbage of each kind after the tail of the last segment is cut while
//! every committed event is kept.

mod alloc_probe;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chronicle::{Durability, Error, ExpectedVersion, NewEvent, Options, RecordedEvent, Store};

#[global_allocator]
static ALLOCATOR: alloc_probe::LargestAllocation = alloc_probe::LargestAllocation;

/// No damaged byte may make the store allocate more than this in one piece.
const ALLOCATION_BYTES_MAX: usize = 16 << 20;

fn options() -> Options {
    Options::default().segment_bytes(4096).durability(Durability::Buffered)
}

fn segment_name(id: u64) -> String {
    format!("segment-{id:016x}.log")
}

fn index_name(id: u64) -> String {
    format!("segment-{id:016x}.idx")
}

/// A closed store: segment 1 sealed (3 events, 2 streams) with its index, segment 2 active
/// (2 commit groups, 3 events) with its checkpoint. Returns the directory and every event
/// in position order as written.
fn build_fixture() -> (tempfile::TempDir, Vec<RecordedEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    store.append("a", ExpectedVersion::NoStream, [NewEvent::new("A0", "x"), NewEvent::new("A1", "yy")]).unwrap();
    store
        .append("b", ExpectedVersion::NoStream, [NewEvent::new("B0", "z").with_metadata("m").with_correlation_id(5)])
        .unwrap();
    store.seal().unwrap();
    store.append("a", ExpectedVersion::Exact(1), [NewEvent::new("A2", "w")]).unwrap();
    store.append("c", ExpectedVersion::NoStream, [NewEvent::new("C0", ""), NewEvent::new("C1", "v")]).unwrap();
    let expected = read_all_ok(&store);
    store.close().unwrap();
    let names = file_names(dir.path());
    for name in [segment_name(1), index_name(1), segment_name(2), index_name(2)] {
        assert!(names.contains(&name), "fixture lacks {name}: {names:?}");
    }
    let written: Vec<(&str, u64, &str, &[u8])> =
        expected.iter().map(|e| (e.stream_id.as_str(), e.version, e.event_type.as_str(), e.data.as_ref())).collect();
    assert_eq!(
        written,
        [
            ("a", 0, "A0", &b"x"[..]),
            ("a", 1, "A1", b"yy"),
            ("b", 0, "B0", b"z"),
            ("a", 2, "A2", b"w"),
            ("c", 0, "C0", b""),
            ("c", 1, "C1", b"v"),
        ]
    );
    (dir, expected)
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn read_all_ok(store: &Store) -> Vec<RecordedEvent> {
    store.read_all(0).unwrap().collect::<Result<_, _>>().unwrap()
}

/// A temporary directory, on tmpfs when there is one: thousands of reopens run here and
/// nothing in these tests depends on the medium.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// Copies the fixture's files (not the lock) into a fresh directory.
fn copy_of(fixture: &Path) -> tempfile::TempDir {
    let copy = scratch_dir();
    for name in file_names(fixture) {
        if name != "LOCK" {
            std::fs::copy(fixture.join(&name), copy.path().join(&name)).unwrap();
        }
    }
    copy
}

fn flip(path: &Path, bit: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[bit / 8] ^= 1 << (bit % 8);
    std::fs::write(path, bytes).unwrap();
}

/// How a damaged store behaved.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Open failed with `Corruption`.
    Refused,
    /// Opened; every read returned all its events.
    AllRead,
    /// Opened; some read ended with `Corruption` after a correct prefix.
    CorruptionReported,
}

/// Checks that `items` is exactly `expected`, or a prefix of it followed by one
/// `Error::Corruption`. Returns whether it was complete.
fn check_sequence(
    what: &str,
    items: impl Iterator<Item = Result<RecordedEvent, Error>>,
    expected: &[&RecordedEvent],
) -> Result<bool, String> {
    let mut seen = 0usize;
    for item in items {
        match item {
            Ok(event) => {
                let Some(want) = expected.get(seen) else {
                    return Err(format!("{what}: event past the expected {}: {event:?}", expected.len()));
                };
                if &event != *want {
                    return Err(format!("{what}: WRONG DATA at item {seen}: got {event:?}, wrote {want:?}"));
                }
                seen += 1;
            }
            Err(Error::Corruption { .. }) => return Ok(false),
            Err(other) => return Err(format!("{what}: error other than Corruption: {other}")),
        }
    }
    if seen != expected.len() {
        return Err(format!("{what}: returned {seen} of {} events and no error (silent loss)", expected.len()));
    }
    Ok(true)
}

/// Opens `dir`, reads everything forward and backward, globally and per stream, checks every
/// event against `expected`, and closes.
fn open_and_read(dir: &Path, expected: &[RecordedEvent]) -> Result<Outcome, String> {
    let store = match Store::open_with(dir, options()) {
        Ok(store) => store,
        Err(Error::Corruption { .. }) => return Ok(Outcome::Refused),
        Err(other) => return Err(format!("open failed with an error other than Corruption: {other}")),
    };
    let all: Vec<&RecordedEvent> = expected.iter().collect();
    let mut complete = check_sequence("read_all", store.read_all(0).map_err(|e| e.to_string())?, &all)?;
    let reversed: Vec<&RecordedEvent> = all.iter().rev().copied().collect();
    complete &=
        check_sequence("read_all_backward", store.read_all_backward(None).map_err(|e| e.to_string())?, &reversed)?;
    let mut by_stream: BTreeMap<&str, Vec<&RecordedEvent>> = BTreeMap::new();
    for event in expected {
        by_stream.entry(&event.stream_id).or_default().push(event);
    }
    let streams = store.streams().map_err(|e| e.to_string())?;
    if streams.iter().map(String::as_str).ne(by_stream.keys().copied()) {
        return Err(format!("streams() is {streams:?}"));
    }
    for (stream, events) in &by_stream {
        let version = store.stream_version(stream).map_err(|e| e.to_string())?;
        if version != events.last().map(|e| e.version) {
            return Err(format!("stream_version({stream}) is {version:?}"));
        }
        complete &= check_sequence("read_stream", store.read_stream(stream, 0).map_err(|e| e.to_string())?, events)?;
        let backward: Vec<&RecordedEvent> = events.iter().rev().copied().collect();
        complete &= check_sequence(
            "read_stream_backward",
            store.read_stream_backward(stream, None).map_err(|e| e.to_string())?,
            &backward,
        )?;
    }
    store.close().map_err(|e| format!("close: {e}"))?;
    Ok(if complete { Outcome::AllRead } else { Outcome::CorruptionReported })
}

/// Flips each selected bit of `file` in a fresh copy of the fixture (after `prepare`), opens
/// and reads it; returns how often each outcome happened.
fn flip_each_bit(
    fixture: &Path,
    expected: &[RecordedEvent],
    file: &str,
    stride: usize,
    prepare: impl Fn(&Path),
    after: impl Fn(&Path, usize, &Outcome) -> Result<(), String>,
) -> BTreeMap<String, usize> {
    let bits = std::fs::metadata(fixture.join(file)).unwrap().len() as usize * 8;
    let mut outcomes = BTreeMap::new();
    let mut failures = Vec::new();
    for bit in (0..bits).step_by(stride) {
        let copy = copy_of(fixture);
        prepare(copy.path());
        flip(&copy.path().join(file), bit);
        alloc_probe::reset();
        let outcome = open_and_read(copy.path(), expected).and_then(|outcome| {
            after(copy.path(), bit, &outcome)?;
            Ok(outcome)
        });
        if alloc_probe::largest_bytes() > ALLOCATION_BYTES_MAX {
            failures.push(format!("bit {bit}: allocated {} bytes in one piece", alloc_probe::largest_bytes()));
        }
        match outcome {
            Ok(outcome) => *outcomes.entry(format!("{outcome:?}")).or_default() += 1,
            Err(failure) => failures.push(format!("bit {bit} (byte {}): {failure}", bit / 8)),
        }
    }
    assert!(failures.is_empty(), "{} of {bits} flips of {file} failed:\n{}", failures.len(), failures.join("\n"));
    outcomes
}

#[test]
fn every_bit_flip_of_a_sealed_segment_is_corruption_never_wrong_data() {
    let (fixture, expected) = build_fixture();
    let outcomes = flip_each_bit(fixture.path(), &expected, &segment_name(1), 1, |_| {}, |_, _, _| Ok(()));
    // Every flip of a checksummed byte must be noticed by some read (or by open).
    assert_eq!(outcomes.get("AllRead"), None, "some flips went unnoticed: {outcomes:?}");
}

#[test]
fn bit_flips_of_a_sealed_segment_without_its_index_refuse_the_open() {
    // Without an index file the sealed segment is scanned on open; a damaged record in a
    // sealed segment is not a torn tail, so the open must fail with Corruption.
    let (fixture, expected) = build_fixture();
    let outcomes = flip_each_bit(
        fixture.path(),
        &expected,
        &segment_name(1),
        5,
        |dir| std::fs::remove_file(dir.join(index_name(1))).unwrap(),
        |_, _, _| Ok(()),
    );
    assert_eq!(outcomes.keys().collect::<Vec<_>>(), ["Refused"], "{outcomes:?}");
}

#[test]
fn every_bit_flip_of_an_index_file_is_rebuilt_to_the_same_bytes() {
    let (fixture, expected) = build_fixture();
    let original_index = std::fs::read(fixture.path().join(index_name(1))).unwrap();
    let outcomes = flip_each_bit(
        fixture.path(),
        &expected,
        &index_name(1),
        1,
        |_| {},
        |dir, _, outcome| {
            if *outcome != Outcome::AllRead {
                return Err(format!("a damaged index must be rebuilt, not reported: {outcome:?}"));
            }
            let rebuilt = std::fs::read(dir.join(index_name(1))).map_err(|e| e.to_string())?;
            if rebuilt != original_index {
                return Err("the rebuilt index differs from the original".to_owned());
            }
            Ok(())
        },
    );
    assert_eq!(outcomes.keys().collect::<Vec<_>>(), ["AllRead"], "{outcomes:?}");
}

#[test]
fn bit_flips_of_the_active_checkpoint_are_ignored_and_the_tail_rescanned() {
    let (fixture, expected) = build_fixture();
    let outcomes = flip_each_bit(
        fixture.path(),
        &expected,
        &index_name(2),
        3,
        |_| {},
        |_, _, outcome| match outcome {
            Outcome::AllRead => Ok(()),
            other => Err(format!("a damaged checkpoint must be ignored and the tail rescanned: {other:?}")),
        },
    );
    assert_eq!(outcomes.keys().collect::<Vec<_>>(), ["AllRead"], "{outcomes:?}");
}

// ---------------------------------------------------------------------------------------
// Garbage after the tail of the last segment
// ---------------------------------------------------------------------------------------

fn xorshift_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The kinds of garbage, by name.
fn garbage_kinds(active_segment: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    // The active segment's last record: the second group's last event (C1), a valid record
    // of this very segment, COMMIT flag set.
    let last_record_len = {
        let mut offset = 64usize;
        let mut last = 0;
        while offset < active_segment.len() {
            let len = u32::from_le_bytes(active_segment[offset..offset + 4].try_into().unwrap()) as usize;
            last = len;
            offset += len;
        }
        assert_eq!(offset, active_segment.len(), "records of the fixture frame the segment exactly");
        last
    };
    let last_record = &active_segment[active_segment.len() - last_record_len..];
    let whole_records = &active_segment[64..];
    vec![
        ("zeros", vec![0u8; 1000]),
        ("0xFF", vec![0xFFu8; 1000]),
        ("random", xorshift_bytes(0x9E37_79B9_7F4A_7C15, 1000)),
        ("random-short", xorshift_bytes(7, 13)),
        ("last record repeated", last_record.repeat(5)),
        ("all records repeated", whole_records.repeat(3)),
        ("last record then zeros", [last_record, &[0u8; 300][..]].concat()),
        ("a record length field only", 1000u32.to_le_bytes().to_vec()),
    ]
}

fn check_garbage_is_cut(remove_checkpoint: bool) {
    let (fixture, expected) = build_fixture();
    let active = std::fs::read(fixture.path().join(segment_name(2))).unwrap();
    let mut failures = Vec::new();
    for (kind, garbage) in garbage_kinds(&active) {
        let copy = copy_of(fixture.path());
        if remove_checkpoint {
            std::fs::remove_file(copy.path().join(index_name(2))).unwrap();
        }
        let path: PathBuf = copy.path().join(segment_name(2));
        std::fs::write(&path, [&active[..], &garbage[..]].concat()).unwrap();
        alloc_probe::reset();
        match open_and_read(copy.path(), &expected) {
            Ok(Outcome::AllRead) => {}
            other => {
                failures.push(format!("{kind}: {other:?}"));
                continue;
            }
        }
        if alloc_probe::largest_bytes() > ALLOCATION_BYTES_MAX {
            failures.push(format!("{kind}: allocated {} bytes in one piece", alloc_probe::largest_bytes()));
        }
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        if len != active.len() {
            failures
                .push(format!("{kind}: last segment is {len} bytes after open, {} before the garbage", active.len()));
        }
        // The store is usable after the cut and keeps what it is given.
        let store = Store::open_with(copy.path(), options()).unwrap();
        store.append("c", ExpectedVersion::Exact(1), [NewEvent::new("C2", "after")]).unwrap();
        store.close().unwrap();
        let store = Store::open_with(copy.path(), options()).unwrap();
        let events = read_all_ok(&store);
        if events.len() != expected.len() + 1 || events[..expected.len()] != expected[..] {
            failures.push(format!("{kind}: after appending again, read_all gives {} events", events.len()));
        }
    }
    assert!(failures.is_empty(), "garbage after the tail:\n{}", failures.join("\n"));
}

#[test]
fn garbage_after_the_tail_is_cut_and_every_committed_event_kept() {
    check_garbage_is_cut(false);
}

#[test]
fn garbage_after_the_tail_is_cut_when_the_whole_active_segment_is_rescanned() {
    check_garbage_is_cut(true);
}

// ---------------------------------------------------------------------------------------
// Snapshot files
// ---------------------------------------------------------------------------------------

#[test]
fn every_bit_flip_of_the_newest_snapshot_falls_back_to_the_previous_one() {
    let fixture = scratch_dir();
    let store = Store::open_with(fixture.path(), options()).unwrap();
    store.append("a", ExpectedVersion::NoStream, (0..3).map(|i| NewEvent::new("T", vec![i]))).unwrap();
    store.save_snapshot("a", 1, b"state at 1").unwrap();
    store.save_snapshot("a", 2, b"state at 2!").unwrap();
    store.close().unwrap();
    let mut snapshots: Vec<String> = file_names(fixture.path()).into_iter().filter(|n| n.ends_with(".snap")).collect();
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    let newest = snapshots.pop().unwrap(); // names end in the version, fixed-width hex
    let bits = std::fs::metadata(fixture.path().join(&newest)).unwrap().len() as usize * 8;
    let mut failures = Vec::new();
    for bit in 0..bits {
        let copy = copy_of(fixture.path());
        flip(&copy.path().join(&newest), bit);
        let store = Store::open_with(copy.path(), options()).unwrap();
        match store.load_snapshot("a") {
            Ok(Some(snapshot)) if snapshot.version == 1 && snapshot.data.as_ref() == b"state at 1" => {}
            other => failures.push(format!("bit {bit}: {other:?}")),
        }
        store.close().unwrap();
    }
    assert!(failures.is_empty(), "flips of {newest} did not fall back:\n{}", failures.join("\n"));
}
