//! Subscriptions of the embedded store: filtered reads across reopen, the wake-up paths of
//! its own (close, last drop, poisoning), compaction under a subscriber, no lock kept
//! after close, the shared live tail. What every backend must do (catch-up then live with
//! writers on many threads, filtered positions, beyond the end, timeouts, stop, deletions)
//! is in `chronicle_testkit::conformance::run_follow` (`tests/conformance.rs`).

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chronicle::{Durability, Error, ExpectedVersion, Filter, NewEvent, Options, RecordedEvent, Store};

fn ev(event_type: &str, data: impl Into<Vec<u8>>) -> NewEvent {
    NewEvent::new(event_type, data.into())
}

fn matching(store: &Store, filter: &Filter) -> Vec<u64> {
    store.read_all_filtered(0, filter.clone()).unwrap().map(|e| e.unwrap().position).collect()
}

/// Takes `n` events from `sub`, failing after a generous deadline instead of hanging.
fn take(sub: &mut chronicle::Subscription, n: usize) -> Vec<RecordedEvent> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} events arrived", out.len());
        if let Some(event) = sub.recv_timeout(Duration::from_millis(200)).unwrap() {
            out.push(event);
        }
    }
    out
}

type Keep = Box<dyn Fn(&RecordedEvent) -> bool>;

#[test]
fn filtered_reads_agree_with_filtering_read_all() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().segment_bytes(8 << 10);
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    for i in 0..2_000u32 {
        let stream = format!("{}-{}", ["order", "user", "cart"][(i % 3) as usize], i % 11);
        store
            .append(&stream, ExpectedVersion::Any, [ev(["A", "B", "C"][(i % 5 % 3) as usize], i.to_le_bytes())])
            .unwrap();
    }
    store.delete_stream("cart-5", ExpectedVersion::Any).unwrap();
    let check = |store: &Store| {
        let all: Vec<RecordedEvent> = common::read_all(store);
        let cases: Vec<(Filter, Keep)> = vec![
            (Filter::all(), Box::new(|_| true)),
            (Filter::stream("order-3"), Box::new(|e| e.stream_id == "order-3")),
            (Filter::category("user"), Box::new(|e| e.stream_id.starts_with("user-"))),
            (Filter::stream_prefix("order-1"), Box::new(|e| e.stream_id.starts_with("order-1"))),
            (Filter::event_types(["A", "C"]), Box::new(|e| e.event_type != "B")),
            (
                Filter::category("cart").with_event_types(["B"]),
                Box::new(|e| e.stream_id.starts_with("cart-") && e.event_type == "B"),
            ),
            (Filter::stream("cart-5"), Box::new(|_| false)),
        ];
        for (filter, keep) in cases {
            for from in [0u64, 1, 777, 1999, 5000] {
                let expected: Vec<u64> =
                    all.iter().filter(|e| e.position >= from && keep(e)).map(|e| e.position).collect();
                let got: Vec<u64> =
                    store.read_all_filtered(from, filter.clone()).unwrap().map(|e| e.unwrap().position).collect();
                assert_eq!(got, expected, "{filter:?} from {from}");
            }
        }
    };
    check(&store);
    store.close().unwrap();
    // Reopened: sealed segments answer from mapped index files.
    let store = Store::open_with(dir.path(), options).unwrap();
    check(&store);
}

#[test]
fn close_wakes_a_blocked_subscriber_and_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::Any, [ev("T", "")]).unwrap();
    let mut sub = store.subscribe(0, Filter::all()).unwrap();
    let blocked = thread::spawn(move || {
        let first = sub.next().map(|e| e.unwrap().position);
        let after = sub.next().is_none();
        (first, after, sub)
    });
    thread::sleep(Duration::from_millis(50));
    store.close().unwrap();
    let (first, ended, sub) = blocked.join().unwrap();
    assert_eq!(first, Some(0));
    assert!(ended && sub.is_finished());
    // The subscription holds no lock: the directory reopens while it is still alive.
    let reopened = Store::open(dir.path()).unwrap();
    drop(sub);
    drop(reopened);
}

#[test]
fn dropping_the_last_store_clone_ends_subscribers_and_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut sub = store.subscribe(0, Filter::all()).unwrap();
    let blocked = thread::spawn(move || sub.next().is_none());
    thread::sleep(Duration::from_millis(50));
    drop(store);
    assert!(blocked.join().unwrap());
    let sub2 = {
        let store = Store::open(dir.path()).expect("the lock was released");
        store.subscribe(0, Filter::all()).unwrap()
    };
    // Its store is gone: the subscription ends at once.
    let mut sub2 = sub2;
    assert!(sub2.next().is_none());
    Store::open(dir.path()).unwrap();
}

#[test]
fn a_poisoned_writer_ends_subscribers_with_the_cause() {
    use chronicle_testkit::{InjectedError, SimStorage};
    let sim = SimStorage::new();
    let store =
        Store::open_with_storage("/poison", Options::default().durability(Durability::Sync), Arc::new(sim.clone()))
            .unwrap();
    store.append("s", ExpectedVersion::Any, [ev("T", "")]).unwrap();
    let sub = store.subscribe(0, Filter::all()).unwrap();
    let blocked = thread::spawn(move || {
        let mut items = Vec::new();
        for item in sub {
            items.push(item.map(|e| e.position));
        }
        items
    });
    thread::sleep(Duration::from_millis(30));
    sim.fail_from(sim.calls(), InjectedError::Io);
    assert!(store.append("s", ExpectedVersion::Any, [ev("T", "")]).is_err());
    let items = blocked.join().unwrap();
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(matches!(items[0], Ok(0)));
    assert!(matches!(items[1], Err(Error::Poisoned { .. })), "{items:?}");
}

#[test]
fn a_subscriber_reads_through_a_compaction_that_removes_segments_it_has_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().segment_bytes(4096)).unwrap();
    for i in 0..600u32 {
        let stream = if i % 2 == 0 { format!("keep-{}", i % 5) } else { format!("gone-{}", i % 3) };
        store.append(&stream, ExpectedVersion::Any, [ev("T", vec![0u8; 40])]).unwrap();
    }
    let mut sub = store.subscribe(0, Filter::all()).unwrap();
    let first = take(&mut sub, 10);
    let segments_before = common::segment_files(dir.path());
    for stream in ["gone-0", "gone-1", "gone-2"] {
        store.delete_stream(stream, ExpectedVersion::Any).unwrap();
    }
    let report = store.compact().unwrap();
    assert!(report.events_removed > 0);
    let segments_after = common::segment_files(dir.path());
    assert!(segments_before.iter().any(|s| !segments_after.contains(s)), "compaction removed segment files");
    // The subscriber goes on: it finishes the segment list it was reading (retired segments
    // stay readable), then continues on the compacted segments from its position.
    let mut positions: Vec<u64> = first.iter().map(|e| e.position).collect();
    for i in 600..650u32 {
        store.append("keep-9", ExpectedVersion::Any, [ev("T", i.to_le_bytes())]).unwrap();
    }
    // Tombstones took positions 600..603: the new events are 603..653.
    let last = common::read_all(&store).last().unwrap().position;
    assert_eq!(last, 652);
    let deadline = Instant::now() + Duration::from_secs(30);
    while positions.last() != Some(&last) {
        assert!(Instant::now() < deadline);
        if let Some(event) = sub.recv_timeout(Duration::from_millis(100)).unwrap() {
            positions.push(event.position);
        }
    }
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in order, no duplicate");
    let kept: Vec<u64> = (0..600).filter(|p| p % 2 == 0).chain(603..653).collect();
    // Every surviving event arrived; of the deleted streams' events, at most those read before.
    assert!(kept.iter().all(|p| positions.contains(p)));
    assert_eq!(sub.position(), 653);
}

#[test]
fn many_idle_subscribers_do_not_block_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let subs: Vec<_> = (0..100).map(|_| store.subscribe(0, Filter::all()).unwrap()).collect();
    // Not one of them reads: appends go on, and each of them later reads everything.
    for i in 0..1000u32 {
        store.append("s", ExpectedVersion::Any, [ev("T", i.to_le_bytes())]).unwrap();
    }
    for mut sub in subs.into_iter().step_by(17) {
        assert_eq!(take(&mut sub, 1000).last().unwrap().position, 999);
    }
}

#[test]
fn the_public_types_are_send_and_sync_where_promised() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}
    send::<chronicle::Subscription>();
    send::<chronicle::FilteredIter>();
    send_sync::<Filter>();
    send_sync::<chronicle::StopHandle>();
    send_sync::<chronicle::AppendCondition>();
}

/// Several live subscribers share one decoded tail; one of them stops reading in the middle
/// of a batch while far more than the shared window commits, then goes on: it reads what
/// the window dropped from the segments, and every subscriber still sees every matching
/// event exactly once, in order.
#[test]
fn a_subscriber_that_falls_behind_the_shared_tail_misses_nothing() {
    const TOTAL: u32 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().durability(Durability::Buffered).segment_bytes(1 << 20);
    let store = Store::open_with(dir.path(), options).unwrap();
    let filters = [Filter::all(), Filter::category("order"), Filter::event_types(["Paid"]), Filter::all()];
    let live: Vec<_> = filters
        .iter()
        .cloned()
        .map(|filter| {
            let mut sub = store.subscribe(0, filter).unwrap();
            thread::spawn(move || {
                // Until it has examined the whole log.
                let deadline = Instant::now() + Duration::from_secs(120);
                let mut seen = Vec::new();
                while chronicle::Subscription::position(&sub) < u64::from(TOTAL) {
                    assert!(Instant::now() < deadline, "a live subscriber stalled at {}", seen.len());
                    if let Some(event) = sub.recv_timeout(Duration::from_millis(200)).unwrap() {
                        seen.push(event.position);
                    }
                }
                seen
            })
        })
        .collect();
    let mut stalled = store.subscribe(0, Filter::all()).unwrap();
    let append = |from: u32, to: u32| {
        for chunk in (from..to).collect::<Vec<_>>().chunks(500) {
            let stream = format!("{}-{}", if chunk[0] % 3 == 0 { "order" } else { "user" }, chunk[0] % 11);
            let events = chunk.iter().map(|i| ev(if i % 2 == 0 { "Placed" } else { "Paid" }, i.to_le_bytes()));
            store.append(&stream, ExpectedVersion::Any, events).unwrap();
        }
    };
    append(0, 5_000);
    let mut seen: Vec<u64> = take(&mut stalled, 3_333).iter().map(|e| e.position).collect();
    append(5_000, TOTAL);
    seen.extend(take(&mut stalled, TOTAL as usize - 3_333).iter().map(|e| e.position));
    assert_eq!(seen, (0..u64::from(TOTAL)).collect::<Vec<u64>>());
    for (thread, filter) in live.into_iter().zip(&filters) {
        assert_eq!(thread.join().unwrap(), matching(&store, filter), "{filter:?}");
    }
}
