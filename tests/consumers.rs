//! Durable consumers of the embedded store: the checkpoint lives in the store directory
//! (survives a reopen, a damaged one is corruption), never jumps past an unacknowledged
//! event (power loss at every I/O call of a consuming run on SimStorage), bad input writes
//! nothing, parked events. What every backend must do (resume after the last ack, ack
//! bounds, one live subscription per name, deletion, bad names, partitions) is in
//! `chronicle_testkit::conformance::run_follow` (`tests/conformance.rs`).

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

/// Resuming after the last ack across a close and reopen (the resume itself, on every
/// backend, is `chronicle_testkit::conformance::run_follow`'s `durable_consumer_resumes`).
#[test]
fn the_checkpoint_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, 10);
    let mut sub = store.subscribe_durable("billing", Filter::event_types(["Odd"])).unwrap();
    let a = sub.next().unwrap().unwrap();
    let b = sub.next().unwrap().unwrap();
    assert_eq!((a.position, b.position), (1, 3));
    sub.ack(a.position).unwrap();
    drop(sub);
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.consumer_position("billing").unwrap(), Some(1));
    let mut sub = store.subscribe_durable("billing", Filter::event_types(["Odd"])).unwrap();
    // At least once: b (position 3) was delivered but not acknowledged, so it comes again.
    assert_eq!(sub.next().unwrap().unwrap().position, 3);
    // A clone shares the claim on the name.
    assert!(matches!(store.clone().subscribe_durable("billing", Filter::all()), Err(Error::ConsumerInUse { .. })));
}

/// Bad names are `InvalidInput` on every backend (`run_follow`'s `bad_names_and_filters`);
/// here: the embedded store writes no file for them, none outside its directory, and none
/// for a refused filter.
#[test]
fn bad_names_and_filters_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    let long = "n".repeat(chronicle::CONSUMER_NAME_BYTES_MAX + 1);
    for name in ["", long.as_str(), "a/b", "../x", "a\\b", ".hidden", "a b", "nul\0", "é"] {
        assert!(store.subscribe_durable(name, Filter::all()).is_err(), "{name:?}");
        assert!(store.delete_consumer(name).is_err(), "{name:?}");
    }
    assert!(store.subscribe_durable("c", Filter::category("a-b")).is_err());
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
