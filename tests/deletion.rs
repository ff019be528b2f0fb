//! Proves stream deletion: a tombstone through the append path that respects expected
//! versions; afterwards reads, appends and snapshots fail with StreamDeleted and the stream
//! leaves streams() and read_all, before and after reopen.

use chronicle::{Error, ExpectedVersion, NewEvent, Store};

fn deleted<T: std::fmt::Debug>(result: Result<T, Error>) -> bool {
    matches!(result, Err(Error::StreamDeleted { .. }))
}

fn check_deleted(store: &Store) {
    assert!(deleted(store.read_stream("gone", 0)));
    assert!(deleted(store.read_stream_backward("gone", None)));
    assert!(deleted(store.append("gone", ExpectedVersion::Any, [NewEvent::new("T", "")])));
    assert!(deleted(store.stream_version("gone")));
    assert!(deleted(store.load_snapshot("gone")));
    assert!(deleted(store.delete_stream("gone", ExpectedVersion::Any)));
    assert_eq!(store.streams().unwrap(), ["kept"]);
    let all: Vec<_> = store.read_all(0).unwrap().map(|e| e.unwrap().stream_id).collect();
    assert_eq!(all, ["kept", "kept"]);
    assert_eq!(store.read_stream("kept", 0).unwrap().count(), 2);
}

#[test]
fn delete_semantics_before_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("gone", ExpectedVersion::Any, [NewEvent::new("A", "1"), NewEvent::new("B", "2")]).unwrap();
    store.append("kept", ExpectedVersion::Any, [NewEvent::new("A", "1"), NewEvent::new("B", "2")]).unwrap();
    let wrong = store.delete_stream("gone", ExpectedVersion::Exact(0));
    assert!(matches!(wrong, Err(Error::WrongExpectedVersion { actual: Some(1), .. })));
    assert_eq!(store.stream_version("gone").unwrap(), Some(1));
    store.delete_stream("gone", ExpectedVersion::Exact(1)).unwrap();
    check_deleted(&store);
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    check_deleted(&store);
    drop(store);
    // The tombstone also survives a crash-style reopen (no index checkpoint).
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "idx") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let store = Store::open(dir.path()).unwrap();
    check_deleted(&store);
    // Positions are not reused after the tombstone.
    let next = store.append("kept", ExpectedVersion::Exact(1), [NewEvent::new("C", "")]).unwrap();
    assert_eq!(next.first_position, 5);
}

#[test]
fn delete_with_no_stream_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::Any, [NewEvent::new("A", "")]).unwrap();
    assert!(matches!(store.delete_stream("s", ExpectedVersion::NoStream), Err(Error::WrongExpectedVersion { .. })));
    store.delete_stream("s", ExpectedVersion::StreamExists).unwrap();
    assert!(deleted(store.read_stream("s", 0)));
}

#[test]
fn deleting_a_stream_that_never_existed_tombstones_its_id_unless_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Guarded: a missing stream is a conflict, and the id stays usable.
    assert!(matches!(
        store.delete_stream("typo", ExpectedVersion::StreamExists),
        Err(Error::WrongExpectedVersion { actual: None, .. })
    ));
    store.append("typo", ExpectedVersion::NoStream, [NewEvent::new("T", "")]).unwrap();
    // Unguarded: the id of a stream that never had an event is burnt, for ever.
    store.delete_stream("never", ExpectedVersion::Any).unwrap();
    assert!(matches!(
        store.append("never", ExpectedVersion::Any, [NewEvent::new("T", "")]),
        Err(Error::StreamDeleted { .. })
    ));
    store.compact().unwrap();
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(store.stream_version("never"), Err(Error::StreamDeleted { .. })));
}
