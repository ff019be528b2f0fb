//! Proves what each durability mode promises across a power loss that keeps nothing unsynced
//! (`SimStorage::crash` with a seed ≡ 0 mod 4): Sync keeps every acknowledged append,
//! Periodic keeps appends older than its interval, Buffered keeps what `sync()` covered.

use std::sync::Arc;
use std::time::Duration;

use chronicle::{Durability, ExpectedVersion, NewEvent, Options, Store};
use chronicle_testkit::SimStorage;

const DIR: &str = "/store";
/// A crash image that keeps only durable bytes and directory entries.
const NOTHING_UNSYNCED: u64 = 0;

fn open(sim: &SimStorage, durability: Durability) -> Store {
    Store::open_with_storage(DIR, Options::default().durability(durability), Arc::new(sim.clone())).unwrap()
}

fn append(store: &Store, stream: &str) {
    store.append(stream, ExpectedVersion::Any, [NewEvent::new("T", stream.as_bytes().to_vec())]).unwrap();
}

fn versions_after_power_loss(sim: &SimStorage, stream: &str) -> Option<u64> {
    let image = sim.crash(NOTHING_UNSYNCED);
    let store = open(&image, Durability::Sync);
    let version = store.stream_version(stream).unwrap();
    store.close().unwrap();
    version
}

#[test]
fn sync_keeps_every_acknowledged_append() {
    let sim = SimStorage::new();
    let store = open(&sim, Durability::Sync);
    append(&store, "s");
    append(&store, "s");
    assert_eq!(versions_after_power_loss(&sim, "s"), Some(1));
}

#[test]
fn periodic_syncs_within_its_interval() {
    let sim = SimStorage::new();
    let store = open(&sim, Durability::Periodic(Duration::from_millis(10)));
    append(&store, "s");
    // The bound is a liveness limit for the writer's timer, not a performance assertion.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while versions_after_power_loss(&sim, "s").is_none() {
        assert!(std::time::Instant::now() < deadline, "the periodic fsync never happened");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(versions_after_power_loss(&sim, "s"), Some(0));
}

#[test]
fn buffered_waits_for_sync() {
    let sim = SimStorage::new();
    let store = open(&sim, Durability::Buffered);
    append(&store, "s");
    assert_eq!(versions_after_power_loss(&sim, "s"), None, "Buffered must not fsync per append");
    store.sync().unwrap();
    assert_eq!(versions_after_power_loss(&sim, "s"), Some(0));
    append(&store, "s");
    store.close().unwrap();
    assert_eq!(versions_after_power_loss(&sim, "s"), Some(1), "close syncs");
}
