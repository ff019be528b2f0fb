//! Proves idempotent retry: re-appending events whose ids equal those already at the
//! expected versions (`NoStream`, `Exact`) or the stream's most recent events (`Any`,
//! `StreamExists`) returns the original `AppendResult` and writes nothing (also after a
//! reopen and when the retry races the original or another writer), while differing ids are
//! a conflict, and ids shared in part with the most recent events too.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;

use chronicle::{AppendResult, Error, ExpectedVersion, NewEvent, Store, StreamAppend};
use common::{log_bytes_total, read_all};

fn events(ids: &[u128]) -> Vec<NewEvent> {
    ids.iter().map(|&id| NewEvent::new("Happened", format!("event {id}")).with_id(id)).collect()
}

/// Count of events and bytes of the segments' logs: both unchanged by an idempotent retry.
fn footprint(store: &Store) -> (usize, u64) {
    store.sync().unwrap();
    (read_all(store).len(), log_bytes_total(store.path()))
}

fn assert_wrong_version(result: Result<impl std::fmt::Debug, Error>, stream: &str, actual: Option<u64>) {
    match result {
        Err(Error::WrongExpectedVersion { stream: s, actual: a, .. }) => assert_eq!((s.as_str(), a), (stream, actual)),
        other => panic!("expected WrongExpectedVersion on {stream}, got {other:?}"),
    }
}

#[test]
fn retry_with_same_ids_returns_the_original_result_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("noise", ExpectedVersion::Any, [NewEvent::new("Noise", "")]).unwrap();

    let created = store.append("order", ExpectedVersion::NoStream, events(&[1, 2, 3])).unwrap();
    assert_eq!(created, AppendResult { first_version: 0, last_version: 2, first_position: 1, last_position: 3 });
    store.append("noise", ExpectedVersion::Any, [NewEvent::new("Noise", "")]).unwrap();
    let paid = store.append("order", ExpectedVersion::Exact(2), events(&[4, 5])).unwrap();
    assert_eq!(paid, AppendResult { first_version: 3, last_version: 4, first_position: 5, last_position: 6 });
    let before = footprint(&store);

    for _ in 0..3 {
        assert_eq!(store.append("order", ExpectedVersion::NoStream, events(&[1, 2, 3])).unwrap(), created);
        assert_eq!(store.append("order", ExpectedVersion::Exact(2), events(&[4, 5])).unwrap(), paid);
    }
    assert_eq!(footprint(&store), before);
    assert_eq!(store.stream_version("order").unwrap(), Some(4));

    // The stream moves on normally afterwards.
    let next = store.append("order", ExpectedVersion::Exact(4), events(&[6])).unwrap();
    assert_eq!((next.first_version, next.first_position), (5, 7));
}

#[test]
fn different_ids_are_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("order", ExpectedVersion::NoStream, events(&[1, 2, 3])).unwrap();
    let before = footprint(&store);

    assert_wrong_version(store.append("order", ExpectedVersion::NoStream, events(&[1, 2, 9])), "order", Some(2));
    assert_wrong_version(store.append("order", ExpectedVersion::NoStream, events(&[9])), "order", Some(2));
    assert_wrong_version(store.append("order", ExpectedVersion::NoStream, events(&[2, 1, 3])), "order", Some(2));
    // More events than were stored: not a retry of what is there.
    assert_wrong_version(store.append("order", ExpectedVersion::NoStream, events(&[1, 2, 3, 4])), "order", Some(2));
    assert_wrong_version(store.append("order", ExpectedVersion::Exact(1), events(&[3, 4])), "order", Some(2));
    // Same ids at other versions.
    assert_wrong_version(store.append("order", ExpectedVersion::Exact(0), events(&[1, 2])), "order", Some(2));
    // Events without ids are never a retry.
    let no_ids = vec![NewEvent::new("Happened", "event 1")];
    assert_wrong_version(store.append("order", ExpectedVersion::NoStream, no_ids), "order", Some(2));
    // Some events with ids, some without.
    let mixed = vec![NewEvent::new("Happened", "").with_id(1), NewEvent::new("Happened", "")];
    assert_wrong_version(store.append("order", ExpectedVersion::NoStream, mixed), "order", Some(2));
    assert_eq!(footprint(&store), before);
}

#[test]
fn retry_after_reopen_returns_the_original_result() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let created = store.append("order", ExpectedVersion::NoStream, events(&[10, 11])).unwrap();
    let shipped = store.append("order", ExpectedVersion::Exact(1), events(&[12])).unwrap();
    store.close().unwrap();

    let store = Store::open(dir.path()).unwrap();
    let before = footprint(&store);
    assert_eq!(store.append("order", ExpectedVersion::NoStream, events(&[10, 11])).unwrap(), created);
    assert_eq!(store.append("order", ExpectedVersion::Exact(1), events(&[12])).unwrap(), shipped);
    assert_wrong_version(store.append("order", ExpectedVersion::Exact(1), events(&[13])), "order", Some(2));
    assert_eq!(footprint(&store), before);

    // Dropped without close too (the index is rebuilt from the segment's tail).
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.append("order", ExpectedVersion::NoStream, events(&[10, 11])).unwrap(), created);
    assert_eq!(footprint(&store), before);
}

#[test]
fn append_multi_retry_is_idempotent_only_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let transfer = || {
        [
            StreamAppend::new("account-a", ExpectedVersion::NoStream, events(&[100])),
            StreamAppend::new("account-b", ExpectedVersion::NoStream, events(&[200, 201])),
        ]
    };
    let original = store.append_multi(transfer()).unwrap();
    let before = footprint(&store);
    assert_eq!(store.append_multi(transfer()).unwrap(), original);
    assert_eq!(footprint(&store), before);

    // One part already there, one not: a conflict, and the new part is not written.
    let half = [
        StreamAppend::new("account-a", ExpectedVersion::NoStream, events(&[100])),
        StreamAppend::new("account-c", ExpectedVersion::NoStream, events(&[300])),
    ];
    assert!(matches!(store.append_multi(half), Err(Error::WrongExpectedVersion { .. })));
    assert_eq!(store.stream_version("account-c").unwrap(), None);
    assert_eq!(footprint(&store), before);
}

#[test]
fn retry_racing_the_original_writes_once() {
    // Both copies of an append may reach the writer in one commit group; exactly one copy
    // is written and both callers get the same result.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for round in 0..20u128 {
        let stream = format!("order-{round}");
        let ids = [round * 10, round * 10 + 1];
        let barrier = Arc::new(Barrier::new(4));
        let results: Vec<AppendResult> = (0..4)
            .map(|_| {
                let (store, barrier, stream) = (store.clone(), Arc::clone(&barrier), stream.clone());
                thread::spawn(move || {
                    barrier.wait();
                    store.append(&stream, ExpectedVersion::NoStream, events(&ids)).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert!(results.iter().all(|r| *r == results[0]), "{stream}: {results:?}");
        let stored: Vec<u128> = common::read_stream(&store, &stream).iter().map(|e| e.id).collect();
        assert_eq!(stored, ids, "{stream}");
    }
    assert_eq!(read_all(&store).len(), 40);
}

#[test]
fn retry_under_any_and_stream_exists_returns_the_original_result() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = store.append("idem", ExpectedVersion::Any, events(&[7])).unwrap();
    let before = footprint(&store);
    for _ in 0..3 {
        assert_eq!(store.append("idem", ExpectedVersion::Any, events(&[7])).unwrap(), first);
        assert_eq!(store.append("idem", ExpectedVersion::StreamExists, events(&[7])).unwrap(), first);
    }
    assert_eq!(footprint(&store), before);
    assert_eq!(store.stream_version("idem").unwrap(), Some(0));

    // Several events, after other events of the stream.
    let more = store.append("idem", ExpectedVersion::StreamExists, events(&[8, 9, 10])).unwrap();
    assert_eq!(more, AppendResult { first_version: 1, last_version: 3, first_position: 1, last_position: 3 });
    let before = footprint(&store);
    assert_eq!(store.append("idem", ExpectedVersion::Any, events(&[8, 9, 10])).unwrap(), more);
    assert_eq!(store.append("idem", ExpectedVersion::StreamExists, events(&[8, 9, 10])).unwrap(), more);
    // The same retry under the exact expected version the original had, or a stale one.
    assert_eq!(store.append("idem", ExpectedVersion::Exact(0), events(&[8, 9, 10])).unwrap(), more);
    assert_eq!(footprint(&store), before);

    // After a reopen too.
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.append("idem", ExpectedVersion::Any, events(&[8, 9, 10])).unwrap(), more);
    assert_eq!(footprint(&store), before);
}

#[test]
fn any_retry_is_recognised_only_against_the_most_recent_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("idem", ExpectedVersion::Any, events(&[7])).unwrap();
    store.append("idem", ExpectedVersion::Any, events(&[8])).unwrap();
    // 7 is no longer the most recent event: the store keeps no index of ids, so under Any a
    // retry that comes after another append is written again (documented on Store::append).
    let again = store.append("idem", ExpectedVersion::Any, events(&[7])).unwrap();
    assert_eq!(again.first_version, 2);
    // Under Exact, the retry is recognised at the versions it names whatever came after.
    let created = store.append("exact", ExpectedVersion::NoStream, events(&[1])).unwrap();
    store.append("exact", ExpectedVersion::Any, events(&[2])).unwrap();
    assert_eq!(store.append("exact", ExpectedVersion::NoStream, events(&[1])).unwrap(), created);
    // Ids are per stream: the same ids in another stream are new events.
    let other = store.append("other", ExpectedVersion::Any, events(&[8])).unwrap();
    assert_eq!((other.first_version, store.stream_version("other").unwrap()), (0, Some(0)));
    // Events without ids are never a retry.
    store.append("plain", ExpectedVersion::Any, [NewEvent::new("T", "")]).unwrap();
    let second = store.append("plain", ExpectedVersion::Any, [NewEvent::new("T", "")]).unwrap();
    assert_eq!(second.first_version, 1);
}

#[test]
fn partial_overlap_with_the_most_recent_events_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("idem", ExpectedVersion::Any, events(&[5, 6, 7])).unwrap();
    let before = footprint(&store);
    // Some ids already among the last events, some new: neither a retry nor a new append.
    for (expected, ids) in [
        (ExpectedVersion::Any, &[7, 8][..]),
        (ExpectedVersion::Any, &[6, 7, 8][..]),
        (ExpectedVersion::Any, &[8, 7][..]),
        (ExpectedVersion::Any, &[7, 6][..]),
        (ExpectedVersion::StreamExists, &[4, 5, 6, 7][..]),
        (ExpectedVersion::StreamExists, &[6, 9][..]),
    ] {
        match store.append("idem", expected, events(ids)) {
            Err(Error::WrongExpectedVersion { stream, expected: e, actual }) => {
                assert_eq!((stream.as_str(), e, actual), ("idem", expected, Some(2)), "{ids:?}")
            }
            other => panic!("{expected:?} {ids:?}: expected WrongExpectedVersion, got {other:?}"),
        }
    }
    assert_eq!(footprint(&store), before);
    // Entirely new ids are appended.
    assert_eq!(store.append("idem", ExpectedVersion::Any, events(&[8, 9])).unwrap().first_version, 3);
}

#[test]
fn append_multi_retry_under_any_is_idempotent_only_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let transfer = || {
        [
            StreamAppend::new("account-a", ExpectedVersion::Any, events(&[100])),
            StreamAppend::new("account-b", ExpectedVersion::StreamExists, events(&[200])),
        ]
    };
    store.append("account-b", ExpectedVersion::NoStream, events(&[199])).unwrap();
    let original = store.append_multi(transfer()).unwrap();
    let before = footprint(&store);
    assert_eq!(store.append_multi(transfer()).unwrap(), original);
    assert_eq!(footprint(&store), before);
    // One part a retry, the other new: a conflict, nothing written.
    let half = [
        StreamAppend::new("account-a", ExpectedVersion::Any, events(&[100])),
        StreamAppend::new("account-c", ExpectedVersion::Any, events(&[300])),
    ];
    assert!(matches!(store.append_multi(half), Err(Error::WrongExpectedVersion { .. })));
    assert_eq!(store.stream_version("account-c").unwrap(), None);
    assert_eq!(footprint(&store), before);
}

#[test]
fn any_retry_racing_the_original_writes_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for round in 0..50u128 {
        let stream = format!("idem-{round}");
        let ids = [round * 10, round * 10 + 1];
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<AppendResult> = (0..2)
            .map(|_| {
                let (store, barrier, stream) = (store.clone(), Arc::clone(&barrier), stream.clone());
                thread::spawn(move || {
                    barrier.wait();
                    store.append(&stream, ExpectedVersion::Any, events(&ids)).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert_eq!(results[0], results[1], "{stream}");
        let stored: Vec<u128> = common::read_stream(&store, &stream).iter().map(|e| e.id).collect();
        assert_eq!(stored, ids, "{stream}");
    }
}

#[test]
fn retry_racing_another_writer_of_the_same_stream() {
    // A retry races appends of other events to the same stream. Under Exact it is always
    // recognised; under Any it is recognised while its events are still the most recent,
    // and otherwise written again after the other writer's events (never in between).
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), chronicle::Options::default().durability(chronicle::Durability::Buffered))
        .unwrap();
    for round in 0..50u128 {
        let stream = format!("race-{round}");
        let id = 1_000 + round;
        let original = store.append(&stream, ExpectedVersion::NoStream, events(&[id])).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let other = {
            let (store, barrier, stream) = (store.clone(), Arc::clone(&barrier), stream.clone());
            thread::spawn(move || {
                barrier.wait();
                store.append(&stream, ExpectedVersion::Any, [NewEvent::new("Other", "")]).unwrap()
            })
        };
        barrier.wait();
        let exact = store.append(&stream, ExpectedVersion::NoStream, events(&[id])).unwrap();
        let any = store.append(&stream, ExpectedVersion::Any, events(&[id])).unwrap();
        let other = other.join().unwrap();
        assert_eq!(exact, original, "{stream}");
        let stored: Vec<u128> = common::read_stream(&store, &stream).iter().map(|e| e.id).collect();
        if any == original {
            assert_eq!(stored.len(), 2, "{stream}: {stored:?}");
            assert_eq!(other.first_version, 1, "{stream}");
        } else {
            assert_eq!((any.first_version, other.first_version), (2, 1), "{stream}");
            assert_eq!((stored.len(), stored[0], stored[2]), (3, id, id), "{stream}");
        }
    }
}
