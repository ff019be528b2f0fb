//! Proves that a store's file descriptors do not grow with its size: under a limit of 128
//! open files (`ulimit -n 128`, set for a child process), a store of 5,000 segments is
//! built, reopened, read end to end (`read_all`, `read_stream`), appended to and compacted
//! (with an iterator from before the compaction still reading the replaced segments), and
//! reopened again with a cap of 8 mapped segments, which also bounds its memory maps.
//!
//! The test re-runs its own binary through `sh -c 'ulimit -n 128; exec ...'`: the parent
//! only checks that the child ran and succeeded; every assertion runs in the child.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use chronicle::{Durability, ExpectedVersion, NewEvent, Options, SEGMENT_BYTES_MIN, Store};

/// Set (to the store directory) in the child process.
const CHILD_ENV: &str = "CHRONICLE_FD_LIMIT_CHILD";
const TEST_NAME: &str = "five_thousand_segments_open_read_append_and_compact_with_128_descriptors";
const DESCRIPTORS_MAX: u64 = 128;
const SEGMENTS: u64 = 5_000;
const STREAMS: u64 = 50;
/// Streams `s-0` .. `s-9` are deleted before compacting.
const DELETED_STREAMS: u64 = 10;
/// What the store may hold open at a quiet moment: the LOCK file and the active segment,
/// with slack for the test harness's own descriptors (stdio, the /proc listing).
const QUIET_DESCRIPTORS_MAX: usize = 12;
const MAPPED_SEGMENTS_SMALL: usize = 8;

#[test]
fn five_thousand_segments_open_read_append_and_compact_with_128_descriptors() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        println!("fd_limit child finished");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {DESCRIPTORS_MAX} && exec \"$0\" \"$@\""))
        .arg(&exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("fd_limit child finished"), "the child did not run the test:\n{stdout}\n{stderr}");
}

fn child(dir: &Path) {
    assert_eq!(open_files_limit(), DESCRIPTORS_MAX, "the child runs under the lowered limit");
    let options = || Options::default().segment_size(SEGMENT_BYTES_MIN).durability(Durability::Buffered);

    // Build: one event per segment, each segment sealed. The writer must not keep a
    // descriptor per sealed segment (it used to fail here at about 120 segments).
    let started = Instant::now();
    let store = Store::open_with(dir, options()).unwrap();
    for i in 0..SEGMENTS {
        let stream = format!("s-{}", i % STREAMS);
        store.append(&stream, ExpectedVersion::Any, [NewEvent::new("Built", format!("event {i}"))]).unwrap();
        store.seal().unwrap();
    }
    assert!(open_descriptors() <= QUIET_DESCRIPTORS_MAX, "{} descriptors open after building", open_descriptors());
    store.close().unwrap();
    println!("built {SEGMENTS} segments in {:?}", started.elapsed());

    // Reopen, read everything, append.
    let started = Instant::now();
    let store = Store::open_with(dir, options()).unwrap();
    println!("opened in {:?}", started.elapsed());
    assert!(segment_files(dir) > SEGMENTS as usize, "every event sealed in its own segment");
    read_everything(&store, SEGMENTS, 0);
    for i in SEGMENTS..SEGMENTS + STREAMS {
        let stream = format!("s-{}", i % STREAMS);
        store.append(&stream, ExpectedVersion::Exact(i / STREAMS - 1), [NewEvent::new("Appended", "")]).unwrap();
    }
    let total = SEGMENTS + STREAMS;
    read_everything(&store, total, 0);
    assert!(open_descriptors() <= QUIET_DESCRIPTORS_MAX, "{} descriptors open after reading", open_descriptors());

    // Compact away the deleted streams while an iterator made before still reads the
    // segments compaction replaces.
    for s in 0..DELETED_STREAMS {
        store.delete_stream(&format!("s-{s}"), ExpectedVersion::Any).unwrap();
    }
    let mut before = store.read_all(0).unwrap();
    let first: Vec<u64> = before.by_ref().take(100).map(|e| e.unwrap().position).collect();
    let report = store.compact().unwrap();
    assert!(report.segments_rewritten >= SEGMENTS as usize / 2, "{report:?}");
    let deleted_events = DELETED_STREAMS * (total / STREAMS);
    assert_eq!(report.events_removed, deleted_events, "{report:?}");
    let rest: Vec<u64> = before.map(|e| e.unwrap().position).collect();
    assert_eq!(first.len() + rest.len(), (total - deleted_events) as usize, "the old iterator reads on");
    let kept = total - deleted_events;
    read_everything(&store, kept, DELETED_STREAMS);
    assert!(open_descriptors() <= QUIET_DESCRIPTORS_MAX, "{} descriptors open after compacting", open_descriptors());
    store.close().unwrap();

    // Reopen with few mapped segments: reads map and unmap all the time, and the maps of
    // the store's files stay bounded.
    let store = Store::open_with(dir, options().mapped_segments(MAPPED_SEGMENTS_SMALL)).unwrap();
    read_everything(&store, kept, DELETED_STREAMS);
    let maps = store_maps(dir);
    // Two maps per mapped sealed segment (segment and index file), one for the active one.
    assert!(maps <= 2 * MAPPED_SEGMENTS_SMALL + 1, "{maps} maps of store files");
    store.append("s-42", ExpectedVersion::Any, [NewEvent::new("Appended", "after reopen")]).unwrap();
    assert_eq!(store.read_all(0).unwrap().count() as u64, kept + 1);
    assert!(open_descriptors() <= QUIET_DESCRIPTORS_MAX, "{} descriptors open at the end", open_descriptors());
    store.close().unwrap();
}

/// Reads the whole log (`expected` events, positions increasing) and every live stream
/// (`s-{first_live}` ..), each with gap-free versions from 0.
fn read_everything(store: &Store, expected: u64, first_live: u64) {
    let mut count = 0u64;
    let mut last = None;
    for event in store.read_all(0).unwrap() {
        let event = event.unwrap();
        assert!(last.is_none_or(|p| p < event.position), "positions increase");
        last = Some(event.position);
        count += 1;
    }
    assert_eq!(count, expected, "read_all returns every event");
    let mut stream_events = 0u64;
    for s in first_live..STREAMS {
        let versions: Vec<u64> = store.read_stream(&format!("s-{s}"), 0).unwrap().map(|e| e.unwrap().version).collect();
        assert!(versions.iter().copied().eq(0..versions.len() as u64), "s-{s} reads back whole");
        stream_events += versions.len() as u64;
    }
    assert_eq!(stream_events, expected, "read_stream returns every event");
}

/// The soft limit on open files, from /proc/self/limits.
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Memory maps of files in `dir` (segment and index files).
fn store_maps(dir: &Path) -> usize {
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().filter(|line| line.contains(dir)).count()
}

fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".log"))
        .count()
}
