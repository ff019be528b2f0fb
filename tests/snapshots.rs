//! Proves snapshots round-trip, the newest wins, they survive reopen, a corrupted newest
//! snapshot falls back to the previous one, and bad snapshot arguments are rejected.

use chronicle::{Error, ExpectedVersion, NewEvent, SNAPSHOTS_KEPT, Store};

fn snapshot_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    files.sort();
    files
}

fn store_with_events(dir: &std::path::Path, stream: &str, count: u8) -> Store {
    let store = Store::open(dir).unwrap();
    store.append(stream, ExpectedVersion::Any, (0..count).map(|i| NewEvent::new("T", vec![i]))).unwrap();
    store
}

#[test]
fn round_trip_and_newest_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path(), "order-1", 10);
    assert_eq!(store.load_snapshot("order-1").unwrap(), None);
    store.save_snapshot("order-1", 3, b"state-3").unwrap();
    store.save_snapshot("order-1", 7, b"state-7").unwrap();
    let snapshot = store.load_snapshot("order-1").unwrap().unwrap();
    assert_eq!((snapshot.version, &snapshot.data[..]), (7, &b"state-7"[..]));
    // An older version saved later does not win: the newest version does.
    store.save_snapshot("order-1", 5, b"state-5").unwrap();
    assert_eq!(store.load_snapshot("order-1").unwrap().unwrap().version, 7);
    assert_eq!(snapshot_files(dir.path()).len(), SNAPSHOTS_KEPT);
}

#[test]
fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path(), "s", 3);
    store.save_snapshot("s", 2, b"").unwrap();
    store.save_snapshot("s", 1, &[7u8; 100_000]).unwrap();
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let snapshot = store.load_snapshot("s").unwrap().unwrap();
    assert_eq!((snapshot.version, snapshot.data.len()), (2, 0));
}

#[test]
fn corrupted_newest_falls_back_to_previous() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path(), "s", 5);
    store.save_snapshot("s", 1, b"older").unwrap();
    store.save_snapshot("s", 4, b"newer").unwrap();
    store.close().unwrap();
    let files = snapshot_files(dir.path());
    let newest = files.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let last = bytes.len() - 6;
    bytes[last] ^= 0x10;
    std::fs::write(newest, bytes).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let snapshot = store.load_snapshot("s").unwrap().unwrap();
    assert_eq!((snapshot.version, &snapshot.data[..]), (1, &b"older"[..]));
    // A truncated (torn) newest file falls back the same way.
    std::fs::write(newest, b"CHRNSNAP").unwrap();
    assert_eq!(store.load_snapshot("s").unwrap().unwrap().version, 1);
}

#[test]
fn rejects_versions_the_stream_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path(), "s", 2);
    assert!(matches!(store.save_snapshot("s", 2, b"x"), Err(Error::InvalidInput { .. })));
    assert!(matches!(store.save_snapshot("missing", 0, b"x"), Err(Error::InvalidInput { .. })));
    assert!(matches!(store.save_snapshot("", 0, b"x"), Err(Error::InvalidInput { .. })));
    assert!(snapshot_files(dir.path()).is_empty());
}

#[test]
fn hostile_stream_ids_stay_inside_the_directory() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("store");
    let store = Store::open(&dir).unwrap();
    for stream in ["../escape", "/etc/passwd", "a/b/c", "..", "nul\0byte", &"x".repeat(1000)] {
        store.append(stream, ExpectedVersion::Any, [NewEvent::new("T", "d")]).unwrap();
        store.save_snapshot(stream, 0, stream.as_bytes()).unwrap();
        assert_eq!(&store.load_snapshot(stream).unwrap().unwrap().data[..], stream.as_bytes());
    }
    let outside: Vec<_> = std::fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(outside, ["store"]);
    assert_eq!(snapshot_files(&dir).len(), 6);
}
