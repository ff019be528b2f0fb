//! The behaviour suite of `chronicle_testkit::conformance`, run on disk and in memory: the
//! in-memory store is the same engine and must answer exactly as the on-disk one.

use chronicle::{Durability, Options, Store};
use chronicle_testkit::conformance;

#[test]
fn on_disk_store_passes_the_behaviour_suite() {
    let dirs = std::sync::Mutex::new(Vec::new());
    let make = || {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        dirs.lock().expect("dirs").push(dir);
        store
    };
    conformance::run_all(&make).unwrap();
}

#[test]
fn on_disk_buffered_store_passes_the_behaviour_suite() {
    let dirs = std::sync::Mutex::new(Vec::new());
    let make = || {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_with(dir.path(), Options::default().durability(Durability::Buffered)).expect("open");
        dirs.lock().expect("dirs").push(dir);
        store
    };
    conformance::run_all(&make).unwrap();
}

#[test]
fn in_memory_store_passes_the_behaviour_suite() {
    conformance::run_all(&|| Store::open_in_memory().expect("open")).unwrap();
}

#[test]
fn in_memory_store_with_small_segments_passes_the_behaviour_suite() {
    // Many sealed segments: rolls, maps of sealed segments and compaction across them.
    conformance::run_all(&|| Store::open_in_memory_with(Options::default().segment_bytes(4096)).expect("open"))
        .unwrap();
}

#[test]
fn in_memory_store_touches_no_file_and_forgets_on_drop() {
    let store = Store::open_in_memory().expect("open");
    assert_eq!(store.path(), std::path::Path::new(chronicle::IN_MEMORY_DIR));
    assert!(!store.path().exists(), "the virtual directory must not be created");
    store.append("s", chronicle::ExpectedVersion::NoStream, [chronicle::NewEvent::new("T", "x")]).expect("append");
    store.compact().expect("compact");
    assert!(!store.path().exists());
    drop(store);
    let fresh = Store::open_in_memory().expect("open");
    assert_eq!(fresh.stream_version("s").expect("version"), None, "each in-memory store starts empty");
}
