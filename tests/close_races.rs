//! Every kind of call racing `close()` on another clone, and racing the drop of the last
//! clone, returns (an answer or `Error::Closed`) instead of waiting forever, and the
//! directory is free to reopen afterwards.
//!
//! Each race runs `CHRONICLE_CLOSE_RACE_ITERATIONS` times (default 250 per call kind and
//! ending, 5,000 races in all); each iteration has a 20 s limit, so a hang fails the test
//! with the call's name instead of stalling the suite.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use chronicle::{
    AppendCondition, Durability, Error, ExpectedVersion, Filter, NewEvent, Options, Retention, Store, StreamAppend,
};

/// The longest one race may take before it counts as a hang.
const RACE_TIMEOUT: Duration = Duration::from_secs(20);

fn iterations() -> usize {
    std::env::var("CHRONICLE_CLOSE_RACE_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(250)
}

/// One call on a clone; returns a short description of its outcome.
type Call = fn(&Store) -> Result<(), Error>;

fn calls() -> Vec<(&'static str, Call)> {
    vec![
        ("append", |s| s.append("s", ExpectedVersion::Any, [NewEvent::new("T", "x")]).map(drop)),
        ("append_multi", |s| {
            s.append_multi([
                StreamAppend::new("a", ExpectedVersion::Any, [NewEvent::new("T", "1")]),
                StreamAppend::new("b", ExpectedVersion::Any, [NewEvent::new("T", "2")]),
            ])
            .map(drop)
        }),
        ("sync", Store::sync),
        ("seal", Store::seal),
        ("compact", |s| s.compact().map(drop)),
        ("save_snapshot", |s| s.save_snapshot("s", 0, b"state")),
        ("delete_stream", |s| s.delete_stream("doomed", ExpectedVersion::Any)),
        ("set_stream_retention", |s| s.set_stream_retention("s", Retention::MaxCount(1))),
        ("read_all", |s| s.read_all(0)?.try_for_each(|e| e.map(drop))),
        ("read_stream", |s| s.read_stream("s", 0)?.try_for_each(|e| e.map(drop))),
        // Subscriptions: a blocked next() must end (None) when the store closes.
        ("subscribe_and_wait", |s| {
            let mut waiting = s.subscribe(1 << 40, Filter::all())?;
            waiting.next().transpose().map(drop)
        }),
        ("subscribe_durable_and_ack", |s| {
            let mut consumer = s.subscribe_durable("racer", Filter::all())?;
            match consumer.next().transpose()? {
                Some(event) => consumer.ack(event.position),
                None => Ok(()),
            }
        }),
        ("append_if", |s| {
            let condition = AppendCondition { filter: Filter::stream("never-written"), after_position: None };
            s.append_if(condition, [StreamAppend::new("c", ExpectedVersion::Any, [NewEvent::new("T", "x")])]).map(drop)
        }),
        // The async appends, awaited on this thread: the writer must complete each future.
        ("append_async", |s| block_on(s.append_async("s", ExpectedVersion::Any, [NewEvent::new("T", "x")])).map(drop)),
        ("append_multi_async", |s| {
            block_on(s.append_multi_async([
                StreamAppend::new("a", ExpectedVersion::Any, [NewEvent::new("T", "1")]),
                StreamAppend::new("b", ExpectedVersion::Any, [NewEvent::new("T", "2")]),
            ]))
            .map(drop)
        }),
        ("append_if_async", |s| {
            let condition = AppendCondition { filter: Filter::stream("never-written"), after_position: None };
            let parts = [StreamAppend::new("c", ExpectedVersion::Any, [NewEvent::new("T", "x")])];
            block_on(s.append_if_async(condition, parts)).map(drop)
        }),
    ]
}

/// Wakes the thread that waits in [`block_on`].
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` on this thread, parked until its waker fires (a future never woken hangs
/// here, and the race's time limit reports it).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// Whether `result` is an outcome a call racing close may have: done, or refused as closed.
fn acceptable(result: &Result<(), Error>) -> bool {
    matches!(result, Ok(()) | Err(Error::Closed))
}

#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Another clone calls `close()`.
    Close,
    /// The last other clone is dropped while the call runs.
    DropLast,
}

fn race(name: &str, call: Call, ending: Ending, durability: Durability, iteration: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options::default().durability(durability);
    let store = Store::open_with(dir.path(), options.clone()).expect("open");
    store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "x")]).expect("first append");
    store.append("doomed", ExpectedVersion::Any, [NewEvent::new("T", "x")]).expect("second append");
    let (done, finished) = mpsc::channel();
    let caller = {
        let store = store.clone();
        std::thread::spawn(move || {
            let result = call(&store);
            // For the drop race, this thread's clone is the last one: dropping it must not hang.
            drop(store);
            let _ = done.send(result);
        })
    };
    let closer = std::thread::spawn(move || match ending {
        Ending::Close => store.close(),
        Ending::DropLast => {
            drop(store);
            Ok(())
        }
    });
    let outcome = finished.recv_timeout(RACE_TIMEOUT);
    let Ok(result) = outcome else {
        panic!("{name} racing {ending:?} under {durability:?} hung (iteration {iteration})");
    };
    assert!(acceptable(&result), "{name} racing {ending:?}: {result:?}");
    caller.join().expect("caller thread");
    let closed = closer.join().expect("closer thread");
    assert!(closed.is_ok(), "close racing {name}: {closed:?}");
    // Nothing keeps the directory locked.
    let again = Store::open_with(dir.path(), options).expect("reopen after the race");
    assert!(again.stream_version("s").expect("stream_version").is_some());
    again.close().expect("close after reopen");
}

fn run_all(ending: Ending) {
    let calls = calls();
    let per_call = iterations();
    for (name, call) in &calls {
        // The caller's own clone keeps the store open while it waits, so with no close a
        // waiting subscription rightly waits on (tests/subscription.rs covers the drop of
        // the last clone under a blocked subscriber).
        if *name == "subscribe_and_wait" && matches!(ending, Ending::DropLast) {
            continue;
        }
        for iteration in 0..per_call {
            // Alternate modes: Sync queues every append on the writer thread, Buffered commits
            // inline when it can.
            let durability = if iteration % 2 == 0 { Durability::Sync } else { Durability::Buffered };
            race(name, *call, ending, durability, iteration);
        }
    }
}

#[test]
fn every_call_racing_close_returns() {
    run_all(Ending::Close);
}

#[test]
fn every_call_racing_the_last_drop_returns() {
    run_all(Ending::DropLast);
}

/// Many callers of every kind queued at once behind a close: each gets an answer.
#[test]
fn a_crowd_of_callers_behind_close_all_return() {
    for iteration in 0..(iterations() / 5).max(10) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "x")]).expect("append");
        let (done, finished) = mpsc::channel();
        let barrier = Arc::new(std::sync::Barrier::new(calls().len() + 1));
        for (name, call) in calls() {
            let store = store.clone();
            let done = done.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let result = call(&store);
                let _ = done.send((name, result));
            });
        }
        drop(done);
        barrier.wait();
        store.close().expect("close");
        for _ in 0..calls().len() {
            match finished.recv_timeout(RACE_TIMEOUT) {
                Ok((name, result)) => assert!(acceptable(&result), "{name}: {result:?}"),
                Err(_) => panic!("a caller hung behind close (iteration {iteration})"),
            }
        }
    }
}

/// Futures submitted by a thread that then drops its handle, racing `close()` or the drop
/// of the last other handle: every future resolves (the future does not keep the store
/// open, and pending ones are answered when the writer stops), and exactly the appends
/// answered `Ok` are in the store afterwards.
#[test]
fn pending_futures_resolve_when_the_store_closes_or_its_last_handle_drops() {
    const FUTURES: usize = 16;
    for iteration in 0..(iterations() / 5).max(10) {
        let durability = if iteration % 2 == 0 { Durability::Sync } else { Durability::Buffered };
        let ending = if iteration % 4 < 2 { Ending::Close } else { Ending::DropLast };
        let dir = tempfile::tempdir().expect("tempdir");
        let options = Options::default().durability(durability);
        let store = Store::open_with(dir.path(), options.clone()).expect("open");
        let (done, finished) = mpsc::channel();
        let submitter = store.clone();
        let caller = std::thread::spawn(move || {
            let futures: Vec<_> = (0..FUTURES)
                .map(|i| submitter.append_async("s", ExpectedVersion::Any, [NewEvent::new("T", i.to_string())]))
                .collect();
            // From here on only the futures remain: they must not need the handle.
            drop(submitter);
            let results: Vec<_> = futures.into_iter().map(block_on).collect();
            let _ = done.send(results);
        });
        let closer = std::thread::spawn(move || match ending {
            Ending::Close => store.close(),
            Ending::DropLast => {
                drop(store);
                Ok(())
            }
        });
        let Ok(results) = finished.recv_timeout(RACE_TIMEOUT) else {
            panic!("a future hung racing {ending:?} under {durability:?} (iteration {iteration})");
        };
        caller.join().expect("caller thread");
        closer.join().expect("closer thread").expect("close");
        let mut committed = 0;
        for result in &results {
            match result {
                Ok(written) => {
                    assert_eq!(written.first_version, committed, "Ok answers are the committed prefix");
                    committed += 1;
                }
                Err(Error::Closed) => {}
                Err(other) => panic!("racing {ending:?}: {other:?}"),
            }
        }
        let again = Store::open_with(dir.path(), options).expect("reopen after the race");
        let stored = again.stream_version("s").expect("stream_version").map_or(0, |v| v + 1);
        assert_eq!(stored, committed, "racing {ending:?} under {durability:?}: Closed must mean not written");
        again.close().expect("close after reopen");
    }
}
