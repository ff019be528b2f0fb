//! Power loss at every I/O call of a multi-threaded workload (appends and `append_multi`
//! under `Durability::Sync`, reads, syncs, a seal, close): on every crash image the store
//! reopens, every acknowledged append is present byte for byte at its version and position,
//! every stream is a gap-free prefix of whole batches, and the index agrees with the log.
//!
//! CI runs a sized-down enumeration; `CHRONICLE_POWER_LOSS_FULL=1 cargo test --test
//! power_loss -- --nocapture` crashes after every call with 8 crash images each.

mod crash_support;

use std::sync::Arc;

use chronicle::{Durability, Store};
use chronicle_testkit::SimStorage;
use crash_support::{Acks, Op, RunLog, StreamRef, Workload, check_appends_work, check_store, plan, small_segments};

const DIR: &str = "/power-loss/store";
/// Batch numbers of the appends made after recovery (the workload's are below).
const AFTER_RECOVERY_BATCH: u32 = 1 << 30;

fn full_run() -> bool {
    std::env::var("CHRONICLE_POWER_LOSS_FULL").is_ok_and(|v| v == "1")
}

/// Crash-image seeds for crash point `k`: one that keeps no unsynced write, one that keeps
/// all of them, and random ones (see `SimStorage::crash`).
fn seeds(k: u64, count: u64) -> Vec<u64> {
    let base = k * 4096;
    (0..count).map(|i| if i < 2 { base + i } else { base + 2 + ((i - 2) / 2) * 4 + (i - 2) % 2 }).collect()
}

/// Runs the workload on a storage where the process stops after call `k` (every later call
/// fails without effect, as if nothing reached the disk any more). `None` if the store did
/// not even open.
fn run_until_stopped(sim: &SimStorage, k: u64, threads: &[Vec<Op>]) -> Option<RunLog> {
    sim.stop_at(k + 1);
    let store = Store::open_with_storage(DIR, small_segments(), Arc::new(sim.clone())).ok()?;
    let log = Workload::new(&store, 0, None).run(threads);
    let _ = store.close();
    Some(log)
}

/// Reopens a crash image and checks everything; returns the events recovered.
fn check_image(image: SimStorage, acked: &Acks, context: &str) -> usize {
    let store = Store::open_with_storage(DIR, small_segments(), Arc::new(image.clone()))
        .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
    let recovered = check_store(&store, acked).unwrap_or_else(|e| panic!("{context}: {e}"));
    check_appends_work(&store, AFTER_RECOVERY_BATCH).unwrap_or_else(|e| panic!("{context}: {e}"));
    store.close().unwrap_or_else(|e| panic!("{context}: close after recovery: {e}"));
    // A clean reopen loads the index files written by close; it must agree as well.
    let store = Store::open_with_storage(DIR, small_segments(), Arc::new(image))
        .unwrap_or_else(|e| panic!("{context}: second reopen failed: {e}"));
    check_store(&store, acked).unwrap_or_else(|e| panic!("{context}: after clean reopen: {e}"));
    recovered.events
}

#[test]
fn every_crash_point_keeps_every_acknowledged_append() {
    let full = full_run();
    let threads = plan(4, 30, 0x5eed);
    let (seed_count, stride) = if full { (8, 1) } else { (3, 3) };
    let mut crash_points = 0u64;
    let mut images = 0u64;
    let mut acked_events_max = 0usize;
    let mut k = 0u64;
    loop {
        let sim = SimStorage::new();
        let log = run_until_stopped(&sim, k, &threads);
        let completed = sim.calls() <= k;
        let no_acks = Acks::default();
        let acked: &Acks = log.as_ref().map_or(&no_acks, |log| &log.acked);
        if let Some(log) = &log {
            assert!(log.violations.is_empty(), "crash after call {k}: {:#?}", log.violations);
        }
        acked_events_max = acked_events_max.max(
            acked
                .appends
                .iter()
                .flat_map(|a| &a.results)
                .map(|r| (r.last_position - r.first_position + 1) as usize)
                .sum(),
        );
        for seed in seeds(k, seed_count) {
            check_image(sim.crash(seed), acked, &format!("crash after call {k}, seed {seed}"));
            images += 1;
        }
        crash_points += 1;
        if completed {
            let log = log.expect("the store opened");
            for op in [
                "append",
                "append_multi",
                "read",
                "read_all",
                "sync",
                "seal",
                "snapshot",
                "delete",
                "compact",
                "set_retention",
            ] {
                assert!(
                    log.succeeded.get(op).is_some_and(|&n| n > 0),
                    "the workload never did a {op}: {:?}",
                    log.succeeded
                );
            }
            eprintln!("power loss: the complete run did {:?}", log.succeeded);
            break;
        }
        // The sized-down run still covers the first calls (open, first segment) one by one.
        k += if k < 40 { 1 } else { stride };
    }
    assert!(acked_events_max > 50, "the workload acknowledged only {acked_events_max} events");
    eprintln!(
        "power loss: {crash_points} crash points up to call {k}, {images} crash images, up to {acked_events_max} acknowledged events checked per run"
    );
}

/// `kill -9` at every call, a restart on the same storage (the operating system kept every
/// write), a second session of appends, then a power cut: what either session acknowledged
/// survives. This catches files the first session created but never made durable (the
/// directory entry) and that the second session goes on using.
#[test]
fn process_crash_at_every_call_then_power_loss_keeps_every_acknowledged_append() {
    let full = full_run();
    let first = plan(3, 12, 0xfeed);
    let second = plan(2, 6, 0xbeef);
    let (seed_count, stride) = if full { (8, 1) } else { (2, 3) };
    let mut crash_points = 0u64;
    let mut k = 0u64;
    loop {
        let sim = SimStorage::new();
        let log = run_until_stopped(&sim, k, &first);
        let completed = sim.calls() <= k;
        let context = format!("process crash after call {k}");
        let mut acked: Acks = log
            .map(|log| {
                assert!(log.violations.is_empty(), "{context}: {:#?}", log.violations);
                log.acked
            })
            .unwrap_or_default();
        sim.clear_faults();
        let store = Store::open_with_storage(DIR, small_segments(), Arc::new(sim.clone()))
            .unwrap_or_else(|e| panic!("{context}: restart failed: {e}"));
        check_store(&store, &acked).unwrap_or_else(|e| panic!("{context}: after restart: {e}"));
        // The power fails right after the first acknowledged append of the new session...
        let first_ack =
            Workload::new(&store, 50_000, None).run(&[vec![Op::Append { stream: StreamRef::Shared(0), events: 1 }]]);
        assert!(first_ack.violations.is_empty() && first_ack.acked.appends.len() == 1, "{context}: {first_ack:?}");
        acked.extend(first_ack.acked);
        check_image(sim.crash(k * 4096), &acked, &format!("{context}, restart, one append, power loss"));
        // ...or after more appends, with the store still open.
        let log = Workload::new(&store, 100_000, None).run(&second);
        assert!(log.violations.is_empty(), "{context}, second session: {:#?}", log.violations);
        acked.extend(log.acked);
        // The power fails while the second session's store is still open.
        for seed in seeds(k, seed_count) {
            check_image(sim.crash(seed), &acked, &format!("{context}, restart, power loss with seed {seed}"));
        }
        drop(store);
        crash_points += 1;
        if completed {
            break;
        }
        k += if k < 40 { 1 } else { stride };
    }
    eprintln!("process crash then power loss: {crash_points} crash points up to call {k}");
}

/// The same enumeration with `Durability::Buffered`: what was acknowledged before a
/// successful `sync`, `seal` or `compact` (or `close`) survives, the rest may be lost but
/// only as a suffix of whole batches.
#[test]
fn every_crash_point_under_buffered_durability_keeps_what_was_synced() {
    let full = full_run();
    let threads = plan(3, 20, 0xb0ff);
    let options = small_segments().durability(Durability::Buffered);
    let (seed_count, stride) = if full { (8, 1) } else { (3, 4) };
    let mut crash_points = 0u64;
    let mut k = 0u64;
    loop {
        let sim = SimStorage::new();
        sim.stop_at(k + 1);
        let durable = match Store::open_with_storage(DIR, options.clone(), Arc::new(sim.clone())) {
            Ok(store) => {
                let log = Workload::new(&store, 0, None).run(&threads);
                assert!(log.violations.is_empty(), "crash after call {k}: {:#?}", log.violations);
                let closed = store.close().is_ok();
                log.durable_without_sync_mode(closed)
            }
            Err(_) => Acks::default(),
        };
        let completed = sim.calls() <= k;
        for seed in seeds(k, seed_count) {
            let context = format!("Buffered, crash after call {k}, seed {seed}");
            let store = Store::open_with_storage(DIR, options.clone(), Arc::new(sim.crash(seed)))
                .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
            check_store(&store, &durable).unwrap_or_else(|e| panic!("{context}: {e}"));
        }
        crash_points += 1;
        if completed {
            assert!(!durable.appends.is_empty(), "nothing was durable in the complete run");
            break;
        }
        k += if k < 40 { 1 } else { stride };
    }
    eprintln!("power loss, Buffered: {crash_points} crash points up to call {k}");
}
