//! The async appends (`append_async`, `append_multi_async`, `append_if_async`): the same
//! answers as the blocking calls, many appends in flight from few threads, every path
//! completing the future (commit, error, failed fsync, closing), and a dropped future's
//! append committing anyway.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use chronicle::{AppendCondition, Durability, Error, ExpectedVersion, Filter, NewEvent, Options, Store, StreamAppend};
use chronicle_testkit::{InjectedError, SimStorage};

mod common;

/// Polls `future` on this thread with a waker that does nothing, yielding between polls:
/// no runtime, as a plain-threads caller (or a deterministic harness) would.
fn poll_to_end<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::yield_now();
    }
}

fn event(data: &str) -> NewEvent {
    NewEvent::new("T", data.to_owned())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

#[test]
fn many_tasks_on_two_threads_append_in_order_under_every_durability() {
    for durability in [Durability::Sync, Durability::Buffered, Durability::Periodic(Duration::from_millis(5))] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_with(dir.path(), Options::default().durability(durability)).expect("open");
        const TASKS: usize = 64;
        const APPENDS: u64 = 20;
        runtime().block_on(async {
            let tasks: Vec<_> = (0..TASKS)
                .map(|task| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let stream = format!("task-{task}");
                        for version in 0..APPENDS {
                            let expected =
                                version.checked_sub(1).map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                            let written = store
                                .append_async(&stream, expected, [event(&format!("{task}/{version}"))])
                                .await
                                .expect("append_async");
                            assert_eq!((written.first_version, written.last_version), (version, version));
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("task");
            }
        });
        let all = common::read_all(&store);
        assert_eq!(all.len(), TASKS * APPENDS as usize, "{durability:?}");
        for (position, recorded) in all.iter().enumerate() {
            assert_eq!(recorded.position, position as u64, "positions are gap-free");
        }
        for task in 0..TASKS {
            let events = common::read_stream(&store, &format!("task-{task}"));
            let data: Vec<_> = events.iter().map(|e| String::from_utf8_lossy(&e.data).into_owned()).collect();
            let want: Vec<_> = (0..APPENDS).map(|v| format!("{task}/{v}")).collect();
            assert_eq!(data, want, "{durability:?}: task {task} in its own order");
        }
        store.close().expect("close");
    }
}

#[test]
fn several_appends_in_flight_from_one_thread_commit_in_submission_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let futures: Vec<_> =
        (0..100).map(|i| store.append_async("s", ExpectedVersion::Any, [event(&i.to_string())])).collect();
    let results: Vec<_> = futures.into_iter().map(|f| poll_to_end(f).expect("append")).collect();
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.first_version, i as u64, "the writer takes them in the order submitted");
    }
    assert_eq!(store.stream_version("s").expect("version"), Some(99));
}

#[test]
fn expected_versions_conditions_and_retries_answer_as_the_blocking_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let first =
        poll_to_end(store.append_async("s", ExpectedVersion::NoStream, [event("a").with_id(7)])).expect("first");
    // A retry with the same id returns the original result and writes nothing.
    let retry =
        poll_to_end(store.append_async("s", ExpectedVersion::NoStream, [event("a").with_id(7)])).expect("retry");
    assert_eq!(retry, first);
    assert_eq!(store.stream_version("s").expect("version"), Some(0));
    // A wrong expected version.
    let wrong = poll_to_end(store.append_async("s", ExpectedVersion::NoStream, [event("b")]));
    assert!(matches!(wrong, Err(Error::WrongExpectedVersion { actual: Some(0), .. })), "{wrong:?}");
    let wrong_multi = poll_to_end(store.append_multi_async([
        StreamAppend::new("t", ExpectedVersion::NoStream, [event("c")]),
        StreamAppend::new("s", ExpectedVersion::Exact(5), [event("d")]),
    ]));
    assert!(matches!(wrong_multi, Err(Error::WrongExpectedVersion { .. })), "{wrong_multi:?}");
    assert_eq!(store.stream_version("t").expect("version"), None, "all or nothing");
    // A failed condition.
    let condition = AppendCondition::new(Filter::stream("s"), None);
    let failed =
        poll_to_end(store.append_if_async(condition, [StreamAppend::new("u", ExpectedVersion::Any, [event("e")])]));
    assert!(matches!(failed, Err(Error::ConditionFailed { position: 0, .. })), "{failed:?}");
    let condition = AppendCondition::new(Filter::stream("s"), Some(0));
    let passed =
        poll_to_end(store.append_if_async(condition, [StreamAppend::new("u", ExpectedVersion::Any, [event("e")])]))
            .expect("condition holds");
    assert_eq!(passed[0].first_position, 1);
    // Input errors resolve at once, before anything is queued.
    let empty = poll_to_end(store.append_async("", ExpectedVersion::Any, [event("x")]));
    assert!(matches!(empty, Err(Error::InvalidInput { .. })), "{empty:?}");
    let none = poll_to_end(store.append_multi_async(Vec::<StreamAppend>::new()));
    assert!(matches!(none, Err(Error::InvalidInput { .. })), "{none:?}");
}

#[test]
fn a_dropped_future_commits_its_append_anyway_once() {
    for durability in [Durability::Sync, Durability::Buffered] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_with(dir.path(), Options::default().durability(durability)).expect("open");
        for i in 0..50 {
            drop(store.append_async("s", ExpectedVersion::Any, [event(&i.to_string())]));
        }
        // Queued before this blocking append, so committed before it answers.
        store.append("s", ExpectedVersion::Any, [event("last")]).expect("append");
        let data: Vec<_> =
            common::read_stream(&store, "s").iter().map(|e| String::from_utf8_lossy(&e.data).into_owned()).collect();
        let mut want: Vec<_> = (0..50).map(|i| i.to_string()).collect();
        want.push("last".to_owned());
        assert_eq!(data, want, "{durability:?}: each dropped append once, in order");
    }
}

#[test]
fn a_finished_future_polled_again_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut future = store.append_async("s", ExpectedVersion::Any, [event("x")]);
    let mut cx = Context::from_waker(Waker::noop());
    let first = loop {
        if let Poll::Ready(answer) = std::pin::Pin::new(&mut future).poll(&mut cx) {
            break answer;
        }
        std::thread::yield_now();
    };
    assert!(first.is_ok());
    let again = std::pin::Pin::new(&mut future).poll(&mut cx);
    assert!(matches!(again, Poll::Ready(Err(Error::Internal { .. }))), "{again:?}");
}

#[test]
fn a_failed_fsync_completes_the_future_and_poisons_the_store() {
    let sim = SimStorage::new();
    let store = Store::open_with_storage("/db", Options::default(), Arc::new(sim.clone())).expect("open");
    poll_to_end(store.append_async("s", ExpectedVersion::Any, [event("ok")])).expect("append before the fault");
    sim.fail_from(sim.calls() + 1, InjectedError::Io);
    let failed = poll_to_end(store.append_async("s", ExpectedVersion::Any, [event("lost")]));
    assert!(matches!(failed, Err(Error::Io { .. } | Error::Poisoned { .. })), "{failed:?}");
    sim.clear_faults();
    // Refused from now on, by both APIs, though the storage works again.
    let later = poll_to_end(store.append_async("s", ExpectedVersion::Any, [event("refused")]));
    assert!(matches!(later, Err(Error::Poisoned { .. })), "{later:?}");
    assert!(matches!(store.append("s", ExpectedVersion::Any, [event("refused")]), Err(Error::Poisoned { .. })));
}

#[test]
fn futures_of_a_closed_store_resolve_closed_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let clone = store.clone();
    store.close().expect("close");
    for result in [
        poll_to_end(clone.append_async("s", ExpectedVersion::Any, [event("x")])).map(drop),
        poll_to_end(clone.append_multi_async([StreamAppend::new("s", ExpectedVersion::Any, [event("x")])])).map(drop),
        poll_to_end(clone.append_if_async(
            AppendCondition::new(Filter::all(), None),
            [StreamAppend::new("s", ExpectedVersion::Any, [event("x")])],
        ))
        .map(drop),
    ] {
        assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    }
    drop(clone);
    let reopened = Store::open(dir.path()).expect("reopen");
    assert_eq!(reopened.stream_version("s").expect("version"), None);
}

#[test]
fn a_read_only_store_refuses_async_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = Store::open(dir.path()).expect("open");
    let reader = Store::open_read_only(dir.path()).expect("open read-only");
    let refused = poll_to_end(reader.append_async("s", ExpectedVersion::Any, [event("x")]));
    assert!(matches!(refused, Err(Error::ReadOnly { .. })), "{refused:?}");
    drop(writer);
}
