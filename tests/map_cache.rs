//! Proves that the bound on mapped segments never pulls bytes from under a reader: with one
//! sealed segment mapped at a time, events held across evictions keep their data, and
//! readers on several threads racing each other and repeated compactions read every event
//! whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chronicle::{Durability, ExpectedVersion, NewEvent, Options, SEGMENT_BYTES_MIN, Store};

const SEGMENTS: u64 = 200;
const STREAMS: u64 = 10;

fn options() -> Options {
    Options::default().segment_size(SEGMENT_BYTES_MIN).durability(Durability::Buffered).mapped_segments(1)
}

fn data(i: u64) -> String {
    format!("event {i} {}", "x".repeat((i % 97) as usize))
}

/// One event per segment, to streams `s-0` .. `s-9` in turn.
fn build(store: &Store) {
    for i in 0..SEGMENTS {
        store.append(&format!("s-{}", i % STREAMS), ExpectedVersion::Any, [NewEvent::new("E", data(i))]).unwrap();
        store.seal().unwrap();
    }
}

#[test]
fn events_keep_their_bytes_after_their_segment_is_unmapped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    build(&store);
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    // Held while every other segment is mapped in turn (each unmapping the one before).
    let held: Vec<_> = store.read_stream("s-3", 0).unwrap().map(Result::unwrap).collect();
    for _ in 0..3 {
        assert_eq!(store.read_all(0).unwrap().count() as u64, SEGMENTS);
    }
    for (k, event) in held.iter().enumerate() {
        assert_eq!(event.data, data(k as u64 * STREAMS + 3).as_bytes(), "event {k} of s-3");
    }
}

#[test]
fn readers_race_evictions_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    build(&store);
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|t| {
            let (store, stop) = (store.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut passes = 0u32;
                while !stop.load(Ordering::Relaxed) || passes == 0 {
                    // Streams s-0 .. s-4 are deleted one by one below; the others stay whole.
                    for s in 5..STREAMS {
                        let events: Vec<_> =
                            store.read_stream(&format!("s-{s}"), 0).unwrap().map(Result::unwrap).collect();
                        assert_eq!(events.len() as u64, SEGMENTS / STREAMS, "thread {t}: s-{s}");
                        for (k, event) in events.iter().enumerate() {
                            assert_eq!(event.data, data(k as u64 * STREAMS + s).as_bytes());
                        }
                    }
                    let mut last = None;
                    for event in store.read_all(0).unwrap() {
                        let event = event.unwrap();
                        assert!(last.is_none_or(|p| p < event.position));
                        last = Some(event.position);
                    }
                    passes += 1;
                }
                passes
            })
        })
        .collect();
    for s in 0..5 {
        store.delete_stream(&format!("s-{s}"), ExpectedVersion::Any).unwrap();
        let report = store.compact().unwrap();
        assert_eq!(report.events_removed, SEGMENTS / STREAMS, "{report:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.read_all(0).unwrap().count() as u64, SEGMENTS / 2);
}
