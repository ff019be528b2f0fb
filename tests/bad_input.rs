//! Proves that every kind of bad input (stream ids, event types, sizes, batch shapes,
//! options) is rejected with `Error::InvalidInput` saying what is wrong, that nothing is
//! written, and that inputs exactly at each documented limit are accepted.

mod common;

use std::path::Path;
use std::time::Duration;

use chronicle::{
    AppendResult, Durability, EVENT_TYPE_BYTES_MAX, Error, ExpectedVersion, NewEvent, Options, SEGMENT_BYTES_MAX,
    SEGMENT_BYTES_MIN, STREAM_ID_BYTES_MAX, Store, StreamAppend,
};
use common::{read_all, segment_bytes_total};

/// Fixed part of every encoded event (documented on `Options::event_bytes_max`).
const EVENT_HEADER_BYTES: usize = 64;
const EVENT_BYTES_MAX: usize = 3000;
const BATCH_BYTES_MAX: usize = 7500;

fn options() -> Options {
    Options::default().event_bytes_max(EVENT_BYTES_MAX).batch_bytes_max(BATCH_BYTES_MAX)
}

/// A store that already holds a few events, so "nothing written" is checked against
/// existing streams as well as new ones.
fn seeded_store(dir: &Path) -> Store {
    let store = Store::open_with(dir, options()).unwrap();
    store
        .append("existing", ExpectedVersion::NoStream, [NewEvent::new("Seeded", "1"), NewEvent::new("Seeded", "2")])
        .unwrap();
    store.append("other", ExpectedVersion::NoStream, [NewEvent::new("Seeded", "3")]).unwrap();
    store
}

/// An event of stream `s` (1 byte) and type `T` (1 byte) that encodes to `encoded` bytes.
fn event_of_size(encoded: usize) -> NewEvent {
    NewEvent::new("T", vec![b'x'; encoded - EVENT_HEADER_BYTES - 2])
}

#[derive(Debug, PartialEq)]
struct Snapshot {
    events: usize,
    segment_bytes: u64,
    streams: Vec<String>,
    existing: Option<u64>,
}

fn snapshot(store: &Store) -> Snapshot {
    Snapshot {
        events: read_all(store).len(),
        segment_bytes: segment_bytes_total(store.path()),
        streams: store.streams().unwrap(),
        existing: store.stream_version("existing").unwrap(),
    }
}

/// Asserts `result` is InvalidInput whose message contains `mentions`, and that the store
/// is unchanged.
fn assert_rejected<T: std::fmt::Debug>(store: &Store, before: &Snapshot, result: Result<T, Error>, mentions: &str) {
    match result {
        Err(Error::InvalidInput { message }) => {
            assert!(message.to_lowercase().contains(mentions), "message {message:?} should mention {mentions:?}")
        }
        other => panic!("expected InvalidInput mentioning {mentions:?}, got {other:?}"),
    }
    store.sync().unwrap();
    assert_eq!(&snapshot(store), before, "nothing is written after rejecting input mentioning {mentions:?}");
}

#[test]
fn bad_stream_ids_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded_store(dir.path());
    let before = snapshot(&store);
    let event = || [NewEvent::new("T", "")];
    let too_long = "s".repeat(STREAM_ID_BYTES_MAX + 1);
    // The limit is in bytes of UTF-8, not characters: 513 two-byte characters are too long.
    let too_long_in_bytes = "é".repeat(STREAM_ID_BYTES_MAX / 2 + 1);

    assert_rejected(&store, &before, store.append("", ExpectedVersion::Any, event()), "empty");
    assert_rejected(&store, &before, store.append(&too_long, ExpectedVersion::Any, event()), "stream id");
    assert_rejected(&store, &before, store.append(&too_long_in_bytes, ExpectedVersion::Any, event()), "stream id");
    assert_rejected(&store, &before, store.read_stream("", 0), "empty");
    assert_rejected(&store, &before, store.read_stream_backward(&too_long, None), "stream id");
    assert_rejected(&store, &before, store.stream_version(""), "empty");
    assert_rejected(&store, &before, store.stream_version(&too_long), "stream id");

    let longest = "s".repeat(STREAM_ID_BYTES_MAX);
    store.append(&longest, ExpectedVersion::NoStream, event()).unwrap();
    assert_eq!(store.read_stream(&longest, 0).unwrap().next().unwrap().unwrap().stream_id, longest);
}

#[test]
fn bad_events_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded_store(dir.path());
    let before = snapshot(&store);
    let some = ExpectedVersion::Any;

    assert_rejected(&store, &before, store.append("existing", some, Vec::<NewEvent>::new()), "no events");
    assert_rejected(&store, &before, store.append("new", some, Vec::<NewEvent>::new()), "no events");
    assert_rejected(&store, &before, store.append("existing", some, [NewEvent::new("", "data")]), "empty event type");
    // A bad event anywhere in the batch rejects the whole batch.
    let second_bad = [NewEvent::new("Fine", ""), NewEvent::new("", "")];
    assert_rejected(&store, &before, store.append("new", some, second_bad), "empty event type");
    let long_type = NewEvent::new("t".repeat(EVENT_TYPE_BYTES_MAX + 1), "");
    assert_rejected(&store, &before, store.append("existing", some, [long_type]), "event type");
    assert_rejected(&store, &before, store.append("s", some, [event_of_size(EVENT_BYTES_MAX + 1)]), "event_bytes_max");
    let heavy_metadata = NewEvent::new("T", "").with_metadata(vec![0u8; EVENT_BYTES_MAX]);
    assert_rejected(&store, &before, store.append("s", some, [heavy_metadata]), "event_bytes_max");
    // Correlation and causation ids count towards the event's size (16 bytes each).
    let with_ids = event_of_size(EVENT_BYTES_MAX - 16).with_correlation_id(1).with_causation_id(2);
    assert_rejected(&store, &before, store.append("s", some, [with_ids]), "event_bytes_max");
    // Expected-version checks come after validation: a bad event with a wrong expected
    // version is still InvalidInput.
    assert_rejected(
        &store,
        &before,
        store.append("existing", ExpectedVersion::NoStream, [NewEvent::new("", "")]),
        "empty",
    );

    let at_limit = store.append("s", some, [event_of_size(EVENT_BYTES_MAX)]).unwrap();
    assert_eq!(at_limit.first_version, 0);
    let at_limit_with_ids = event_of_size(EVENT_BYTES_MAX - 32).with_correlation_id(1).with_causation_id(2);
    store.append("s", some, [at_limit_with_ids]).unwrap();
    let longest_type = NewEvent::new("t".repeat(EVENT_TYPE_BYTES_MAX), "");
    store.append("s", some, [longest_type]).unwrap();
}

#[test]
fn oversized_batches_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded_store(dir.path());
    let before = snapshot(&store);
    let three_full = || (0..3).map(|_| event_of_size(EVENT_BYTES_MAX)).collect::<Vec<_>>();

    assert_rejected(&store, &before, store.append("s", ExpectedVersion::Any, three_full()), "batch_bytes_max");
    // The limit covers all parts of an append_multi together.
    let parts = [
        StreamAppend::new("a", ExpectedVersion::Any, [event_of_size(EVENT_BYTES_MAX), event_of_size(EVENT_BYTES_MAX)]),
        StreamAppend::new("b", ExpectedVersion::Any, [event_of_size(EVENT_BYTES_MAX)]),
    ];
    assert_rejected(&store, &before, store.append_multi(parts), "batch_bytes_max");

    let exactly = [
        event_of_size(EVENT_BYTES_MAX),
        event_of_size(EVENT_BYTES_MAX),
        event_of_size(BATCH_BYTES_MAX - 2 * EVENT_BYTES_MAX),
    ];
    let result = store.append("s", ExpectedVersion::Any, exactly).unwrap();
    assert_eq!(result, AppendResult { first_version: 0, last_version: 2, first_position: 3, last_position: 5 });
}

#[test]
fn bad_append_multi_shapes_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded_store(dir.path());
    let before = snapshot(&store);
    let part = |stream: &str| StreamAppend::new(stream, ExpectedVersion::Any, [NewEvent::new("T", "")]);

    assert_rejected(&store, &before, store.append_multi(Vec::<StreamAppend>::new()), "no streams");
    assert_rejected(&store, &before, store.append_multi([part("a"), part("b"), part("a")]), "twice");
    assert_rejected(&store, &before, store.append_multi([part("existing"), part("existing")]), "twice");
    // One bad part rejects every part.
    let bad = StreamAppend::new("c", ExpectedVersion::Any, [NewEvent::new("", "")]);
    assert_rejected(&store, &before, store.append_multi([part("a"), bad]), "empty event type");
    let empty = StreamAppend::new("c", ExpectedVersion::Any, Vec::<NewEvent>::new());
    assert_rejected(&store, &before, store.append_multi([part("a"), empty]), "no events");
    assert_rejected(&store, &before, store.append_multi([part("a"), part("")]), "empty");
}

#[test]
fn invalid_options_are_rejected_before_anything_is_created() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("store");
    let cases = [
        (Options::default().segment_bytes(100), "segment_bytes"),
        (Options::default().segment_bytes(SEGMENT_BYTES_MIN - 1), "segment_bytes"),
        (Options::default().segment_bytes(SEGMENT_BYTES_MAX + 1), "segment_bytes"),
        (Options::default().segment_bytes(0), "segment_bytes"),
        (Options::default().event_bytes_max(10), "event_bytes_max"),
        (Options::default().event_bytes_max(0), "event_bytes_max"),
        (Options::default().event_bytes_max(4096).batch_bytes_max(1000), "batch_bytes_max"),
        (Options::default().durability(Durability::Periodic(Duration::ZERO)), "periodic"),
    ];
    for (options, mentions) in cases {
        match Store::open_with(&dir, options.clone()) {
            Err(Error::InvalidInput { message }) => {
                assert!(
                    message.to_lowercase().contains(mentions),
                    "{options:?}: {message:?} should mention {mentions:?}"
                )
            }
            other => panic!("{options:?}: expected InvalidInput, got {other:?}"),
        }
        assert!(!dir.exists(), "{options:?}: the store directory was created");
    }
    for options in [
        Options::default().segment_bytes(SEGMENT_BYTES_MIN),
        Options::default().segment_bytes(SEGMENT_BYTES_MAX),
        Options::default().event_bytes_max(4096).batch_bytes_max(4096),
    ] {
        Store::open_with(&dir, options).unwrap().close().unwrap();
    }
}

#[test]
fn store_stays_usable_after_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded_store(dir.path());
    for _ in 0..10 {
        assert!(matches!(
            store.append("", ExpectedVersion::Any, [NewEvent::new("T", "")]),
            Err(Error::InvalidInput { .. })
        ));
    }
    let result = store.append("existing", ExpectedVersion::Exact(1), [NewEvent::new("After", "")]).unwrap();
    assert_eq!((result.first_version, result.first_position), (2, 3));
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read_all(&store).len(), 4);
}

#[test]
fn an_empty_path_is_rejected_and_nothing_is_created() {
    // Run in a scratch working directory so a stray LOCK file would be seen (and not left in
    // the crate's directory). Other tests never depend on the working directory.
    let scratch = tempfile::tempdir().unwrap();
    let before = std::env::current_dir().unwrap();
    std::env::set_current_dir(scratch.path()).unwrap();
    let result = Store::open("");
    let result_with = Store::open_with("", Options::default());
    std::env::set_current_dir(before).unwrap();
    for result in [result, result_with] {
        match result {
            Err(Error::InvalidInput { message }) => assert!(message.contains("empty"), "{message}"),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0, "nothing is created in the current directory");
}

#[test]
fn a_path_that_is_a_file_is_rejected_naming_the_path() {
    let parent = tempfile::tempdir().unwrap();
    let file = parent.path().join("not-a-dir");
    std::fs::write(&file, b"hello").unwrap();
    for path in [file.clone(), file.join("store")] {
        match Store::open(&path) {
            Err(Error::InvalidInput { message }) => {
                assert!(message.contains("not a directory"), "{message}");
                assert!(message.contains(&*file.to_string_lossy()), "{message} names the path");
            }
            other => panic!("{path:?}: expected InvalidInput, got {other:?}"),
        }
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"hello", "the file is untouched");
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 1, "nothing else is created");
}
