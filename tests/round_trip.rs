//! Proves that every field of an appended event reads back unchanged through every read
//! API, that the store assigns unique ids, versions and positions, and that the read APIs
//! (forward/backward, by stream and global, from any start) return exactly the right events.

mod common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chronicle::{AppendResult, Error, ExpectedVersion, NewEvent, RecordedEvent, Store, StreamAppend};
use common::{positions, read_all, read_all_backward, read_stream, read_stream_backward};

fn open_temp() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn store_is_clone_send_sync() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<Store>();

    let (_dir, store) = open_temp();
    let clone = store.clone();
    let from_thread = std::thread::spawn(move || {
        clone.append("shared", ExpectedVersion::NoStream, [NewEvent::new("FromThread", "x")]).unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(from_thread.first_version, 0);
    assert_eq!(store.stream_version("shared").unwrap(), Some(0), "clones share one store");
}

#[test]
fn every_field_round_trips_through_every_read_api() {
    let (_dir, store) = open_temp();
    let data = Bytes::from_static(b"{\"total\":42,\"bytes\":\"\x00\xff\"}");
    let metadata = Bytes::from_static(b"{\"user\":\"ann\"}");
    let with_everything = NewEvent::new("OrderPlaced", data.clone())
        .with_metadata(metadata.clone())
        .with_id(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210)
        .with_correlation_id(u128::MAX)
        .with_causation_id(1);
    let only_correlation = NewEvent::new("OrderPaid", vec![7u8; 300]).with_correlation_id(77);
    let only_causation = NewEvent::new("OrderShipped", "shipped").with_causation_id(88);
    let bare = NewEvent::new("Ünïcödé type ✓", "bare");

    let before = SystemTime::now();
    let result = store
        .append("order-ünïcödé", ExpectedVersion::NoStream, [with_everything, only_correlation, only_causation, bare])
        .unwrap();
    let after = SystemTime::now();
    assert_eq!(result, AppendResult { first_version: 0, last_version: 3, first_position: 0, last_position: 3 });

    let events = read_stream(&store, "order-ünïcödé");
    assert_eq!(events.len(), 4);
    let [a, b, c, d] = [&events[0], &events[1], &events[2], &events[3]];

    assert_eq!(a.stream_id, "order-ünïcödé");
    assert_eq!((a.version, a.position), (0, 0));
    assert_eq!(a.event_type, "OrderPlaced");
    assert_eq!(a.data, data);
    assert_eq!(a.metadata, metadata);
    assert_eq!(a.id, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
    assert_eq!(a.correlation_id, Some(u128::MAX));
    assert_eq!(a.causation_id, Some(1));

    assert_eq!((b.version, b.position, b.event_type.as_str()), (1, 1, "OrderPaid"));
    assert_eq!(&b.data[..], &[7u8; 300][..]);
    assert!(b.metadata.is_empty());
    assert_eq!((b.correlation_id, b.causation_id), (Some(77), None));

    assert_eq!((c.version, c.position, c.event_type.as_str()), (2, 2, "OrderShipped"));
    assert_eq!(&c.data[..], b"shipped");
    assert_eq!((c.correlation_id, c.causation_id), (None, Some(88)));

    assert_eq!((d.version, d.position, d.event_type.as_str()), (3, 3, "Ünïcödé type ✓"));
    assert_eq!((d.correlation_id, d.causation_id), (None, None));

    // Events without an id get one from the store; those given one keep it.
    for event in [b, c, d] {
        assert_ne!(event.id, 0, "store-assigned id of {event:?}");
    }
    // One commit group, one timestamp (microsecond resolution), taken during the append.
    let window_start = before - Duration::from_millis(1);
    let window_end = after + Duration::from_millis(1);
    for event in &events {
        assert!(event.timestamp >= window_start && event.timestamp <= window_end, "timestamp {:?}", event.timestamp);
        assert_eq!(event.timestamp, a.timestamp, "one commit, one timestamp");
    }

    // Every read path yields the same events.
    assert_eq!(read_all(&store), events);
    let mut backward = read_all_backward(&store);
    backward.reverse();
    assert_eq!(backward, events);
    let mut backward = read_stream_backward(&store, "order-ünïcödé");
    backward.reverse();
    assert_eq!(backward, events);
}

#[test]
fn empty_data_and_metadata_round_trip() {
    let (_dir, store) = open_temp();
    store
        .append(
            "empty",
            ExpectedVersion::Any,
            [
                NewEvent::new("Nothing", Bytes::new()),
                NewEvent::new("OnlyMetadata", "").with_metadata("m"),
                NewEvent::new("OnlyData", "d").with_metadata(Bytes::new()),
            ],
        )
        .unwrap();
    let events = read_stream(&store, "empty");
    let shapes: Vec<(&str, &[u8], &[u8])> =
        events.iter().map(|e| (e.event_type.as_str(), &e.data[..], &e.metadata[..])).collect();
    assert_eq!(
        shapes,
        [("Nothing", &b""[..], &b""[..]), ("OnlyMetadata", &b""[..], &b"m"[..]), ("OnlyData", &b"d"[..], &b""[..])]
    );
}

#[test]
fn store_assigned_ids_are_unique() {
    let (_dir, store) = open_temp();
    for batch in 0..20 {
        store
            .append(&format!("s-{}", batch % 3), ExpectedVersion::Any, (0..50).map(|_| NewEvent::new("T", "")))
            .unwrap();
    }
    let events = read_all(&store);
    assert_eq!(events.len(), 1000);
    let ids: HashSet<u128> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 1000, "every store-assigned id is distinct");
    assert!(!ids.contains(&0));
}

#[test]
fn expected_version_rules() {
    let (_dir, store) = open_temp();
    let wrong = |result: Result<AppendResult, Error>| match result {
        Err(Error::WrongExpectedVersion { stream, expected, actual }) => (stream, expected, actual),
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    };
    let event = || [NewEvent::new("T", "")];

    assert_eq!(
        wrong(store.append("s", ExpectedVersion::StreamExists, event())),
        ("s".to_string(), ExpectedVersion::StreamExists, None)
    );
    assert_eq!(wrong(store.append("s", ExpectedVersion::Exact(0), event())).2, None);
    assert_eq!(store.append("s", ExpectedVersion::NoStream, event()).unwrap().first_version, 0);
    assert_eq!(wrong(store.append("s", ExpectedVersion::NoStream, event())).2, Some(0));
    assert_eq!(store.append("s", ExpectedVersion::StreamExists, event()).unwrap().first_version, 1);
    assert_eq!(store.append("s", ExpectedVersion::Any, event()).unwrap().first_version, 2);
    assert_eq!(
        wrong(store.append("s", ExpectedVersion::Exact(1), event())),
        ("s".to_string(), ExpectedVersion::Exact(1), Some(2))
    );
    assert_eq!(wrong(store.append("s", ExpectedVersion::Exact(3), event())).2, Some(2));
    let next = store.append("s", ExpectedVersion::Exact(2), [NewEvent::new("A", ""), NewEvent::new("B", "")]).unwrap();
    assert_eq!((next.first_version, next.last_version), (3, 4));
    // Failed appends wrote nothing.
    assert_eq!(read_all(&store).len(), 5);
    assert_eq!(store.stream_version("s").unwrap(), Some(4));
}

#[test]
fn append_multi_is_atomic_and_contiguous() {
    let (_dir, store) = open_temp();
    store.append("a", ExpectedVersion::NoStream, [NewEvent::new("Opened", "")]).unwrap();
    store.append("unrelated", ExpectedVersion::NoStream, [NewEvent::new("X", "")]).unwrap();

    let results = store
        .append_multi([
            StreamAppend::new(
                "a",
                ExpectedVersion::Exact(0),
                [NewEvent::new("Debited", "5"), NewEvent::new("Fee", "1")],
            ),
            StreamAppend::new("b", ExpectedVersion::NoStream, [NewEvent::new("Credited", "5")]),
            StreamAppend::new("c", ExpectedVersion::Any, [NewEvent::new("Logged", ""), NewEvent::new("Logged", "")]),
        ])
        .unwrap();
    assert_eq!(
        results,
        [
            AppendResult { first_version: 1, last_version: 2, first_position: 2, last_position: 3 },
            AppendResult { first_version: 0, last_version: 0, first_position: 4, last_position: 4 },
            AppendResult { first_version: 0, last_version: 1, first_position: 5, last_position: 6 },
        ]
    );
    let all = read_all(&store);
    let layout: Vec<(&str, u64, u64)> = all.iter().map(|e| (e.stream_id.as_str(), e.version, e.position)).collect();
    assert_eq!(
        layout,
        [("a", 0, 0), ("unrelated", 0, 1), ("a", 1, 2), ("a", 2, 3), ("b", 0, 4), ("c", 0, 5), ("c", 1, 6)]
    );
    assert!(all[2..].iter().all(|e| e.timestamp == all[2].timestamp), "one commit group");

    // One failing part: nothing of any part is written.
    let error = store
        .append_multi([
            StreamAppend::new("a", ExpectedVersion::Exact(2), [NewEvent::new("Debited", "1")]),
            StreamAppend::new("new", ExpectedVersion::NoStream, [NewEvent::new("Created", "")]),
            StreamAppend::new("b", ExpectedVersion::Exact(5), [NewEvent::new("Credited", "1")]),
        ])
        .unwrap_err();
    match error {
        Error::WrongExpectedVersion { stream, expected, actual } => {
            assert_eq!((stream.as_str(), expected, actual), ("b", ExpectedVersion::Exact(5), Some(0)));
        }
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }
    assert_eq!(read_all(&store), all);
    assert_eq!(store.stream_version("a").unwrap(), Some(2));
    assert_eq!(store.stream_version("new").unwrap(), None);
    assert_eq!(store.streams().unwrap(), ["a", "b", "c", "unrelated"]);
}

/// A store with streams "x" (10 events, versions 0..10) and "y" interleaved.
fn interleaved_store() -> (tempfile::TempDir, Store) {
    let (dir, store) = open_temp();
    for i in 0..10u8 {
        store.append("x", ExpectedVersion::Any, [NewEvent::new("X", vec![i])]).unwrap();
        if i % 3 == 0 {
            store
                .append("y", ExpectedVersion::Any, [NewEvent::new("Y", vec![i]), NewEvent::new("Y", vec![i])])
                .unwrap();
        }
    }
    (dir, store)
}

#[test]
fn read_stream_from_any_version() {
    let (_dir, store) = interleaved_store();
    for from in 0..=12u64 {
        let events: Vec<RecordedEvent> = store.read_stream("x", from).unwrap().map(Result::unwrap).collect();
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions, (from.min(10)..10).collect::<Vec<_>>(), "from version {from}");
        assert!(events.iter().all(|e| e.stream_id == "x" && e.data[..] == [e.version as u8]));
    }
    assert_eq!(store.read_stream("x", u64::MAX).unwrap().count(), 0);
    assert_eq!(store.read_stream("missing", 0).unwrap().count(), 0);
}

#[test]
fn read_stream_backward_from_last_or_given_version() {
    let (_dir, store) = interleaved_store();
    let versions = |from: Option<u64>| -> Vec<u64> {
        store.read_stream_backward("x", from).unwrap().map(|e| e.unwrap().version).collect()
    };
    assert_eq!(versions(None), (0..10).rev().collect::<Vec<_>>());
    assert_eq!(versions(Some(3)), [3, 2, 1, 0]);
    assert_eq!(versions(Some(0)), [0]);
    assert_eq!(versions(Some(9)), versions(None));
    assert_eq!(versions(Some(1000)), versions(None), "beyond the last version reads from the last");
    assert_eq!(store.read_stream_backward("missing", None).unwrap().count(), 0);
}

#[test]
fn read_all_forward_and_backward_from_every_position() {
    let (_dir, store) = interleaved_store();
    let all = read_all(&store);
    let count = all.len() as u64;
    assert_eq!(count, 18);
    assert_eq!(positions(&all), (0..count).collect::<Vec<_>>());
    for from in 0..=count + 2 {
        let forward: Vec<RecordedEvent> = store.read_all(from).unwrap().map(Result::unwrap).collect();
        assert_eq!(forward, all[from.min(count) as usize..], "read_all({from})");
        let backward: Vec<u64> = store.read_all_backward(Some(from)).unwrap().map(|e| e.unwrap().position).collect();
        let expected: Vec<u64> = (0..=from.min(count - 1)).rev().collect();
        assert_eq!(backward, expected, "read_all_backward(Some({from}))");
    }
    let mut backward = read_all_backward(&store);
    backward.reverse();
    assert_eq!(backward, all);
}

#[test]
fn empty_store_reads_nothing() {
    let (_dir, store) = open_temp();
    assert_eq!(store.read_all(0).unwrap().count(), 0);
    assert_eq!(store.read_all_backward(None).unwrap().count(), 0);
    assert_eq!(store.read_all_backward(Some(5)).unwrap().count(), 0);
    assert_eq!(store.streams().unwrap(), Vec::<String>::new());
    assert_eq!(store.stream_version("s").unwrap(), None);
}

#[test]
fn stream_version_and_sorted_streams() {
    let (_dir, store) = open_temp();
    let names = ["order-10", "Order-2", "order-1", "ärger", "a", "z-last", "order-2"];
    for (i, name) in names.iter().enumerate() {
        for _ in 0..=i {
            store.append(name, ExpectedVersion::Any, [NewEvent::new("T", "")]).unwrap();
        }
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(store.stream_version(name).unwrap(), Some(i as u64), "{name}");
    }
    assert_eq!(store.stream_version("order-3").unwrap(), None);
    let mut sorted: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    sorted.sort();
    assert_eq!(store.streams().unwrap(), sorted);
}

#[test]
fn iterators_see_the_store_as_of_their_creation() {
    let (_dir, store) = open_temp();
    store.append("s", ExpectedVersion::Any, [NewEvent::new("A", "")]).unwrap();
    let all = store.read_all(0).unwrap();
    let stream = store.read_stream("s", 0).unwrap();
    store.append("s", ExpectedVersion::Any, [NewEvent::new("B", "")]).unwrap();
    assert_eq!(all.count(), 1);
    assert_eq!(stream.count(), 1);
    assert_eq!(read_stream(&store, "s").len(), 2);
}
