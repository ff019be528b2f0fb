//! Adversarial compaction: compacting twice and after reopen keeps every survivor
//! byte-identical; emptied segments vanish and reads (from any position, both directions)
//! cross the gaps; erasure reaches every file kind, also for events of the active segment;
//! tombstones survive rewrites; and compaction racing rolls, deletes, snapshots, retention,
//! readers, a second compact(), close() and drop leaves every acknowledged event exactly once.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use chronicle::{Error, ExpectedVersion, NewEvent, Options, RecordedEvent, Retention, Store};

use common::{index_files, read_all, read_all_backward, read_stream, segment_files};

fn small_segments() -> Options {
    Options::default().segment_bytes(4096)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file of the directory (all kinds) that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && contains(&std::fs::read(&path).unwrap(), needle) {
            found.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    found
}

fn event(stream: &str, i: u64) -> NewEvent {
    NewEvent::new(format!("Type{}", i % 3), format!("{stream}-data-{i}"))
        .with_metadata(format!("{stream}-meta-{i}"))
        .with_correlation_id(u128::from(i) << 64 | 7)
        .with_causation_id(u128::from(i) + 11)
}

/// Streams "a", "b", "c" interleaved, one event per append, `rounds` rounds.
fn interleave(store: &Store, rounds: u64) {
    for i in 0..rounds {
        for stream in ["a", "b", "c"] {
            store.append(stream, ExpectedVersion::Any, [event(stream, i)]).unwrap();
        }
    }
}

fn without(events: &[RecordedEvent], drop: impl Fn(&RecordedEvent) -> bool) -> Vec<RecordedEvent> {
    events.iter().filter(|e| !drop(e)).cloned().collect()
}

fn remove_index_files(dir: &Path) {
    for path in index_files(dir) {
        std::fs::remove_file(path).unwrap();
    }
}

#[test]
fn compacting_twice_and_after_reopen_keeps_survivors_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    interleave(&store, 80);
    let original = read_all(&store);
    assert!(segment_files(dir.path()).len() > 4, "the test needs several sealed segments");

    store.set_stream_retention("a", Retention::MaxCount(30)).unwrap();
    let first = store.compact().unwrap();
    assert_eq!(first.events_removed, 50);
    let expected = without(&original, |e| e.stream_id == "a" && e.version < 50);
    assert_eq!(read_all(&store), expected);

    // The same segments again: already compacted segments are compacted a second time.
    store.set_stream_retention("a", Retention::MaxCount(10)).unwrap();
    store.delete_stream("b", ExpectedVersion::Exact(79)).unwrap();
    let second = store.compact().unwrap();
    assert_eq!(second.events_removed, 20 + 80);
    let expected = without(&original, |e| (e.stream_id == "a" && e.version < 70) || e.stream_id == "b");
    assert_eq!(read_all(&store), expected);
    assert_eq!(read_all_backward(&store), expected.iter().rev().cloned().collect::<Vec<_>>());
    store.close().unwrap();

    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(read_all(&store), expected, "after reopen");
    assert_eq!(store.compact().unwrap().events_removed, 0, "nothing left to discard");
    assert_eq!(read_all(&store), expected);
    assert_eq!(store.stream_version("a").unwrap(), Some(79));
    assert_eq!(store.stream_version("c").unwrap(), Some(79));
    assert!(matches!(store.stream_version("b"), Err(Error::StreamDeleted { .. })));
    assert_eq!(store.streams().unwrap(), ["a", "c"]);
    store.close().unwrap();

    remove_index_files(dir.path());
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(read_all(&store), expected, "after reopen with every index rebuilt");
    assert_eq!(read_stream(&store, "a").first().unwrap().version, 70);
    let next = store.append("a", ExpectedVersion::Exact(79), [event("a", 80)]).unwrap();
    assert_eq!(next.first_position, original.last().unwrap().position + 2, "the tombstone's position is not reused");
}

/// Checks `read_all(p)` and `read_all_backward(Some(p))` for every position around the log.
fn check_every_start(store: &Store, expected: &[RecordedEvent], end: u64, label: &str) {
    for p in 0..=end + 1 {
        let forward: Vec<_> = store.read_all(p).unwrap().map(Result::unwrap).collect();
        let want: Vec<_> = expected.iter().filter(|e| e.position >= p).cloned().collect();
        assert_eq!(forward, want, "{label}: read_all({p})");
        let backward: Vec<_> = store.read_all_backward(Some(p)).unwrap().map(Result::unwrap).collect();
        let want: Vec<_> = expected.iter().rev().filter(|e| e.position <= p).cloned().collect();
        assert_eq!(backward, want, "{label}: read_all_backward({p})");
    }
}

#[test]
fn emptied_segments_are_removed_and_reads_cross_the_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    // Whole segments of "gone", then a mixed stretch, then whole segments of "gone" again.
    for i in 0..100u64 {
        store.append("gone", ExpectedVersion::Any, [NewEvent::new("G", vec![i as u8; 150])]).unwrap();
    }
    for i in 0..30u64 {
        store.append("kept", ExpectedVersion::Any, [NewEvent::new("K", format!("kept-{i}"))]).unwrap();
        store.append("gone", ExpectedVersion::Any, [NewEvent::new("G", vec![i as u8; 150])]).unwrap();
    }
    for i in 0..100u64 {
        store.append("gone", ExpectedVersion::Any, [NewEvent::new("G", vec![i as u8; 150])]).unwrap();
    }
    store.append("kept", ExpectedVersion::Any, [NewEvent::new("K", "last")]).unwrap();
    let original = read_all(&store);
    let end = original.last().unwrap().position;
    let segments_before = segment_files(dir.path()).len();
    store.delete_stream("gone", ExpectedVersion::Any).unwrap();
    let report = store.compact().unwrap();
    assert_eq!(report.events_removed, 230);
    let segments_after = segment_files(dir.path()).len();
    assert!(
        segments_after + 4 < segments_before,
        "segments with no survivor are removed: {segments_before} -> {segments_after}"
    );
    let expected = without(&original, |e| e.stream_id == "gone");
    check_every_start(&store, &expected, end + 1, "after compaction");
    store.close().unwrap();

    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    check_every_start(&store, &expected, end + 1, "after reopen");
    assert_eq!(store.streams().unwrap(), ["kept"]);
    // end + 1 is the tombstone; the next event follows it.
    let next = store.append("kept", ExpectedVersion::Exact(30), [NewEvent::new("K", "next")]).unwrap();
    assert_eq!(next.first_position, end + 2);
    store.close().unwrap();

    remove_index_files(dir.path());
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    let mut expected = expected;
    expected.push(read_stream(&store, "kept").pop().unwrap());
    check_every_start(&store, &expected, end + 2, "after reopen with every index rebuilt");
}

#[test]
fn compacting_away_the_first_segments_keeps_positions_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    for i in 0..200u64 {
        store.append("old", ExpectedVersion::Any, [NewEvent::new("O", vec![i as u8; 100])]).unwrap();
    }
    store.set_stream_retention("old", Retention::MaxCount(1)).unwrap();
    store.compact().unwrap();
    assert_eq!(segment_files(dir.path()).len(), 2, "one segment with the last event, then the active one");
    store.close().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    let left = read_all(&store);
    assert_eq!(left.iter().map(|e| (e.version, e.position)).collect::<Vec<_>>(), [(199, 199)]);
    let next = store.append("new", ExpectedVersion::NoStream, [NewEvent::new("N", "")]).unwrap();
    assert_eq!(next.first_position, 200);
}

const SECRETS: [&[u8]; 3] = [b"secret-data-9f8e7d", b"secret-meta-6c5b4a", b"secret-snapshot-3e2d1c"];

fn append_secrets(store: &Store, stream: &str, count: u64) {
    for i in 0..count {
        let data = [SECRETS[0], format!("-{i}").as_bytes()].concat();
        let metadata = [SECRETS[1], format!("-{i}").as_bytes()].concat();
        store.append(stream, ExpectedVersion::Any, [NewEvent::new("Private", data).with_metadata(metadata)]).unwrap();
    }
}

fn assert_erased(dir: &Path, label: &str) {
    for secret in SECRETS {
        let found = files_containing(dir, secret);
        assert!(found.is_empty(), "{label}: {:?} still in {found:?}", String::from_utf8_lossy(secret));
    }
}

#[test]
fn erasure_reaches_events_of_the_active_segment_and_every_file_kind() {
    let dir = tempfile::tempdir().unwrap();
    // Default segment size: every event sits in the active segment when compact() is called.
    let store = Store::open(dir.path()).unwrap();
    store.append("public", ExpectedVersion::Any, [NewEvent::new("P", "public-0")]).unwrap();
    append_secrets(&store, "private", 5);
    store.append("public", ExpectedVersion::Any, [NewEvent::new("P", "public-1")]).unwrap();
    store.save_snapshot("private", 2, &[SECRETS[2], b"-old"].concat()).unwrap();
    store.save_snapshot("private", 4, &[SECRETS[2], b"-new"].concat()).unwrap();
    // A checkpoint index and sealed-segment index exist too.
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(!files_containing(dir.path(), SECRETS[0]).is_empty());
    let public = without(&read_all(&store), |e| e.stream_id == "private");
    // An iterator over the old segment that outlives the compaction.
    let mut holder = store.read_stream("private", 0).unwrap();
    assert_eq!(holder.next().unwrap().unwrap().version, 0);

    store.delete_stream("private", ExpectedVersion::Exact(4)).unwrap();
    let report = store.compact().unwrap();
    assert_eq!((report.events_removed, report.snapshots_removed), (5, 2));
    assert_erased(dir.path(), "after compact");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".snap"))
    );
    // The old reader still finishes from its view (the file is unlinked, not in the directory).
    assert_eq!(holder.map(|e| e.unwrap().version).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_erased(dir.path(), "after the old reader finished");
    assert_eq!(read_all(&store), public);
    store.close().unwrap();
    assert_erased(dir.path(), "after close");
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read_all(&store), public);
    assert!(matches!(store.read_stream("private", 0), Err(Error::StreamDeleted { .. })));
}

#[test]
fn erasure_of_a_stream_deleted_in_an_earlier_session() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    for _ in 0..10 {
        append_secrets(&store, "private", 5);
        store.append("public", ExpectedVersion::Any, [NewEvent::new("P", "p")]).unwrap();
    }
    store.save_snapshot("private", 49, SECRETS[2]).unwrap();
    store.delete_stream("private", ExpectedVersion::Any).unwrap();
    store.close().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    store.compact().unwrap();
    assert_erased(dir.path(), "compaction in a later session");
    assert_eq!(read_stream(&store, "public").len(), 10);
}

#[test]
fn tombstone_survives_rewrites_of_its_segment_and_reopen_without_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    store.append("doomed", ExpectedVersion::NoStream, [NewEvent::new("D", "doomed-data")]).unwrap();
    // The tombstone shares its segment with events that retention later discards.
    store.delete_stream("doomed", ExpectedVersion::Exact(0)).unwrap();
    for i in 0..20u64 {
        store.append("trim", ExpectedVersion::Any, [NewEvent::new("T", vec![i as u8; 50])]).unwrap();
    }
    store.set_stream_retention("trim", Retention::MaxCount(10)).unwrap();
    store.compact().unwrap();
    store.set_stream_retention("trim", Retention::MaxCount(2)).unwrap();
    store.compact().unwrap();
    store.compact().unwrap();
    let check = |store: &Store, label: &str| {
        assert!(matches!(store.read_stream("doomed", 0), Err(Error::StreamDeleted { .. })), "{label}");
        assert!(matches!(store.stream_version("doomed"), Err(Error::StreamDeleted { .. })), "{label}");
        let again = store.append("doomed", ExpectedVersion::Any, [NewEvent::new("D", "")]);
        assert!(matches!(again, Err(Error::StreamDeleted { .. })), "{label}: {again:?}");
        let recreate = store.append("doomed", ExpectedVersion::NoStream, [NewEvent::new("D", "")]);
        assert!(matches!(recreate, Err(Error::StreamDeleted { .. })), "{label}: {recreate:?}");
        assert_eq!(store.streams().unwrap(), ["trim"], "{label}");
        assert_eq!(read_stream(store, "trim").iter().map(|e| e.version).collect::<Vec<_>>(), [18, 19], "{label}");
    };
    check(&store, "after compactions");
    store.close().unwrap();
    assert!(files_containing(dir.path(), b"doomed-data").is_empty());
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    check(&store, "after reopen");
    store.close().unwrap();
    remove_index_files(dir.path());
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    check(&store, "after reopen without index files");
}

#[test]
fn readers_mid_iteration_keep_their_view_across_repeated_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    interleave(&store, 60);
    let all = read_all(&store);
    let a: Vec<_> = all.iter().filter(|e| e.stream_id == "a").cloned().collect();
    let b: Vec<_> = all.iter().filter(|e| e.stream_id == "b").cloned().collect();
    let mut forward = store.read_all(0).unwrap();
    let mut backward = store.read_all_backward(None).unwrap();
    let mut stream_a = store.read_stream("a", 0).unwrap();
    let mut stream_b_back = store.read_stream_backward("b", None).unwrap();
    let mut seen_forward: Vec<_> = forward.by_ref().take(50).map(Result::unwrap).collect();
    let mut seen_backward: Vec<_> = backward.by_ref().take(50).map(Result::unwrap).collect();
    let mut seen_a: Vec<_> = stream_a.by_ref().take(10).map(Result::unwrap).collect();
    let mut seen_b: Vec<_> = stream_b_back.by_ref().take(10).map(Result::unwrap).collect();

    store.set_stream_retention("a", Retention::MaxCount(5)).unwrap();
    store.compact().unwrap();
    store.delete_stream("b", ExpectedVersion::Any).unwrap();
    store.compact().unwrap();
    for i in 60..65 {
        store.append("c", ExpectedVersion::Any, [event("c", i)]).unwrap();
    }
    store.compact().unwrap();

    seen_forward.extend(forward.map(Result::unwrap));
    seen_backward.extend(backward.map(Result::unwrap));
    seen_a.extend(stream_a.map(Result::unwrap));
    seen_b.extend(stream_b_back.map(Result::unwrap));
    assert_eq!(seen_forward, all);
    assert_eq!(seen_backward, all.iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(seen_a, a);
    assert_eq!(seen_b, b.iter().rev().cloned().collect::<Vec<_>>());
}

/// Data of the `i`th event of a live stream: lets readers check every byte they get.
fn live_data(stream: &str, version: u64) -> Vec<u8> {
    format!("{stream}:{version}:{}", "x".repeat((version % 97) as usize)).into_bytes()
}

#[test]
fn compaction_races_rolls_deletes_snapshots_retention_readers_and_itself() {
    const LIVE_STREAMS: usize = 3;
    const APPENDS_PER_WRITER: u64 = 600;
    const TEMP_STREAMS: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(LIVE_STREAMS + 6));
    let mut workers = Vec::new();
    // Writers: each owns one live stream and appends with exact expectations (segments roll
    // every few dozen events).
    let mut writers = Vec::new();
    for w in 0..LIVE_STREAMS {
        let (store, start) = (store.clone(), Arc::clone(&start));
        writers.push(std::thread::spawn(move || {
            start.wait();
            let stream = format!("live-{w}");
            let mut acknowledged = Vec::new();
            for version in 0..APPENDS_PER_WRITER {
                let expected =
                    if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version - 1) };
                let result =
                    store.append(&stream, expected, [NewEvent::new("L", live_data(&stream, version))]).unwrap();
                assert_eq!(result.first_version, version);
                acknowledged.push(result.first_position);
            }
            (stream, acknowledged)
        }));
    }
    // Short-lived streams with snapshots, deleted while compaction runs.
    {
        let (store, start) = (store.clone(), Arc::clone(&start));
        workers.push(std::thread::spawn(move || {
            start.wait();
            for t in 0..TEMP_STREAMS {
                let stream = format!("temp-{t}");
                store.append(&stream, ExpectedVersion::NoStream, [NewEvent::new("T", "temp-secret")]).unwrap();
                store.save_snapshot(&stream, 0, b"temp-snapshot-secret").unwrap();
                store.delete_stream(&stream, ExpectedVersion::Exact(0)).unwrap();
            }
        }));
    }
    // A trimmed stream whose rule changes while compaction runs.
    {
        let (store, start) = (store.clone(), Arc::clone(&start));
        workers.push(std::thread::spawn(move || {
            start.wait();
            for i in 0..200u64 {
                store.append("trim", ExpectedVersion::Any, [NewEvent::new("T", i.to_le_bytes().to_vec())]).unwrap();
                if i % 20 == 0 {
                    store.set_stream_retention("trim", Retention::MaxCount(1 + i % 7)).unwrap();
                }
            }
        }));
    }
    // Two threads compacting in a loop.
    let mut compactors = Vec::new();
    for _ in 0..2 {
        let (store, start, done) = (store.clone(), Arc::clone(&start), Arc::clone(&done));
        compactors.push(std::thread::spawn(move || {
            start.wait();
            let mut runs = 0u32;
            while !done.load(Ordering::Acquire) || runs < 2 {
                store.compact().unwrap();
                runs += 1;
            }
            runs
        }));
    }
    // A reader checking every event it sees, both directions.
    let reader = {
        let (store, start, done) = (store.clone(), Arc::clone(&start), Arc::clone(&done));
        std::thread::spawn(move || {
            start.wait();
            let mut passes = 0u32;
            while !done.load(Ordering::Acquire) || passes < 2 {
                let forward: Vec<_> = store.read_all(0).unwrap().map(Result::unwrap).collect();
                assert!(forward.windows(2).all(|w| w[0].position < w[1].position));
                let mut last_live: HashMap<String, u64> = HashMap::new();
                for event in &forward {
                    if event.stream_id.starts_with("live-") {
                        assert_eq!(&event.data[..], &live_data(&event.stream_id, event.version)[..]);
                        let expected_version = last_live.get(&event.stream_id).map_or(0, |v| v + 1);
                        assert_eq!(event.version, expected_version, "live streams keep every event");
                        last_live.insert(event.stream_id.clone(), event.version);
                    }
                }
                let backward: Vec<_> = store.read_all_backward(None).unwrap().map(Result::unwrap).collect();
                assert!(backward.windows(2).all(|w| w[0].position > w[1].position));
                for w in 0..LIVE_STREAMS {
                    let stream = format!("live-{w}");
                    let events = store.read_stream(&stream, 0).unwrap().map(Result::unwrap);
                    for (i, event) in events.enumerate() {
                        assert_eq!(event.version, i as u64);
                        assert_eq!(&event.data[..], &live_data(&stream, event.version)[..]);
                    }
                }
                passes += 1;
            }
        })
    };
    start.wait();
    let acknowledged: Vec<(String, Vec<u64>)> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    for worker in workers {
        worker.join().unwrap();
    }
    done.store(true, Ordering::Release);
    for compactor in compactors {
        assert!(compactor.join().unwrap() >= 2);
    }
    reader.join().unwrap();
    store.compact().unwrap();

    let check = |store: &Store, label: &str| {
        for (stream, positions) in &acknowledged {
            let events = read_stream(store, stream);
            assert_eq!(events.iter().map(|e| e.position).collect::<Vec<_>>(), *positions, "{label}: {stream}");
            for event in &events {
                assert_eq!(&event.data[..], &live_data(stream, event.version)[..], "{label}");
            }
        }
        for t in 0..TEMP_STREAMS {
            assert!(matches!(store.read_stream(&format!("temp-{t}"), 0), Err(Error::StreamDeleted { .. })));
        }
        let trim = read_stream(store, "trim");
        assert_eq!(trim.last().unwrap().version, 199, "{label}");
        let all = read_all(store);
        assert!(all.windows(2).all(|w| w[0].position < w[1].position), "{label}");
    };
    check(&store, "after the race");
    assert!(files_containing(dir.path(), b"temp-secret").is_empty());
    assert!(files_containing(dir.path(), b"temp-snapshot-secret").is_empty());
    store.close().unwrap();
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    check(&store, "after reopen");
}

fn store_with_work_to_compact(dir: &Path) -> (Store, Vec<RecordedEvent>) {
    let store = Store::open_with(dir, small_segments()).unwrap();
    for i in 0..400u64 {
        store.append("gone", ExpectedVersion::Any, [NewEvent::new("G", vec![i as u8; 200])]).unwrap();
        if i % 4 == 0 {
            store.append("kept", ExpectedVersion::Any, [NewEvent::new("K", format!("kept-{i}"))]).unwrap();
        }
    }
    store.delete_stream("gone", ExpectedVersion::Any).unwrap();
    let kept = read_stream(&store, "kept");
    (store, kept)
}

#[test]
fn close_while_compaction_runs_leaves_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, kept) = store_with_work_to_compact(dir.path());
    let compacting = {
        let store = store.clone();
        std::thread::spawn(move || store.compact())
    };
    // close() waits for a running compaction; a compaction not yet started is refused.
    let closed = store.close();
    let compacted = compacting.join().unwrap();
    assert!(closed.is_ok(), "{closed:?}");
    assert!(matches!(compacted, Ok(_) | Err(Error::Closed)), "{compacted:?}");
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(read_all(&store), kept);
    store.compact().unwrap();
    assert_eq!(read_all(&store), kept);
}

#[test]
fn dropping_the_last_handle_while_automatic_compaction_runs_leaves_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments().compaction_threshold(1);
    let (store, kept) = {
        let (store, kept) = store_with_work_to_compact(dir.path());
        store.seal().unwrap();
        store.close().unwrap();
        (Store::open_with(dir.path(), options.clone()).unwrap(), kept)
    };
    // Any change nudges the compaction thread, which finds the deleted stream's bytes past
    // the threshold and starts; the last handle goes at once.
    store.set_stream_retention("kept", Retention::KeepAll).unwrap();
    drop(store);
    let store = Store::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(read_all(&store), kept);
    store.compact().unwrap();
    assert_eq!(read_all(&store), kept);
}

#[test]
fn compact_on_a_closed_store_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let other = store.clone();
    store.close().unwrap();
    assert!(matches!(other.compact(), Err(Error::Closed)));
}
