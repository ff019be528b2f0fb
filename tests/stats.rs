//! `Store::stats` and `Store::health`.

use chronicle::{ExpectedVersion, Health, NewEvent, Options, Store};

#[test]
fn stats_count_what_the_writer_did() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().segment_bytes(16 << 10)).unwrap();
    for i in 0..200u32 {
        store.append(&format!("s-{}", i % 4), ExpectedVersion::Any, [NewEvent::new("T", vec![0u8; 100])]).unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.end_position, 200);
    assert_eq!(stats.streams, 4);
    assert!(stats.segments > 1);
    assert!(stats.bytes > 200 * 100);
    assert!(stats.fsyncs >= 200, "{stats:?}");
    assert_eq!(stats.fsync_micros.total(), stats.fsyncs);
    assert!(stats.fsync_p50_micros <= stats.fsync_p99_micros);
    assert_eq!(stats.commit_group_records.total(), stats.commit_groups);
    assert!(!stats.read_only);
    store.compact().unwrap();
    let after = store.stats();
    assert_eq!(after.compactions, 1);
    assert!(!after.compaction_running);
    assert_eq!(store.health(), Health::Ok);
    let reader = Store::open_read_only(dir.path()).unwrap();
    let stats = reader.stats();
    assert!(stats.read_only && stats.refreshes >= 1);
    assert_eq!((stats.end_position, stats.streams), (200, 4));
    assert_eq!(stats.fsyncs, 0);
    store.clone().close().unwrap();
    assert_eq!(store.health(), Health::Closed);
    assert_eq!(store.health().status(), "closed");
}

#[test]
fn health_reports_a_failed_fsync_as_poisoned_with_its_cause() {
    use chronicle_testkit::{InjectedError, SimStorage};
    let sim = SimStorage::new();
    let store = Store::open_with_storage("/db", Options::default(), std::sync::Arc::new(sim.clone())).unwrap();
    store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "ok")]).unwrap();
    assert!(matches!(store.health(), Health::Ok), "{:?}", store.health());
    // Every I/O call from the next one on fails: the append's write or fsync does.
    sim.fail_from(sim.calls() + 1, InjectedError::Io);
    assert!(store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "lost")]).is_err());
    match store.health() {
        Health::Poisoned { cause } => assert!(!cause.is_empty(), "the cause is named"),
        other => panic!("after a failed write: {other:?}"),
    }
    let other = store.clone();
    drop(store.close());
    assert!(matches!(other.health(), Health::Closed), "{:?}", other.health());
}

#[test]
fn stats_count_live_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.stats().subscribers, 0);
    let first = store.subscribe(0, chronicle::Filter::all()).unwrap();
    let second = store.subscribe_durable("billing", chronicle::Filter::all()).unwrap();
    assert_eq!(store.stats().subscribers, 2);
    drop(first);
    assert_eq!(store.stats().subscribers, 1);
    drop(second);
    assert_eq!(store.stats().subscribers, 0);
}
