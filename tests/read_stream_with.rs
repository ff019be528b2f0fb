//! `Store::read_stream_with` (borrowed views, no copy) visits exactly what `read_stream`
//! returns — every field, from any version, across segments, after a reopen (mapped index
//! files) as before it — stops when the visitor breaks, answers a deleted stream and a bad
//! id as `read_stream` does, and reports a damaged record as `Corruption` instead of
//! visiting it, after the events before it.

mod common;

use std::ops::ControlFlow;

use chronicle::{Error, ExpectedVersion, NewEvent, Options, RecordedEvent, Store};

const STREAMS: u32 = 5;

fn visited(store: &Store, stream: &str, from: u64) -> Result<Vec<RecordedEvent>, Error> {
    let mut events = Vec::new();
    store.read_stream_with(stream, from, |event| {
        events.push(event.to_recorded());
        ControlFlow::Continue(())
    })?;
    Ok(events)
}

fn options() -> Options {
    Options::default().segment_bytes(4096)
}

/// 150 events over five interleaved streams, with event types that change from one event
/// to the next and back, metadata on some and correlation ids.
fn filled_store(dir: &std::path::Path) -> Store {
    let store = Store::open_with(dir, options()).unwrap();
    for i in 0..150u32 {
        let stream = format!("stream-{}", i % STREAMS);
        let event = NewEvent::new(format!("Type{}", i / STREAMS % 3), format!("data {i}"))
            .with_metadata(if i % 2 == 0 { format!("meta {i}") } else { String::new() })
            .with_correlation_id(u128::from(i) * 3);
        store.append(&stream, ExpectedVersion::Any, [event]).unwrap();
    }
    store
}

fn assert_visits_what_read_stream_returns(store: &Store) {
    for s in 0..STREAMS {
        let stream = format!("stream-{s}");
        for from in [0, 1, 7, 29, 30, 1000] {
            let expected: Vec<RecordedEvent> =
                store.read_stream(&stream, from).unwrap().collect::<Result<_, _>>().unwrap();
            assert_eq!(visited(store, &stream, from).unwrap(), expected, "{stream} from {from}");
        }
    }
}

#[test]
fn visits_what_read_stream_returns_from_every_version_before_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    assert!(common::segment_files(dir.path()).len() > 2, "the streams span segments");
    assert_visits_what_read_stream_returns(&store);
    let all = visited(&store, "stream-3", 0).unwrap();
    assert_eq!(all.iter().map(|e| e.version).collect::<Vec<_>>(), (0..30).collect::<Vec<_>>());
    store.close().unwrap();

    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_visits_what_read_stream_returns(&store);
    assert!(visited(&store, "no-such-stream", 0).unwrap().is_empty());
}

#[test]
fn stops_when_the_visitor_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    let mut versions = Vec::new();
    store
        .read_stream_with("stream-1", 4, |event| {
            versions.push(event.version);
            if versions.len() == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .unwrap();
    assert_eq!(versions, [4, 5, 6]);
}

#[test]
fn a_deleted_stream_and_a_bad_id_are_errors_as_with_read_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    store.delete_stream("stream-2", ExpectedVersion::Any).unwrap();
    let deleted = store.read_stream_with("stream-2", 0, |_| ControlFlow::Continue(()));
    assert!(matches!(deleted, Err(Error::StreamDeleted { ref stream }) if stream == "stream-2"), "{deleted:?}");
    let bad = store.read_stream_with("", 0, |_| ControlFlow::Continue(()));
    assert!(matches!(bad, Err(Error::InvalidInput { .. })), "{bad:?}");
    store.clone().close().unwrap();
    let closed = store.read_stream_with("stream-1", 0, |_| ControlFlow::Continue(()));
    assert!(matches!(closed, Err(Error::Closed)), "{closed:?}");
}

#[test]
fn a_damaged_record_is_reported_not_visited() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    store.close().unwrap();
    let segment = common::segment_files(dir.path()).remove(1);
    let records = common::records_of(&segment);
    let damaged = records[3];
    common::flip_bit(&segment, damaged.offset + damaged.len - 1, 0);

    let store = Store::open_with(dir.path(), options()).unwrap();
    let stream = format!("stream-{}", damaged.position % u64::from(STREAMS));
    let before: Vec<RecordedEvent> = store.read_stream(&stream, 0).unwrap().map_while(Result::ok).collect();
    let mut seen = Vec::new();
    let result = store.read_stream_with(&stream, 0, |event| {
        seen.push(event.to_recorded());
        ControlFlow::Continue(())
    });
    let at_damage = |error: &Error| matches!(error, Error::Corruption { file, offset, .. } if *file == segment && *offset == damaged.offset);
    assert!(result.as_ref().is_err_and(at_damage), "expected Corruption at the damaged record, got {result:?}");
    assert_eq!(seen, before);
    assert!(seen.iter().all(|e| e.position < damaged.position));
}
