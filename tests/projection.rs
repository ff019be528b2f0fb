//! Projections: a runner applies batches, the projection saves state + checkpoint together;
//! restart resumes after the checkpoint (no event counted twice), a version change
//! rebuilds from 0, wait_for reads your own writes, failures and close end the runner.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronicle::{Error, ExpectedVersion, Filter, NewEvent, Projection, ProjectionError, RecordedEvent, Store};

/// What a real projection would keep in its database: state and checkpoint, written together.
#[derive(Debug, Default, Clone)]
struct Saved {
    checkpoint: Option<(u32, u64)>,
    placed: u64,
    applied_positions: Vec<u64>,
}

struct Placed {
    version: u32,
    saved: Arc<Mutex<Saved>>,
    fail_at: Option<u64>,
}

impl Projection for Placed {
    fn name(&self) -> &str {
        "placed"
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn filter(&self) -> Filter {
        Filter::category("order").with_event_types(["Placed"])
    }
    fn load(&mut self) -> Result<Option<(u32, u64)>, ProjectionError> {
        Ok(self.saved.lock().unwrap().checkpoint)
    }
    fn reset(&mut self) -> Result<(), ProjectionError> {
        *self.saved.lock().unwrap() = Saved::default();
        Ok(())
    }
    fn apply(&mut self, events: &[RecordedEvent], version: u32, through: u64) -> Result<(), ProjectionError> {
        if let Some(bad) = self.fail_at
            && events.iter().any(|e| e.position == bad)
        {
            return Err(format!("cannot apply position {bad}").into());
        }
        // One "transaction": state and checkpoint change together.
        let mut saved = self.saved.lock().unwrap();
        let mut next = saved.clone();
        next.placed += events.len() as u64;
        next.applied_positions.extend(events.iter().map(|e| e.position));
        next.checkpoint = Some((version, through));
        *saved = next;
        Ok(())
    }
}

fn placed(store: &Store, n: u32) -> u64 {
    let mut last = 0;
    for i in 0..n {
        last = store
            .append(&format!("order-{}", i % 5), ExpectedVersion::Any, [NewEvent::new("Placed", "")])
            .unwrap()
            .last_position;
        store.append("user-1", ExpectedVersion::Any, [NewEvent::new("Placed", "")]).unwrap();
    }
    last
}

#[test]
fn resumes_after_its_checkpoint_and_rebuilds_on_a_version_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let saved = Arc::new(Mutex::new(Saved::default()));
    let last = placed(&store, 50);
    let runner = store.run_projection(Placed { version: 1, saved: Arc::clone(&saved), fail_at: None }).unwrap();
    assert!(runner.wait_for(last, Duration::from_secs(30)).unwrap());
    runner.stop().unwrap();
    assert_eq!(saved.lock().unwrap().placed, 50);

    // Restart with the same version: resumes after the checkpoint, counts nothing twice.
    let runner = store.run_projection(Placed { version: 1, saved: Arc::clone(&saved), fail_at: None }).unwrap();
    let last = placed(&store, 10);
    assert!(runner.wait_for(last, Duration::from_secs(30)).unwrap());
    drop(runner);
    let state = saved.lock().unwrap().clone();
    assert_eq!(state.placed, 60);
    assert!(state.applied_positions.windows(2).all(|w| w[0] < w[1]), "each event applied once, in order");

    // A new version rebuilds from position 0.
    let runner = store.run_projection(Placed { version: 2, saved: Arc::clone(&saved), fail_at: None }).unwrap();
    assert!(runner.wait_for(last, Duration::from_secs(30)).unwrap());
    runner.stop().unwrap();
    let state = saved.lock().unwrap().clone();
    assert_eq!((state.placed, state.checkpoint.map(|c| c.0)), (60, Some(2)));
}

#[test]
fn wait_for_returns_for_positions_the_filter_skips() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let saved = Arc::new(Mutex::new(Saved::default()));
    let runner = store.run_projection(Placed { version: 1, saved, fail_at: None }).unwrap();
    let other = store.append("user-9", ExpectedVersion::Any, [NewEvent::new("Registered", "")]).unwrap();
    assert!(runner.wait_for(other.last_position, Duration::from_secs(30)).unwrap());
    assert!(!runner.wait_for(other.last_position + 1, Duration::from_millis(30)).unwrap(), "not there yet");
    assert!(runner.position() > other.last_position);
}

#[test]
fn a_failing_apply_stops_the_runner_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let saved = Arc::new(Mutex::new(Saved::default()));
    let runner = store.run_projection(Placed { version: 1, saved: Arc::clone(&saved), fail_at: Some(4) }).unwrap();
    let last = placed(&store, 5);
    let err = runner.wait_for(last, Duration::from_secs(30)).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { ref message } if message.contains("cannot apply position 4")), "{err}");
    assert!(runner.stop().is_err());
    assert!(saved.lock().unwrap().checkpoint.is_none_or(|(_, p)| p < 4), "nothing past the failure is saved");
}

#[test]
fn closing_the_store_ends_the_runner() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let runner = store.run_projection(Placed { version: 1, saved: Arc::default(), fail_at: None }).unwrap();
    store.close().unwrap();
    assert!(matches!(runner.wait_for(1_000, Duration::from_secs(30)), Err(Error::Closed)));
    runner.stop().unwrap();
    Store::open(dir.path()).unwrap();
}
