//! `Store::read_all_with` (borrowed views, no copy) visits exactly what `read_all` returns —
//! every field, from any position, across segments, without deleted streams — stops when
//! the visitor breaks, and reports a damaged record as `Corruption` instead of visiting it.

mod common;

use std::ops::ControlFlow;

use chronicle::{Error, ExpectedVersion, NewEvent, Options, RecordedEvent, Store};

fn visited(store: &Store, from: u64) -> Result<Vec<RecordedEvent>, Error> {
    let mut events = Vec::new();
    store.read_all_with(from, |event| {
        events.push(event.to_recorded());
        ControlFlow::Continue(())
    })?;
    Ok(events)
}

fn filled_store(dir: &std::path::Path) -> Store {
    let store = Store::open_with(dir, Options::default().segment_size(4096)).unwrap();
    for i in 0..120u32 {
        let stream = format!("stream-{}", i % 7);
        let event = NewEvent::new(format!("Type{}", i % 3), format!("data {i}"))
            .with_metadata(if i % 2 == 0 { format!("meta {i}") } else { String::new() })
            .with_correlation_id(u128::from(i) * 3);
        store.append(&stream, ExpectedVersion::Any, [event]).unwrap();
    }
    store
}

#[test]
fn visits_what_read_all_returns_from_every_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    store.delete_stream("stream-2", ExpectedVersion::Any).unwrap();
    assert!(common::segment_files(dir.path()).len() > 2, "the log spans segments");
    for from in [0, 1, 17, 59, 119, 120, 1000] {
        let expected: Vec<RecordedEvent> = store.read_all(from).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(visited(&store, from).unwrap(), expected, "from {from}");
    }
    assert!(visited(&store, 0).unwrap().iter().all(|e| e.stream_id != "stream-2"));
}

#[test]
fn stops_when_the_visitor_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    let mut positions = Vec::new();
    store
        .read_all_with(10, |event| {
            positions.push(event.position);
            if positions.len() == 5 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .unwrap();
    assert_eq!(positions, [10, 11, 12, 13, 14]);
}

#[test]
fn a_damaged_record_is_reported_not_visited() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    let expected: Vec<RecordedEvent> = store.read_all(0).unwrap().collect::<Result<_, _>>().unwrap();
    store.close().unwrap();
    let segment = common::segment_files(dir.path()).remove(1);
    let records = common::records_of(&segment);
    let damaged = records[2];
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[(damaged.offset + damaged.len - 1) as usize] ^= 0x01;
    std::fs::write(&segment, bytes).unwrap();

    let store = Store::open_with(dir.path(), Options::default().segment_size(4096)).unwrap();
    let mut seen = Vec::new();
    let result = store.read_all_with(0, |event| {
        seen.push(event.to_recorded());
        ControlFlow::Continue(())
    });
    match result {
        Err(Error::Corruption { file, offset, .. }) => {
            assert_eq!(file, segment);
            assert_eq!(offset, damaged.offset);
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    assert_eq!(seen, expected[..damaged.position as usize]);
}
