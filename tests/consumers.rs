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
