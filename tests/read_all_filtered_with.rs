//! `Store::read_all_filtered_with` (borrowed views, no copy) visits exactly what
//! `read_all_filtered` returns — every field, for every kind of filter, from any position,
//! across segments read through their indexes and the last one scanned, past a deleted
//! stream, after a reopen as before it — stops when the visitor breaks, refuses a bad filter
//! and a closed store, and reports a damaged matching record as `Corruption` instead of
//! visiting it, after the events before it.

mod common;

use std::ops::ControlFlow;

use chronicle::{Error, ExpectedVersion, Filter, NewEvent, Options, RecordedEvent, Store};

fn visited(store: &Store, from: u64, filter: Filter) -> Result<Vec<RecordedEvent>, Error> {
    let mut events = Vec::new();
    store.read_all_filtered_with(from, filter, |event| {
        events.push(event.to_recorded());
        ControlFlow::Continue(())
    })?;
    Ok(events)
}

fn options() -> Options {
    Options::default().segment_bytes(4096)
}

/// 300 events over 12 streams in three categories, three event types, metadata on some and
/// correlation ids; many small segments, so most are read through their indexes.
fn filled_store(dir: &std::path::Path) -> Store {
    let store = Store::open_with(dir, options()).unwrap();
    for i in 0..300u32 {
        let stream = format!("{}-{}", ["order", "user", "cart"][(i % 3) as usize], i % 12);
        let event = NewEvent::new(format!("Type{}", i / 3 % 3), format!("data {i}"))
            .with_metadata(if i % 2 == 0 { format!("meta {i}") } else { String::new() })
            .with_correlation_id(u128::from(i) * 7);
        store.append(&stream, ExpectedVersion::Any, [event]).unwrap();
    }
    store
}

fn filters() -> Vec<Filter> {
    vec![
        Filter::all(),
        Filter::stream("order-3"),
        Filter::stream("no-such-stream"),
        Filter::category("user"),
        Filter::stream_prefix("cart-1"),
        Filter::event_types(["Type1"]),
        Filter::event_types(["Type0", "Type2"]),
        Filter::category("order").with_event_types(["Type2"]),
    ]
}

fn assert_visits_what_read_all_filtered_returns(store: &Store) {
    for filter in filters() {
        for from in [0, 1, 77, 150, 299, 300, 10_000] {
            let expected: Vec<RecordedEvent> =
                store.read_all_filtered(from, filter.clone()).unwrap().collect::<Result<_, _>>().unwrap();
            assert_eq!(visited(store, from, filter.clone()).unwrap(), expected, "{filter:?} from {from}");
        }
    }
}

#[test]
fn visits_what_read_all_filtered_returns_for_every_filter_before_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    assert!(common::segment_files(dir.path()).len() > 4, "the log spans segments");
    assert_visits_what_read_all_filtered_returns(&store);
    let users = visited(&store, 0, Filter::category("user")).unwrap();
    assert_eq!(users.len(), 100);
    assert!(users.windows(2).all(|w| w[0].position < w[1].position), "position order");
    store.delete_stream("user-1", ExpectedVersion::Any).unwrap();
    assert_visits_what_read_all_filtered_returns(&store);
    assert!(visited(&store, 0, Filter::category("user")).unwrap().iter().all(|e| e.stream_id != "user-1"));
    store.close().unwrap();

    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_visits_what_read_all_filtered_returns(&store);
}

#[test]
fn stops_when_the_visitor_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    let mut positions = Vec::new();
    store
        .read_all_filtered_with(10, Filter::category("cart"), |event| {
            positions.push(event.position);
            if positions.len() == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .unwrap();
    assert_eq!(positions, [11, 14, 17]);
}

#[test]
fn a_bad_filter_and_a_closed_store_are_errors_as_with_read_all_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    let no_types: [&str; 0] = [];
    for bad in [Filter::event_types(no_types), Filter::category(""), Filter::stream("")] {
        let mut visits = 0;
        let result = store.read_all_filtered_with(0, bad.clone(), |_| {
            visits += 1;
            ControlFlow::Continue(())
        });
        assert!(matches!(result, Err(Error::InvalidInput { .. })), "{bad:?}: {result:?}");
        assert_eq!(visits, 0);
    }
    store.clone().close().unwrap();
    let closed = store.read_all_filtered_with(0, Filter::all(), |_| ControlFlow::Continue(()));
    assert!(matches!(closed, Err(Error::Closed)), "{closed:?}");
}

#[test]
fn a_damaged_matching_record_is_reported_not_visited() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    store.close().unwrap();
    let segment = common::segment_files(dir.path()).remove(1);
    let records = common::records_of(&segment);
    let damaged = records[3];
    common::flip_bit(&segment, damaged.offset + damaged.len - 1, 0);

    let store = Store::open_with(dir.path(), options()).unwrap();
    // The damaged record's own stream: the index leads the read to it.
    let stream = {
        let i = damaged.position as u32;
        format!("{}-{}", ["order", "user", "cart"][(i % 3) as usize], i % 12)
    };
    let before: Vec<RecordedEvent> =
        store.read_all_filtered(0, Filter::stream(&stream)).unwrap().map_while(Result::ok).collect();
    let mut seen = Vec::new();
    let result = store.read_all_filtered_with(0, Filter::stream(&stream), |event| {
        seen.push(event.to_recorded());
        ControlFlow::Continue(())
    });
    let at_damage = |error: &Error| matches!(error, Error::Corruption { file, offset, .. } if *file == segment && *offset == damaged.offset);
    assert!(result.as_ref().is_err_and(at_damage), "expected Corruption at the damaged record, got {result:?}");
    assert_eq!(seen, before);
    assert!(seen.iter().all(|e| e.position < damaged.position));
}
