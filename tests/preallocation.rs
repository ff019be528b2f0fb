//! Preallocated segments (segment-format.md §3.5): the next segment is zero-filled ahead of
//! its roll, so the active segment's log usually ends before its file. Proves that recovery
//! finds the end of the log in zeros without cutting anything, cuts a torn record followed
//! by zeros, rejects stale records of another segment, still reports damage that a later
//! durable mark proves, survives a crash at each step of preparing and using the next
//! segment, and that a version 1 store keeps opening and appending.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chronicle::storage::{OpenMode, Storage};
use chronicle::{Durability, Error, ExpectedVersion, NewEvent, Options, Store};
use chronicle_testkit::SimStorage;
use common::{copy_store_dir, file_len, read_all, segment_files};

const SEGMENT_BYTES: u64 = 16 << 10;

fn options() -> Options {
    Options::default().segment_bytes(SEGMENT_BYTES).durability(Durability::Sync)
}

/// Data ending in a non-zero byte, so the last non-zero byte of a segment ends its log.
fn data(i: u64) -> Vec<u8> {
    format!("event {i} ........................................").into_bytes()
}

fn append(store: &Store, from: u64, count: u64) {
    for i in from..from + count {
        store.append(&format!("s-{}", i % 3), ExpectedVersion::Any, [NewEvent::new("E", data(i))]).unwrap();
    }
}

/// One past the last non-zero byte of the file: the end of the log of a preallocated segment
/// whose last record ends in a non-zero byte.
fn log_end(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    bytes.iter().rposition(|&b| b != 0).map_or(0, |at| at as u64 + 1)
}

fn header_version(path: &Path) -> u32 {
    let bytes = std::fs::read(path).unwrap();
    u32::from_le_bytes(bytes[8..12].try_into().unwrap())
}

/// A store whose active segment is preallocated (a prepared file, or zero-filled ahead of
/// its log), copied while open after at least one roll: what a `kill -9` leaves. Returns the
/// copy and the events appended.
fn crashed_with_preallocated_tail() -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let mut count = 0;
    while segment_files(dir.path()).len() < 2
        || segment_files(dir.path()).last().is_none_or(|last| file_len(last) != SEGMENT_BYTES)
    {
        append(&store, count, 10);
        count += 10;
        assert!(count < 5000, "no roll used a preallocated segment");
    }
    append(&store, count, 3);
    count += 3;
    let copy = tempfile::tempdir().unwrap();
    copy_store_dir(dir.path(), copy.path());
    store.close().unwrap();
    (copy, count)
}

fn active_segment(dir: &Path) -> PathBuf {
    segment_files(dir).pop().unwrap()
}

fn check_events(store: &Store, count: u64) {
    let events = read_all(store);
    assert_eq!(events.len() as u64, count);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.position, i as u64);
        assert_eq!(&event.data[..], &data(i as u64)[..]);
    }
}

#[test]
fn a_zero_filled_tail_after_the_last_commit_group_is_the_end_of_the_log() {
    let (dir, count) = crashed_with_preallocated_tail();
    let active = active_segment(dir.path());
    assert_eq!(header_version(&active), 2);
    let end = log_end(&active);
    assert!(end < SEGMENT_BYTES);
    let store = Store::open_with(dir.path(), options()).unwrap();
    check_events(&store, count);
    // Nothing was cut: the zeros stay allocated for the appends to come.
    assert_eq!(file_len(&active), SEGMENT_BYTES);
    assert_eq!(log_end(&active), end);
    append(&store, count, 5);
    store.close().unwrap();
    // A clean close trims the preallocated space.
    assert_eq!(file_len(&active), log_end(&active));
    let store = Store::open_with(dir.path(), options()).unwrap();
    check_events(&store, count + 5);
    store.close().unwrap();
    assert!(!dir.path().join("segment-next.tmp").exists());
}

/// No roll near (64 MiB segments): under `Durability::Sync` a new store's first segment and
/// the active segment after a reopen are zero-filled ahead of their log, a crash image of
/// either opens with every event and nothing cut, a clean close trims the zeros, and a
/// `Buffered` store's segment grows with its log.
#[test]
fn the_active_segment_is_zero_filled_ahead_of_its_log_without_a_roll() {
    let sync = Options::default().durability(Durability::Sync);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), sync.clone()).unwrap();
    append(&store, 0, 20);
    assert_eq!(segment_files(dir.path()).len(), 1);
    let active = active_segment(dir.path());
    let end = log_end(&active);
    assert!(file_len(&active) >= end + (60 << 10), "{} bytes for a log of {end}", file_len(&active));
    assert!(file_len(&active) <= 1 << 20, "a short-lived store writes few zeros");

    // Crash image of the new store.
    let image = tempfile::tempdir().unwrap();
    copy_store_dir(dir.path(), image.path());
    let image_active = active_segment(image.path());
    let image_len = file_len(&image_active);
    let reopened = Store::open_with(image.path(), sync.clone()).unwrap();
    check_events(&reopened, 20);
    assert_eq!(file_len(&image_active), image_len, "nothing cut");
    append(&reopened, 20, 5);
    reopened.close().unwrap();
    assert_eq!(file_len(&image_active), log_end(&image_active), "a clean close trims");

    store.close().unwrap();
    assert_eq!(file_len(&active), end, "a clean close trims");
    // After a reopen the active segment is zero-filled ahead again.
    let store = Store::open_with(dir.path(), sync.clone()).unwrap();
    append(&store, 20, 3);
    let end = log_end(&active);
    assert!(file_len(&active) >= end + (60 << 10), "{} bytes for a log of {end}", file_len(&active));
    let image = tempfile::tempdir().unwrap();
    copy_store_dir(dir.path(), image.path());
    store.close().unwrap();
    assert_eq!(file_len(&active), end);
    let reopened = Store::open_with(image.path(), sync).unwrap();
    check_events(&reopened, 23);
    let report = reopened.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    reopened.close().unwrap();

    let buffered = tempfile::tempdir().unwrap();
    let store = Store::open_with(buffered.path(), Options::default().durability(Durability::Buffered)).unwrap();
    append(&store, 0, 20);
    store.sync().unwrap();
    let active = active_segment(buffered.path());
    assert_eq!(file_len(&active), log_end(&active), "no zeros ahead without Sync");
    store.close().unwrap();
}

#[test]
fn a_torn_record_followed_by_zeros_is_cut_back_to_zeros() {
    let (dir, count) = crashed_with_preallocated_tail();
    let active = active_segment(dir.path());
    let end = log_end(&active);
    let mut bytes = std::fs::read(&active).unwrap();
    // The first 40 bytes of a copy of the segment's first record: a record whose length
    // says it runs on, into zeros.
    let torn: Vec<u8> = bytes[64..104].to_vec();
    bytes[end as usize..end as usize + torn.len()].copy_from_slice(&torn);
    std::fs::write(&active, &bytes).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    check_events(&store, count);
    assert_eq!(file_len(&active), SEGMENT_BYTES);
    assert_eq!(log_end(&active), end, "the torn bytes are zeros again");
    append(&store, count, 4);
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    check_events(&store, count + 4);
}

#[test]
fn valid_records_of_another_segment_after_the_end_are_not_read_as_this_ones() {
    let (dir, count) = crashed_with_preallocated_tail();
    let segments = segment_files(dir.path());
    let active = segments.last().unwrap().clone();
    let sealed = std::fs::read(&segments[0]).unwrap();
    let end = log_end(&active) as usize;
    let mut bytes = std::fs::read(&active).unwrap();
    // Whole, valid commit groups of the first segment (their durable marks lie far past
    // `end`), salted with that segment's id.
    let stale = &sealed[64..sealed.len().min(64 + 2048)];
    let room = bytes.len() - end;
    bytes[end..end + stale.len().min(room)].copy_from_slice(&stale[..stale.len().min(room)]);
    std::fs::write(&active, &bytes).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    check_events(&store, count);
    assert_eq!(log_end(&active), end as u64);
}

#[test]
fn damage_before_a_later_durable_mark_is_reported_in_a_preallocated_segment() {
    let (dir, _) = crashed_with_preallocated_tail();
    let active = active_segment(dir.path());
    let mut bytes = std::fs::read(&active).unwrap();
    // The first record of the active segment: every later group's mark lies past it.
    bytes[64 + 70] ^= 0x10;
    std::fs::write(&active, &bytes).unwrap();
    match Store::open_with(dir.path(), options()) {
        Err(Error::Corruption { offset, .. }) => assert_eq!(offset, 64),
        other => panic!("expected corruption at offset 64, got {other:?}"),
    }
}

#[test]
fn an_interrupted_preparation_leaves_a_store_that_opens() {
    let (dir, count) = crashed_with_preallocated_tail();
    // A prepared file cut short, as a crash while zero-filling leaves it.
    std::fs::write(dir.path().join("segment-next.tmp"), vec![0u8; 5000]).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert!(!dir.path().join("segment-next.tmp").exists());
    check_events(&store, count);
    append(&store, count, 2);
    store.close().unwrap();
}

/// Power loss after every storage call of a workload that prepares and uses next segments
/// (the calls of preparing run on the writer thread with `SimStorage`, in a fixed order):
/// every acknowledged event survives, in order, and the store appends afterwards.
#[test]
fn power_loss_at_each_step_of_preparing_and_using_the_next_segment() {
    let root = Path::new("/store");
    let sim_options = Options::default().segment_bytes(4096).durability(Durability::Sync);
    let workload = |sim: &SimStorage| -> u64 {
        let Ok(store) = Store::open_with_storage(root, sim_options.clone(), Arc::new(sim.clone())) else { return 0 };
        let mut acked = 0;
        for i in 0..150u64 {
            match store.append("s", ExpectedVersion::Any, [NewEvent::new("E", data(i))]) {
                Ok(_) => acked += 1,
                Err(_) => break,
            }
        }
        drop(store);
        acked
    };
    let probe = SimStorage::new();
    assert_eq!(workload(&probe), 150);
    let total_calls = probe.calls();
    let prepared = probe.crash(1).list_dir(root).unwrap();
    assert!(prepared.iter().filter(|n| n.ends_with(".log")).count() > 3, "{prepared:?}");
    let mut opened = 0;
    for stop in 1..=total_calls {
        let sim = SimStorage::new();
        sim.stop_at(stop);
        let acked = workload(&sim);
        for seed in [stop * 4, stop * 4 + 1, stop * 4 + 2, stop * 4 + 3] {
            let image = sim.crash(seed);
            let store = Store::open_with_storage(root, sim_options.clone(), Arc::new(image.clone()))
                .unwrap_or_else(|error| panic!("open after power loss at call {stop} (seed {seed}): {error}"));
            let events = read_all(&store);
            assert!(events.len() as u64 >= acked, "call {stop} seed {seed}: {} < {acked}", events.len());
            for (i, event) in events.iter().enumerate() {
                assert_eq!(&event.data[..], &data(i as u64)[..], "call {stop} seed {seed}");
            }
            let next = events.len() as u64;
            store.append("s", ExpectedVersion::Any, [NewEvent::new("E", data(next))]).unwrap();
            drop(store);
            let store = Store::open_with_storage(root, sim_options.clone(), Arc::new(image)).unwrap();
            assert_eq!(read_all(&store).len() as u64, next + 1);
            opened += 1;
        }
    }
    assert!(opened > 100);
}

/// A store written by format version 1 (main before preallocation): its active segment is
/// appended to as version 1 (never preallocated), the next segment is version 2, and both
/// read back after a reopen.
#[test]
fn a_version_1_store_keeps_opening_and_appending_across_a_roll() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let old_active = active_segment(dir.path());
    assert_eq!(header_version(&old_active), 1);
    let store = Store::open_with(dir.path(), Options::default().segment_bytes(4096)).unwrap();
    let before = read_all(&store);
    let mut appended = 0u64;
    while segment_files(dir.path()).len() < 6 {
        store.append("after-upgrade", ExpectedVersion::Any, [NewEvent::new("E", data(appended))]).unwrap();
        appended += 1;
        let segments = segment_files(dir.path());
        if segments.last() == Some(&old_active) {
            // Still the version 1 segment: it grows with its log, never preallocated.
            assert_eq!(log_end(&old_active), file_len(&old_active));
        }
    }
    store.close().unwrap();
    assert_eq!(header_version(&old_active), 1);
    assert_eq!(header_version(&active_segment(dir.path())), 2);
    let store = Store::open_with(dir.path(), Options::default().segment_bytes(4096)).unwrap();
    let after = read_all(&store);
    assert_eq!(after.len(), before.len() + appended as usize);
    assert_eq!(&after[..before.len()], &before[..]);
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    store.close().unwrap();
}

#[test]
fn memory_storage_never_holds_preallocated_space() {
    let store = Store::open_in_memory_with(Options::default().segment_bytes(4096)).unwrap();
    append(&store, 0, 200);
    check_events(&store, 200);
    let storage = chronicle::storage::MemoryStorage::new();
    // The storage call itself: zero_fill leaves bytes past the end absent.
    storage.create_dir_all(Path::new("/d")).unwrap();
    let file = storage.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
    file.write_all_at(b"abc", 0).unwrap();
    file.zero_fill(1, 1 << 20).unwrap();
    assert_eq!(file.len().unwrap(), 3);
    let mut back = [9u8; 3];
    file.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, *b"a\0\0");
}

/// Not a test: the A/B figure of docs/performance.md ("Preallocated segments"), run by hand
/// with `cargo test --release --test preallocation -- --ignored --nocapture`. In one process,
/// alternating short bursts: durable 1-event appends into a store whose active segment is a
/// prepared (zero-filled) one against a store whose active segment grows, then the latency
/// of the appends that roll (2 MiB segments, 1000-event appends).
#[test]
#[ignore = "measurement, run by hand"]
fn measure_preallocated_against_growing_segments() {
    use std::time::{Duration, Instant};
    let burst = Duration::from_millis(300);
    let batch: Vec<NewEvent> = (0..1000).map(|i| NewEvent::new("E", data(i))).collect();
    let prepared_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let growing_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let prepared = Store::open_with(prepared_dir.path(), Options::default().durability(Durability::Sync)).unwrap();
    // A quarter of a segment, then time for the helper to zero-fill the next one, then a roll onto it.
    while file_len(&active_segment(prepared_dir.path())) < (16 << 20) + (1 << 20) {
        prepared.append("fill", ExpectedVersion::Any, batch.clone()).unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    prepared.seal().unwrap();
    assert_eq!(file_len(&active_segment(prepared_dir.path())), 64 << 20, "the roll used the prepared file");
    let growing = Store::open_with(growing_dir.path(), Options::default().durability(Durability::Sync)).unwrap();
    let run = |store: &Store, threads: usize, events: usize| -> f64 {
        let started = Instant::now();
        let total: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let batch = &batch[..events];
                    scope.spawn(move || {
                        let mut n = 0u64;
                        while started.elapsed() < burst {
                            store.append(&format!("t{t}"), ExpectedVersion::Any, batch.to_vec()).unwrap();
                            n += events as u64;
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        total as f64 / started.elapsed().as_secs_f64()
    };
    for (threads, events) in [(1, 1), (8, 1), (64, 1), (1, 1000)] {
        let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..9 {
            let x = run(&prepared, threads, events);
            let y = run(&growing, threads, events);
            ratios.push(x / y);
            a.push(x);
            b.push(y);
        }
        for v in [&mut a, &mut b, &mut ratios] {
            v.sort_by(|x, y| x.partial_cmp(y).unwrap());
        }
        println!(
            "threads {threads} events/append {events}: preallocated median {:.0} ev/s, growing median {:.0} ev/s, ratio per pair median {:.2} (min {:.2}, max {:.2})",
            a[4], b[4], ratios[4], ratios[0], ratios[8]
        );
    }
    prepared.close().unwrap();
    growing.close().unwrap();
    // Latency of appends that roll, against the others.
    let roll_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store =
        Store::open_with(roll_dir.path(), Options::default().segment_bytes(2 << 20).durability(Durability::Sync))
            .unwrap();
    let (mut rolling, mut others) = (Vec::new(), Vec::new());
    let mut segments = segment_files(roll_dir.path()).len();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let begin = Instant::now();
        store.append("r", ExpectedVersion::Any, batch.clone()).unwrap();
        let took = begin.elapsed().as_micros() as u64;
        let now = segment_files(roll_dir.path()).len();
        if now != segments {
            rolling.push(took)
        } else {
            others.push(took)
        }
        segments = now;
    }
    rolling.sort_unstable();
    others.sort_unstable();
    let pct = |v: &[u64], p: usize| v.get(v.len().saturating_sub(1) * p / 100).copied().unwrap_or(0);
    println!(
        "1000-event appends, 2 MiB segments: {} rolls, roll appends p50 {} µs max {} µs; other appends p50 {} µs p99 {} µs",
        rolling.len(),
        pct(&rolling, 50),
        pct(&rolling, 100),
        pct(&others, 50),
        pct(&others, 99)
    );
    store.close().unwrap();
}
