//! The shared behaviour suite of `chronicle_testkit::conformance` with every append going
//! through the async API (`append_async`, `append_multi_async`, `append_if_async`), awaited on a thread-parking
//! executor: expected versions, idempotent retries, all-or-nothing multi-stream appends and
//! hostile input must answer exactly as through the blocking calls.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::thread::Thread;

use chronicle::{
    AllIter, AppendCondition, AppendResult, Durability, EventStore, ExpectedVersion, Filter, FilteredIter, NewEvent,
    Options, Result, Snapshot, Store, StreamAppend, StreamIter,
};
use chronicle_testkit::conformance;

/// Wakes the thread that waits in [`block_on`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread, parked between polls until its waker fires:
/// a hang here is a future that was never woken.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// A `Store` whose appends are the async ones.
struct AsyncAppends(Store);

impl EventStore for AsyncAppends {
    type StreamEvents = StreamIter;
    type AllEvents = AllIter;
    type FilteredEvents = FilteredIter;

    fn append(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<AppendResult> {
        block_on(self.0.append_async(stream, expected, events))
    }

    fn append_multi(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        block_on(self.0.append_multi_async(parts))
    }

    fn append_if(&self, condition: AppendCondition, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        block_on(self.0.append_if_async(condition, parts))
    }

    fn read_all_filtered(&self, from_position: u64, filter: Filter) -> Result<FilteredIter> {
        self.0.read_all_filtered(from_position, filter)
    }

    fn read_stream(&self, stream: &str, from_version: u64) -> Result<StreamIter> {
        self.0.read_stream(stream, from_version)
    }

    fn read_stream_backward(&self, stream: &str, from_version: Option<u64>) -> Result<StreamIter> {
        self.0.read_stream_backward(stream, from_version)
    }

    fn read_all_backward(&self, from_position: Option<u64>) -> Result<AllIter> {
        self.0.read_all_backward(from_position)
    }

    fn read_all(&self, from_position: u64) -> Result<AllIter> {
        self.0.read_all(from_position)
    }

    fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        self.0.stream_version(stream)
    }

    fn save_snapshot(&self, stream: &str, version: u64, state: &[u8]) -> Result<()> {
        self.0.save_snapshot(stream, version, state)
    }

    fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>> {
        self.0.load_snapshot(stream)
    }

    fn delete_stream(&self, stream: &str, expected: ExpectedVersion) -> Result<()> {
        self.0.delete_stream(stream, expected)
    }
}

fn run(options: Options) {
    let dirs = std::sync::Mutex::new(Vec::new());
    let make = || {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_with(dir.path(), options.clone()).expect("open");
        dirs.lock().expect("dirs").push(dir);
        AsyncAppends(store)
    };
    conformance::run_shared(&make).unwrap();
}

#[test]
fn async_appends_pass_the_shared_behaviour_suite_under_sync() {
    run(Options::default());
}

#[test]
fn async_appends_pass_the_shared_behaviour_suite_under_buffered() {
    run(Options::default().durability(Durability::Buffered));
}

#[test]
fn async_appends_in_memory_pass_the_shared_behaviour_suite() {
    let make = || AsyncAppends(Store::open_in_memory().expect("open"));
    conformance::run_shared(&make).unwrap();
}
