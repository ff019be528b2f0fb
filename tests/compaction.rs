//! Proves compaction: deleted streams' bytes (events and snapshots) leave the directory;
//! surviving events keep positions, versions and bytes across compaction and reopen;
//! appends and reads go on while it runs; readers holding old segments keep reading; and a
//! crash at each step of the swap protocol opens with every surviving event exactly once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chronicle::{Durability, ExpectedVersion, NewEvent, Options, RecordedEvent, Store};

const SECRET: &[u8] = b"alice@example.com-private-data";

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn all_events(store: &Store) -> Vec<RecordedEvent> {
    store.read_all(0).unwrap().map(Result::unwrap).collect()
}

fn small_segments() -> Options {
    Options::default().segment_bytes(4096)
}

/// A store whose "private" stream holds SECRET in data and metadata across many segments,
/// interleaved with a "public" stream.
fn populate(store: &Store) {
    for i in 0..60u32 {
        store.append("public", ExpectedVersion::Any, [NewEvent::new("Public", format!("public-{i}"))]).unwrap();
        let secret = NewEvent::new("Private", SECRET).with_metadata(SECRET);
        store.append("private", ExpectedVersion::Any, [secret]).unwrap();
    }
    store.save_snapshot("private", 10, SECRET).unwrap();
}

#[test]
fn deleted_stream_leaves_no_byte_in_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    populate(&store);
    let before: Vec<_> = all_events(&store).into_iter().filter(|e| e.stream_id == "public").collect();
    store.delete_stream("private", ExpectedVersion::Any).unwrap();
    let report = store.compact().unwrap();
    assert_eq!(report.events_removed, 60);
    assert_eq!(report.snapshots_removed, 1);
    assert!(report.bytes_after < report.bytes_before);
    assert!(report.segments_rewritten > 1);
    for file in files(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!contains(&bytes, SECRET), "{} still holds the deleted data", file.display());
    }
    assert_eq!(all_events(&store), before, "surviving events keep positions, versions and bytes");
    store.close().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(all_events(&store), before);
    assert!(matches!(store.read_stream("private", 0), Err(chronicle::Error::StreamDeleted { .. })));
    let next = store.append("public", ExpectedVersion::Exact(59), [NewEvent::new("Public", "after")]).unwrap();
    assert!(next.first_position > before.last().unwrap().position);
}

#[test]
fn appends_continue_while_compaction_runs() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments().durability(Durability::Buffered);
    let store = Store::open_with(dir.path(), options).unwrap();
    for i in 0..3000u32 {
        store
            .append(&format!("doomed-{}", i % 50), ExpectedVersion::Any, [NewEvent::new("T", vec![0u8; 200])])
            .unwrap();
    }
    for i in 0..50 {
        store.delete_stream(&format!("doomed-{i}"), ExpectedVersion::Any).unwrap();
    }
    let compacting = Arc::new(AtomicBool::new(true));
    let during = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (store, compacting, during) = (store.clone(), Arc::clone(&compacting), Arc::clone(&during));
        std::thread::spawn(move || {
            let mut written = 0u64;
            while compacting.load(Ordering::Acquire) || written < 10 {
                store
                    .append("live", ExpectedVersion::Any, [NewEvent::new("T", written.to_le_bytes().to_vec())])
                    .unwrap();
                if compacting.load(Ordering::Acquire) {
                    during.fetch_add(1, Ordering::Relaxed);
                }
                written += 1;
            }
            written
        })
    };
    while store.stream_version("live").unwrap().is_none() {
        std::thread::yield_now();
    }
    let report = store.compact().unwrap();
    compacting.store(false, Ordering::Release);
    let written = writer.join().unwrap();
    assert_eq!(report.events_removed, 3000);
    assert!(during.load(Ordering::Relaxed) > 0, "no append completed while compaction ran");
    let live: Vec<u64> = store.read_stream("live", 0).unwrap().map(|e| e.unwrap().version).collect();
    assert_eq!(live, (0..written).collect::<Vec<_>>());
}

#[test]
fn readers_keep_reading_replaced_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    populate(&store);
    let mut reader = store.read_all(0).unwrap();
    let first = reader.next().unwrap().unwrap();
    store.delete_stream("private", ExpectedVersion::Any).unwrap();
    store.compact().unwrap();
    // The iterator was created before the deletion: it reads the old segments to the end.
    let rest: Vec<_> = reader.map(Result::unwrap).collect();
    assert_eq!(rest.len() + 1, 120);
    assert_eq!(first.position, 0);
    assert!(rest.windows(2).all(|w| w[0].position < w[1].position));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in files(from) {
        if file.file_name().unwrap() != "LOCK" {
            std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
        }
    }
}

/// Crash images of each step of the swap protocol, built from real files: the directory
/// before compaction plus what each step leaves behind.
#[test]
fn crash_at_each_step_of_the_swap_opens_with_every_event_once() {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let before = root.path().join("before");
    let store = Store::open_with(&live, small_segments()).unwrap();
    populate(&store);
    store.delete_stream("private", ExpectedVersion::Any).unwrap();
    store.seal().unwrap();
    let expected: Vec<_> = all_events(&store).into_iter().filter(|e| e.stream_id == "public").collect();
    store.close().unwrap();
    copy_dir(&live, &before);
    let store = Store::open_with(&live, small_segments()).unwrap();
    store.compact().unwrap();
    store.close().unwrap();
    let old_names: Vec<_> = files(&before).iter().map(|f| f.file_name().unwrap().to_owned()).collect();
    let new_segments: Vec<PathBuf> = files(&live)
        .into_iter()
        .filter(|f| {
            f.extension().is_some_and(|x| x == "log") && !old_names.contains(&f.file_name().unwrap().to_owned())
        })
        .collect();
    assert!(!new_segments.is_empty());

    let check = |dir: &Path, label: &str| {
        let store = Store::open_with(dir, small_segments()).unwrap();
        let events: Vec<_> = all_events(&store);
        assert_eq!(events, expected, "{label}: every surviving event exactly once");
        assert_eq!(store.stream_version("public").unwrap(), Some(59), "{label}");
        assert!(store.read_stream("private", 0).is_err(), "{label}");
        store.close().unwrap();
        assert!(!files(dir).iter().any(|f| f.to_string_lossy().ends_with(".tmp")), "{label}: temporary files removed");
    };

    // Steps 1-2: the new segment is still a temporary file (complete or torn).
    for (i, torn) in [false, true].into_iter().enumerate() {
        let dir = root.path().join(format!("tmp-{i}"));
        copy_dir(&before, &dir);
        for segment in &new_segments {
            let mut bytes = std::fs::read(segment).unwrap();
            if torn {
                bytes.truncate(bytes.len() / 2);
            }
            let name = format!("{}.tmp", segment.file_name().unwrap().to_string_lossy());
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        check(&dir, "temporary file left");
    }
    // Steps 3-4: renamed into place, old segments not yet removed.
    let dir = root.path().join("both");
    copy_dir(&before, &dir);
    for segment in &new_segments {
        std::fs::copy(segment, dir.join(segment.file_name().unwrap())).unwrap();
    }
    check(&dir, "old and new segments both present");
    // Only some of the segments swapped (compaction is per segment).
    let dir = root.path().join("half");
    copy_dir(&before, &dir);
    std::fs::copy(&new_segments[0], dir.join(new_segments[0].file_name().unwrap())).unwrap();
    let store = Store::open_with(&dir, small_segments()).unwrap();
    let events: Vec<_> = all_events(&store).into_iter().filter(|e| e.stream_id == "public").collect();
    assert_eq!(events, expected, "half-swapped: public events exactly once");
    store.close().unwrap();
    // Step 5 done: the final directory.
    check(&live, "swap complete");
}

#[test]
fn automatic_compaction_starts_past_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_segments().compaction_threshold(1)).unwrap();
    populate(&store);
    store.seal().unwrap();
    let holds_secret = || {
        files(dir.path())
            .iter()
            .any(|f| f.extension().is_some_and(|x| x == "log") && contains(&std::fs::read(f).unwrap(), SECRET))
    };
    assert!(holds_secret());
    store.delete_stream("private", ExpectedVersion::Any).unwrap();
    // The deletion nudges the compaction thread; no compact() call is made. The bound is a
    // liveness limit, not a performance assertion.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while holds_secret() {
        assert!(std::time::Instant::now() < deadline, "automatic compaction did not run");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(store.read_stream("public", 0).unwrap().count(), 60);
}

#[test]
fn compaction_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    populate(&store);
    store.seal().unwrap();
    store.delete_stream("private", ExpectedVersion::Any).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let holds_secret = files(dir.path())
        .iter()
        .any(|f| f.extension().is_some_and(|x| x == "log") && contains(&std::fs::read(f).unwrap(), SECRET));
    assert!(holds_secret, "nothing compacts without a threshold or a compact() call");
}

/// Closing does not wait for a long compaction to finish: the compaction stops at its next
/// chunk (`compact` then returns `Closed`) or has finished, and either way the reopened store
/// holds exactly the surviving events, each once, and no leftover temporary file.
#[test]
fn closing_during_a_compaction_stops_it_without_losing_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().segment_bytes(1 << 20).durability(Durability::Buffered);
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    let data = vec![7u8; 2000];
    for i in 0..6000u32 {
        let stream = format!("stream-{}", i % 20);
        store.append(&stream, ExpectedVersion::Any, [NewEvent::new("E", data.clone())]).unwrap();
    }
    for i in (0..20).step_by(2) {
        store.delete_stream(&format!("stream-{i}"), ExpectedVersion::Any).unwrap();
    }
    store.seal().unwrap();
    let expected = all_events(&store);
    let compacting = {
        let store = store.clone();
        std::thread::spawn(move || store.compact())
    };
    // Let the compaction start (it seals first), then close under it.
    while !files(dir.path()).iter().any(|p| p.to_string_lossy().ends_with(".log.tmp")) {
        if compacting.is_finished() {
            break;
        }
        std::thread::yield_now();
    }
    store.close().unwrap();
    let outcome = compacting.join().unwrap();
    assert!(matches!(outcome, Ok(_) | Err(chronicle::Error::Closed)), "{outcome:?}");
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(all_events(&store), expected);
    assert!(files(dir.path()).iter().all(|p| !p.to_string_lossy().ends_with(".tmp")));
}
