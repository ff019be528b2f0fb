//! Proves that a snapshot file that cannot be read (EIO) is reported as `Error::Io` by
//! `load_snapshot`, not skipped as if it were damaged (which would hand back an older
//! snapshot, or none, as if it were the newest).

use std::sync::Arc;

use chronicle::{Error, ExpectedVersion, NewEvent, Options, Store};
use chronicle_testkit::{InjectedError, SimStorage};

#[test]
fn unreadable_snapshot_is_an_io_error_not_a_fallback() {
    let sim = SimStorage::new();
    let store = Store::open_with_storage("/db", Options::default(), Arc::new(sim.clone())).unwrap();
    store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "a"), NewEvent::new("T", "b")]).unwrap();
    store.save_snapshot("s", 0, b"older").unwrap();
    store.save_snapshot("s", 1, b"newer").unwrap();
    sim.fail_from(sim.calls() + 1, InjectedError::Io);
    let loaded = store.load_snapshot("s");
    assert!(matches!(loaded, Err(Error::Io { .. })), "load_snapshot under EIO: {loaded:?}");
    sim.clear_faults();
    assert_eq!(&store.load_snapshot("s").unwrap().unwrap().data[..], b"newer");
}
