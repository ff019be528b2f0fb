//! Durable consumers: the checkpoint lives in the store, resumes after the last ack,
//! never jumps past an unacknowledged event (power loss at every I/O call of a consuming
//! run on SimStorage), one live subscription per name, bad input refused with nothing written.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chronicle::{Durability, Error, ExpectedVersion, Filter, NewEvent, Options, Store};
use chronicle_testkit::SimStorage;

fn ev(i: u32) -> NewEvent {
    NewEvent::new(if i.is_multiple_of(2) { "Even" } else { "Odd" }, i.to_le_bytes().to_vec())
}

fn fill(store: &Store, n: u32) {
    for i in 0..n {
        store.append(&format!("s-{}", i % 3), ExpectedVersion::Any, [ev(i)]).unwrap();
    }
}

#[test]
fn resumes_just_after_the_last_acknowledged_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, 10);
    let mut sub = store.subscribe_durable("billing", Filter::event_types(["Odd"])).unwrap();
    assert_eq!(store.consumer_position("billing").unwrap(), None);
    let a = sub.next().unwrap().unwrap();
    let b = sub.next().unwrap().unwrap();
    assert_eq!((a.position, b.position), (1, 3));
    sub.ack(a.position).unwrap();
    assert_eq!(store.consumer_position("billing").unwrap(), Some(1));
    sub.ack(0).unwrap(); // below the checkpoint: nothing changes
    assert_eq!(store.consumer_position("billing").unwrap(), Some(1));
    drop(sub);
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut sub = store.subscribe_durable("billing", Filter::event_types(["Odd"])).unwrap();
    // At least once: b (position 3) was delivered but not acknowledged, so it comes again.
    assert_eq!(sub.next().unwrap().unwrap().position, 3);
}

#[test]
fn ack_of_examined_non_matching_positions_is_allowed_but_not_beyond() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, 4);
    let mut sub = store.subscribe_durable("c", Filter::stream("nothing")).unwrap();
    assert!(matches!(sub.ack(0), Err(Error::InvalidInput { .. })), "nothing delivered or examined yet");
    assert!(sub.recv_timeout(Duration::from_millis(10)).unwrap().is_none());
    assert_eq!(sub.position(), 4);
    assert!(matches!(sub.ack(4), Err(Error::InvalidInput { .. })), "beyond the end");
    assert!(matches!(sub.ack(u64::MAX), Err(Error::InvalidInput { .. })));
    assert_eq!(store.consumer_position("c").unwrap(), None, "nothing written");
    sub.ack(3).unwrap();
    assert_eq!(store.consumer_position("c").unwrap(), Some(3));
    let mut plain = store.subscribe(0, Filter::all()).unwrap();
    plain.next().unwrap().unwrap();
    assert!(matches!(plain.ack(0), Err(Error::InvalidInput { .. })), "not a durable subscription");
}

#[test]
fn one_live_subscription_per_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = store.subscribe_durable("x", Filter::all()).unwrap();
    assert!(matches!(store.subscribe_durable("x", Filter::all()), Err(Error::ConsumerInUse { .. })));
    assert!(matches!(store.clone().subscribe_durable("x", Filter::category("a")), Err(Error::ConsumerInUse { .. })));
    assert!(matches!(store.delete_consumer("x"), Err(Error::ConsumerInUse { .. })));
    let other = store.subscribe_durable("y", Filter::all()).unwrap();
    drop(first);
    let again = store.subscribe_durable("x", Filter::all()).unwrap();
    drop((other, again));
}

#[test]
fn delete_consumer_starts_it_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, 3);
    let mut sub = store.subscribe_durable("x", Filter::all()).unwrap();
    sub.next().unwrap().unwrap();
    sub.next().unwrap().unwrap();
    sub.ack(1).unwrap();
    drop(sub);
    store.delete_consumer("x").unwrap();
    store.delete_consumer("x").unwrap(); // absent: fine
    assert_eq!(store.consumer_position("x").unwrap(), None);
    let mut sub = store.subscribe_durable("x", Filter::all()).unwrap();
    assert_eq!(sub.next().unwrap().unwrap().position, 0);
}

#[test]
fn bad_names_are_invalid_input_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    let long = "n".repeat(chronicle::CONSUMER_NAME_BYTES_MAX + 1);
    for name in ["", long.as_str(), "a/b", "../x", "a\\b", ".hidden", "a b", "nul\0", "é"] {
        assert!(matches!(store.subscribe_durable(name, Filter::all()), Err(Error::InvalidInput { .. })), "{name:?}");
        assert!(matches!(store.consumer_position(name), Err(Error::InvalidInput { .. })), "{name:?}");
        assert!(matches!(store.delete_consumer(name), Err(Error::InvalidInput { .. })), "{name:?}");
    }
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after);
    assert!(!dir.path().parent().unwrap().join("x.chk").exists());
}

#[test]
fn a_damaged_checkpoint_is_corruption_not_a_silent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, 2);
    let mut sub = store.subscribe_durable("x", Filter::all()).unwrap();
    sub.next().unwrap().unwrap();
    sub.ack(0).unwrap();
    drop(sub);
    let path = dir.path().join("consumer-x.chk");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[17] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(store.consumer_position("x"), Err(Error::Corruption { .. })));
    assert!(matches!(store.subscribe_durable("x", Filter::all()), Err(Error::Corruption { .. })));
}

/// Consumes everything, acknowledging every third event; returns the last ack that
/// returned Ok and the last ack attempted.
fn consume(store: &Store) -> (Option<u64>, Option<u64>) {
    let (mut ok, mut tried) = (None, None);
    let Ok(mut sub) = store.subscribe_durable("c", Filter::event_types(["Even"])) else { return (ok, tried) };
    while let Ok(Some(event)) = sub.recv_timeout(Duration::ZERO) {
        if event.position.is_multiple_of(3) {
            tried = Some(event.position);
            if sub.ack(event.position).is_err() {
                break;
            }
            ok = Some(event.position);
        }
    }
    (ok, tried)
}

#[test]
fn power_loss_at_every_call_never_moves_the_checkpoint_past_an_unacknowledged_event() {
    for durability in [Durability::Sync, Durability::Buffered] {
        let options = Options::default().durability(durability).segment_bytes(4096);
        // Calls of a whole run without faults, to enumerate crash points.
        let base = SimStorage::new();
        let store = Store::open_with_storage("/c", options.clone(), Arc::new(base.clone())).unwrap();
        fill(&store, 30);
        let start = base.calls();
        let (ok, _) = consume(&store);
        assert_eq!(ok, Some(24));
        let calls = base.calls() - start;
        drop(store);
        for k in 0..calls + 2 {
            let sim = SimStorage::new();
            let store = Store::open_with_storage("/c", options.clone(), Arc::new(sim.clone())).unwrap();
            // Not synced: under Buffered, the first ack must sync the log before its checkpoint.
            fill(&store, 30);
            sim.stop_at(sim.calls() + k + 1);
            let (ok, tried) = consume(&store);
            drop(store);
            for seed in 0..4 {
                let image = sim.crash(k * 16 + seed);
                let store = Store::open_with_storage("/c", options.clone(), Arc::new(image)).unwrap();
                let checkpoint = store.consumer_position("c").unwrap();
                let context = format!(
                    "{durability:?} crash after call {k}, seed {seed}: checkpoint {checkpoint:?}, ok {ok:?}, tried {tried:?}"
                );
                // Durable once acknowledged, and never ahead of what was acknowledged.
                assert!(checkpoint >= ok, "{context}");
                assert!(checkpoint <= tried, "{context}");
                // Never ahead of the log: the acknowledged event is still there.
                if let Some(p) = checkpoint {
                    let last = store.read_all(0).unwrap().map(|e| e.unwrap().position).last();
                    assert!(last >= Some(p), "{context}: log ends at {last:?}");
                }
                // Resumes at or before the first unacknowledged event.
                let mut sub = store.subscribe_durable("c", Filter::event_types(["Even"])).unwrap();
                if let Some(first) = sub.recv_timeout(Duration::ZERO).unwrap() {
                    // The first "Even" event (even position) after the checkpoint: nothing skipped.
                    let expected = checkpoint.map_or(0, |c| (c + 1).next_multiple_of(2));
                    assert_eq!(first.position, expected, "{context}");
                }
            }
        }
    }
}

#[test]
fn a_parked_event_is_kept_listed_replayable_and_does_not_hold_the_checkpoint_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().durability(Durability::Buffered)).unwrap();
    fill(&store, 6);
    let mut sub = store.subscribe_durable("mailer", Filter::all()).unwrap();
    let events: Vec<_> = (0..4).map(|_| sub.next().unwrap().unwrap()).collect();
    // Bad input first: nothing written.
    assert!(matches!(
        sub.park(&events[0], &"r".repeat(chronicle::PARK_REASON_BYTES_MAX + 1)),
        Err(Error::InvalidInput { .. })
    ));
    let mut ahead = events[3].clone();
    ahead.position = 4;
    assert!(matches!(sub.park(&ahead, "not yet delivered"), Err(Error::InvalidInput { .. })));
    assert!(store.parked_events("mailer").unwrap().is_empty());
    sub.park(&events[1], "smtp down").unwrap();
    sub.park(&events[1], "again").unwrap(); // already parked: unchanged
    sub.park(&events[2], "bad address").unwrap();
    sub.ack(events[3].position).unwrap();
    assert_eq!(store.consumer_position("mailer").unwrap(), Some(3), "parked events do not hold the checkpoint back");
    let parked = store.parked_events("mailer").unwrap();
    assert_eq!(
        parked.iter().map(|p| (p.position, p.reason.as_str())).collect::<Vec<_>>(),
        [(1, "smtp down"), (2, "bad address")]
    );
    drop(sub);
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.parked_events("mailer").unwrap().len(), 2, "durable across reopen");
    let replayed = store.unpark("mailer", 1).unwrap().unwrap();
    assert_eq!((replayed.position, replayed.data.clone()), (events[1].position, events[1].data.clone()));
    assert!(matches!(store.unpark("mailer", 1), Err(Error::InvalidInput { .. })), "no longer parked");
    assert_eq!(store.parked_events("mailer").unwrap().len(), 1);
    let mut plain = store.subscribe(0, Filter::all()).unwrap();
    let first = plain.next().unwrap().unwrap();
    assert!(matches!(plain.park(&first, "x"), Err(Error::InvalidInput { .. })), "not durable");
    store.delete_consumer("mailer").unwrap();
    assert!(store.parked_events("mailer").unwrap().is_empty());
    assert!(matches!(store.parked_events("../x"), Err(Error::InvalidInput { .. })));
}

#[test]
fn unparking_an_event_discarded_meanwhile_returns_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("gone-1", ExpectedVersion::Any, [ev(0)]).unwrap();
    store.append("kept-1", ExpectedVersion::Any, [ev(1)]).unwrap();
    let mut sub = store.subscribe_durable("c", Filter::all()).unwrap();
    let first = sub.next().unwrap().unwrap();
    sub.park(&first, "later").unwrap();
    drop(sub);
    store.delete_stream("gone-1", ExpectedVersion::Any).unwrap();
    store.compact().unwrap();
    assert_eq!(store.unpark("c", first.position).unwrap(), None);
    assert!(store.parked_events("c").unwrap().is_empty());
}

/// Partitioned consumers: four durable consumers, one partition each, running on their
/// own threads while a writer appends: together they see every event exactly once, each
/// stream entirely in one partition and in version order.
#[test]
fn partitioned_consumers_split_the_streams_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    const PARTITIONS: u32 = 4;
    const EVENTS: u32 = 400;
    let written = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handles: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let written = Arc::clone(&written);
            let mut sub =
                store.subscribe_durable(&format!("billing-{p}"), Filter::all().with_partition(p, PARTITIONS)).unwrap();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while std::time::Instant::now() < deadline {
                    match sub.recv_timeout(Duration::from_millis(300)).unwrap() {
                        Some(event) => {
                            sub.ack(event.position).unwrap();
                            seen.push((event.stream_id, event.version, event.position));
                        }
                        // Nothing new since the writer finished: this partition has it all.
                        None if written.load(std::sync::atomic::Ordering::SeqCst) => break,
                        None => {}
                    }
                }
                seen
            })
        })
        .collect();
    for i in 0..EVENTS {
        store.append(&format!("acct-{}", i % 37), ExpectedVersion::Any, [ev(i)]).unwrap();
    }
    written.store(true, std::sync::atomic::Ordering::SeqCst);
    let per_partition: Vec<Vec<(String, u64, u64)>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut all: Vec<u64> = per_partition.iter().flatten().map(|e| e.2).collect();
    all.sort_unstable();
    assert_eq!(all, (0..u64::from(EVENTS)).collect::<Vec<_>>(), "every event exactly once across partitions");
    let mut owner = std::collections::HashMap::new();
    for (p, events) in per_partition.iter().enumerate() {
        assert!(events.windows(2).all(|w| w[0].2 < w[1].2), "partition {p} in position order");
        for (stream, _, _) in events {
            assert_eq!(*owner.entry(stream.clone()).or_insert(p), p, "stream {stream} in one partition");
        }
    }
    assert!(matches!(store.read_all_filtered(0, Filter::all().with_partition(4, 4)), Err(Error::InvalidInput { .. })));
    assert!(matches!(store.read_all_filtered(0, Filter::all().with_partition(0, 0)), Err(Error::InvalidInput { .. })));
}
