//! `Subscription` as a `futures_core::Stream` under tokio (feature `async`): the writer's
//! publish wakes the task; no thread is blocked per subscription. Compiled when the feature is
//! on, which it is in the workspace's own builds (`chronicle-testkit` turns it on).
#![cfg(feature = "async")]

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use chronicle::{ExpectedVersion, Filter, NewEvent, RecordedEvent, Store, Subscription};
use futures_core::Stream;

async fn next(sub: &mut Subscription) -> Option<chronicle::Result<RecordedEvent>> {
    poll_fn(|cx| Pin::new(&mut *sub).poll_next(cx)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_catch_up_then_live_events_to_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("order-0", ExpectedVersion::Any, [NewEvent::new("Placed", "")]).unwrap();
    // Many more subscribers than worker threads: none of them may block a worker.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut sub = store.subscribe(0, Filter::category("order")).unwrap();
        tasks.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            while positions.len() < 101 {
                positions.push(next(&mut sub).await.unwrap().unwrap().position);
            }
            positions
        }));
    }
    let writer = store.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..200u32 {
            let stream = if i % 2 == 0 { "order-1" } else { "user-1" };
            writer.append(stream, ExpectedVersion::Any, [NewEvent::new("T", i.to_le_bytes().to_vec())]).unwrap();
        }
    })
    .await
    .unwrap();
    let expected: Vec<u64> = std::iter::once(0).chain((0..200).filter(|i| i % 2 == 0).map(|i| i + 1)).collect();
    for task in tasks {
        let positions = tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap();
        assert_eq!(positions, expected);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn stop_and_close_end_a_pending_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut stopped = store.subscribe(0, Filter::all()).unwrap();
    let stop = stopped.stop_handle();
    let waiting = tokio::spawn(async move { next(&mut stopped).await.is_none() });
    tokio::time::sleep(Duration::from_millis(20)).await;
    stop.stop();
    assert!(tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap());

    let mut closed = store.subscribe(0, Filter::all()).unwrap();
    let waiting = tokio::spawn(async move { next(&mut closed).await.is_none() });
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.close().unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap());
}

#[tokio::test(flavor = "current_thread")]
async fn a_stream_on_a_read_only_store_follows_the_writer_and_ends_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(dir.path()).unwrap();
    writer.append("order-1", ExpectedVersion::Any, [NewEvent::new("Placed", vec![0])]).unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    let mut orders = reader.subscribe(0, Filter::category("order")).unwrap();
    assert_eq!(next(&mut orders).await.unwrap().unwrap().data[0], 0);
    // Pending now: the timer wakes it to refresh while another "process" commits.
    let appending = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(30));
        for i in 1..=20u8 {
            writer.append("order-2", ExpectedVersion::Any, [NewEvent::new("Placed", vec![i])]).unwrap();
            writer.append("user-1", ExpectedVersion::Any, [NewEvent::new("Seen", vec![i])]).unwrap();
        }
        writer
    });
    let mut data = Vec::new();
    while data.len() < 20 {
        let event = tokio::time::timeout(Duration::from_secs(10), next(&mut orders)).await.unwrap().unwrap().unwrap();
        assert_eq!(event.stream_id, "order-2");
        data.push(event.data[0]);
    }
    assert_eq!(data, (1..=20).collect::<Vec<u8>>());
    let _writer = appending.await.unwrap();
    // Pending again; closing the reader ends it.
    let waiting = tokio::spawn(async move { next(&mut orders).await.is_none() });
    tokio::time::sleep(Duration::from_millis(20)).await;
    reader.close().unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap());
}
