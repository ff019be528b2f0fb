//! EIO and ENOSPC at every I/O call of a multi-threaded workload, once or from then on:
//! failed work is never acknowledged; after a failed write or fsync every later write is
//! refused (`Poisoned` or `Io`), also once the fault is gone (no retry that reports
//! success); a crash right after the failure keeps every acknowledged append; reopening
//! on the same storage recovers whole batches, appends work again (ENOSPC: once space is
//! freed) and stay durable across a later crash.
//!
//! CI injects at every call of one workload; `CHRONICLE_ERROR_INJECTION_FULL=1 cargo test
//! --test error_injection -- --nocapture` does so for four different workloads.

mod crash_support;

use std::sync::Arc;

use chronicle::{Error, ExpectedVersion, Store};
use chronicle_testkit::{InjectedError, SimStorage};
use crash_support::{Acks, Workload, check_appends_work, check_store, part_events, plan, small_segments};

const DIR: &str = "/error-injection/store";
const AFTER_FAILURE_BATCH: u32 = 1 << 29;
const AFTER_RECOVERY_BATCH: u32 = 1 << 30;

fn full_run() -> bool {
    std::env::var("CHRONICLE_ERROR_INJECTION_FULL").is_ok_and(|v| v == "1")
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    error: InjectedError,
    persistent: bool,
}

impl Fault {
    fn inject(self, sim: &SimStorage, call: u64) {
        if self.persistent { sim.fail_from(call, self.error) } else { sim.fail_call(call, self.error) }
    }
}

fn is_write_failure(error: &Error) -> bool {
    matches!(error, Error::Io { .. } | Error::Poisoned { .. })
}

fn open(sim: &SimStorage) -> Result<Store, Error> {
    Store::open_with_storage(DIR, small_segments(), Arc::new(sim.clone()))
}

/// Injects `fault` at call `call`, runs the workload, and checks everything the module
/// documentation lists. Returns whether the workload made fewer than `call` calls (the
/// fault could not fire: the enumeration is complete).
fn inject_and_check(fault: Fault, call: u64, threads: &[Vec<crash_support::Op>]) -> bool {
    let context = format!("{fault:?} at call {call}");
    let sim = SimStorage::new();
    fault.inject(&sim, call);
    let mut acked = Acks::default();
    match open(&sim) {
        Err(error) => assert!(is_write_failure(&error), "{context}: open failed with {error}"),
        Ok(store) => {
            let log = Workload::new(&store, 0, None).run(threads);
            assert!(log.violations.is_empty(), "{context}: {:#?}", log.violations);
            acked = log.acked;
            if log.write_failures > 0 {
                // Space freed, disk healthy again: the store must still refuse writes.
                sim.clear_faults();
                let retry =
                    store.append("after-failure", ExpectedVersion::Any, part_events(AFTER_FAILURE_BATCH, 1, 0, 1));
                assert!(
                    retry.as_ref().is_err_and(is_write_failure),
                    "{context}: append after a write failure returned {retry:?}"
                );
                assert!(store.sync().is_err(), "{context}: sync after a write failure succeeded");
                assert!(store.close().is_err(), "{context}: close after a write failure succeeded");
            } else {
                let _ = store.close();
            }
        }
    }
    let completed = sim.calls() < call;
    sim.clear_faults();

    // Power fails right after: every acknowledged append is durable.
    for seed in [call * 4, call * 4 + 2] {
        let store = open(&sim.crash(seed)).unwrap_or_else(|e| panic!("{context}: reopen after crash {seed}: {e}"));
        check_store(&store, &acked).unwrap_or_else(|e| panic!("{context}: after crash {seed}: {e}"));
    }

    // Reopen on the same storage (no crash): whole batches, and appends work again...
    let store = open(&sim).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    check_store(&store, &acked).unwrap_or_else(|e| panic!("{context}: after reopen: {e}"));
    let after = check_appends_work(&store, AFTER_RECOVERY_BATCH).unwrap_or_else(|e| panic!("{context}: {e}"));
    drop(store);
    acked.appends.extend(after);
    // ...and what they acknowledge survives a crash, even after a failed fsync had left
    // bytes in the file that never reached the disk.
    let store = open(&sim.crash(call * 4)).unwrap_or_else(|e| panic!("{context}: reopen after the last crash: {e}"));
    check_store(&store, &acked).unwrap_or_else(|e| panic!("{context}: appends after recovery, then a crash: {e}"));
    completed
}

fn enumerate(fault: Fault) {
    let workloads = if full_run() { 4 } else { 1 };
    for workload in 0..workloads {
        let threads = plan(3, 20, 0xe770 + workload);
        let mut call = 1;
        while !inject_and_check(fault, call, &threads) {
            call += 1;
        }
        eprintln!("{fault:?}, workload {workload}: injected at each of calls 1..={call}");
    }
}

#[test]
fn eio_once_at_every_call() {
    enumerate(Fault { error: InjectedError::Io, persistent: false });
}

#[test]
fn eio_from_every_call_on() {
    enumerate(Fault { error: InjectedError::Io, persistent: true });
}

#[test]
fn enospc_once_at_every_call() {
    enumerate(Fault { error: InjectedError::NoSpace, persistent: false });
}

#[test]
fn enospc_from_every_call_on_until_space_is_freed() {
    enumerate(Fault { error: InjectedError::NoSpace, persistent: true });
}

/// Without `Sync`, an append the writer is free to take commits on the caller's thread: a
/// failed write there is reported to that caller and poisons the store just the same, and a
/// later `sync` does not report success.
#[test]
fn inline_append_failure_poisons_the_store() {
    use chronicle::{Durability, NewEvent, Options};
    let sim = SimStorage::new();
    let options = small_segments().durability(Durability::Buffered);
    let store = Store::open_with_storage(DIR, options, Arc::new(sim.clone())).unwrap();
    store.append("s", ExpectedVersion::NoStream, [NewEvent::new("Kept", "1")]).unwrap();
    sim.fail_call(sim.calls(), InjectedError::Io);
    let failed = store.append("s", ExpectedVersion::Exact(0), [NewEvent::new("Lost", "2")]);
    assert!(failed.as_ref().is_err_and(is_write_failure), "{failed:?}");
    let refused = store.append("s", ExpectedVersion::Exact(0), [NewEvent::new("Refused", "3")]);
    assert!(matches!(refused, Err(Error::Poisoned { .. })), "{refused:?}");
    assert!(matches!(store.sync(), Err(Error::Poisoned { .. })));
    let events: Vec<_> = store.read_stream("s", 0).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(events.len(), 1, "the failed append is not visible");
    drop(store);
    let reopened = Store::open_with_storage(DIR, Options::default(), Arc::new(sim.clone())).unwrap();
    let versions: Vec<u64> = reopened.read_stream("s", 0).unwrap().map(|e| e.unwrap().version).collect();
    assert_eq!(versions, vec![0]);
}
