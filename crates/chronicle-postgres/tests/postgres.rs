//! PostgreSQL-only behaviour: gap-free positions under concurrent writers, live
//! subscriptions across dropped connections, faults mid-append, migrations, durable
//! consumer names across store handles and their connections, SQL filters, the async
//! API, the typed layer. Subscriptions and durable consumers as every backend must follow
//! the log are `chronicle_testkit::conformance::run_follow` (`tests/conformance.rs`).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use chronicle::{AppendCondition, Error, ExpectedVersion, NewEvent, RecordedEvent, StreamAppend};
use chronicle_postgres::{Filter, PostgresStore};

const WAIT_MAX: Duration = Duration::from_secs(120);

/// Reads `store` from `from` by polling `read_all`, until `count` events arrived or the
/// deadline passed.
fn poll_all(store: &PostgresStore, count: usize, stop: &AtomicBool) -> Vec<RecordedEvent> {
    let deadline = Instant::now() + WAIT_MAX;
    let mut seen: Vec<RecordedEvent> = Vec::new();
    while seen.len() < count && Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        let from = seen.last().map_or(0, |e| e.position + 1);
        match store.read_all(from) {
            Ok(events) => {
                for event in events {
                    match event {
                        Ok(event) => seen.push(event),
                        Err(_) => break,
                    }
                }
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    seen
}

fn assert_dense(events: &[RecordedEvent], total: u64, who: &str) {
    let positions: Vec<u64> = events.iter().map(|e| e.position).collect();
    let expected: Vec<u64> = (0..total).collect();
    assert!(positions == expected, "{who} saw {} events, not positions 0..{total} once each in order", positions.len());
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn sixteen_concurrent_writers_leave_no_gap_a_live_reader_or_subscriber_can_skip() {
    let schema = common::fresh_schema("gaps");
    let store = PostgresStore::connect_with(&common::url(), common::options(&schema).pool_size(20)).expect("connect");
    const WRITERS: usize = 16;
    const APPENDS: usize = 40;
    // Writer w appends batches of 1 + (i % 3) events; some appends go to two streams.
    let per_writer: usize = (0..APPENDS).map(|i| 1 + i % 3 + usize::from(i % 5 == 0)).sum();
    let total = (WRITERS * per_writer) as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let mut subscription = store.subscribe(0, Filter::all()).expect("subscribe");
    let subscriber = thread::spawn(move || {
        let deadline = Instant::now() + WAIT_MAX;
        let mut seen = Vec::new();
        while (seen.len() as u64) < total && Instant::now() < deadline {
            if let Some(event) = subscription.recv_timeout(Duration::from_millis(500)).expect("recv") {
                seen.push(event);
            }
        }
        seen
    });
    let reader = {
        let store = store.clone();
        let stop = Arc::clone(&stop);
        thread::spawn(move || poll_all(&store, total as usize, &stop))
    };
    let barrier = Arc::new(Barrier::new(WRITERS));
    // One store per writer: 16 committers, 16 connections committing concurrently (as 16
    // processes would); within one store concurrent appends share group commits instead.
    let writer_stores: Vec<PostgresStore> = (0..WRITERS)
        .map(|_| PostgresStore::connect_with(&common::url(), common::options(&schema).pool_size(2)).expect("connect"))
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = writer_stores[w].clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let mut results = Vec::new();
                for i in 0..APPENDS {
                    let events: Vec<NewEvent> =
                        (0..1 + i % 3).map(|k| NewEvent::new("T", format!("{w}:{i}:{k}"))).collect();
                    if i % 5 == 0 {
                        let parts = vec![
                            StreamAppend::new(format!("w{w}"), ExpectedVersion::Any, events),
                            StreamAppend::new(
                                format!("shared-{}", i % 4),
                                ExpectedVersion::Any,
                                [NewEvent::new("U", "")],
                            ),
                        ];
                        results.extend(store.append_multi(parts).expect("append_multi"));
                    } else {
                        results.push(store.append(&format!("w{w}"), ExpectedVersion::Any, events).expect("append"));
                    }
                }
                results
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for writer in writers {
        for result in writer.join().expect("writer") {
            claimed.extend(result.first_position..=result.last_position);
        }
    }
    claimed.sort_unstable();
    assert_eq!(claimed, (0..total).collect::<Vec<_>>(), "append results claim every position exactly once");
    let subscribed = subscriber.join().expect("subscriber");
    assert_dense(&subscribed, total, "the live subscriber");
    let polled = reader.join().expect("reader");
    stop.store(true, Ordering::SeqCst);
    assert_dense(&polled, total, "the polling reader");
    assert_eq!(subscribed, polled);
    // Versions per stream are dense too.
    let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for event in &polled {
        versions.entry(&event.stream_id).or_default().push(event.version);
    }
    for (stream, v) in versions {
        assert_eq!(v, (0..v.len() as u64).collect::<Vec<_>>(), "versions of {stream}");
    }
    assert_eq!(store.head_position().expect("head"), total);
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn a_subscriber_resumes_without_gap_or_duplicate_after_its_connections_are_terminated() {
    let schema = common::fresh_schema("reconnect");
    let url = format!("{}?application_name=victim_{schema}", common::url());
    let store = PostgresStore::connect_with(&url, common::options(&schema)).expect("connect");
    let writer = PostgresStore::connect_with(&common::url(), common::options(&schema)).expect("connect writer");
    let mut subscription = store.subscribe(0, Filter::category("order")).expect("subscribe");
    let mut expected = Vec::new();
    let mut received = Vec::new();
    for round in 0..4u32 {
        for i in 0..25u32 {
            // Interleave non-matching events: the subscriber's position passes them.
            writer.append(&format!("user-{i}"), ExpectedVersion::Any, [NewEvent::new("Seen", "")]).expect("append");
            let result = writer
                .append(&format!("order-{i}"), ExpectedVersion::Any, [NewEvent::new("Placed", format!("{round}:{i}"))])
                .expect("append");
            expected.push(result.first_position);
        }
        let deadline = Instant::now() + WAIT_MAX;
        while received.len() < expected.len() && Instant::now() < deadline {
            match subscription.recv_timeout(Duration::from_millis(500)) {
                Ok(Some(event)) => received.push(event.position),
                Ok(None) => {}
                Err(error) => panic!("subscription failed: {error}"),
            }
        }
        // Kill every connection of the subscriber's store: its LISTEN connection and its
        // pooled ones.
        let killed = common::sql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'victim_{schema}'"
        ));
        assert!(killed.first().and_then(|v| v.as_deref()).is_some_and(|n| n != "0"), "round {round}: nothing killed");
    }
    // After the last kill: live events still arrive, woken by the re-established LISTEN
    // or the poll.
    let late = writer.append("order-late", ExpectedVersion::Any, [NewEvent::new("Placed", "late")]).expect("append");
    expected.push(late.first_position);
    let deadline = Instant::now() + WAIT_MAX;
    while received.len() < expected.len() && Instant::now() < deadline {
        if let Ok(Some(event)) = subscription.recv_timeout(Duration::from_millis(500)) {
            received.push(event.position);
        }
    }
    assert_eq!(received, expected, "every matching event exactly once, in position order");
    assert!(subscription.recv_timeout(Duration::from_millis(300)).expect("recv").is_none());
    assert_eq!(subscription.position(), late.last_position + 1);
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn a_backend_terminated_mid_append_leaves_the_batch_whole_or_absent() {
    let schema = common::fresh_schema("kill");
    let url = format!("{}?application_name=killme_{schema}", common::url());
    let store = PostgresStore::connect_with(&url, common::options(&schema)).expect("connect");
    let observer = PostgresStore::connect_with(&common::url(), common::options(&schema)).expect("observer");
    // An append whose connection is terminated before COMMIT was sent is retried by the
    // store on another connection (nothing was written); one terminated during COMMIT
    // returns Error::Backend saying the outcome is unknown. Either way: whole or absent.
    let mut failed = 0;
    let mut committed = 0;
    let mut terminated = 0u32;
    // At least 12 rounds; more (up to 48) until a termination landed mid-append, since when
    // the kill lands depends on the machine's speed.
    for round in 0..48u64 {
        if round >= 12 && terminated > 0 {
            break;
        }
        let stream = format!("batch-{round}");
        let events: Vec<NewEvent> = (0..2000u64)
            .map(|i| NewEvent::new("Big", vec![7u8; 512]).with_id(u128::from(round << 32 | i) + 1))
            .collect();
        let appender = {
            let store = store.clone();
            let stream = stream.clone();
            let events = events.clone();
            thread::spawn(move || store.append(&stream, ExpectedVersion::NoStream, events))
        };
        // Terminate the appending backend at a different moment each round.
        thread::sleep(Duration::from_millis((round % 12) * 7));
        let killed = common::sql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'killme_{schema}' AND state <> 'idle'"
        ));
        terminated += killed.first().and_then(|n| n.as_deref()).and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
        let outcome = appender.join().expect("appender");
        let stored: Vec<RecordedEvent> =
            observer.read_stream(&stream, 0).expect("read").collect::<Result<_, _>>().expect("items");
        assert!(stored.is_empty() || stored.len() == 2000, "round {round}: {} of 2000 events readable", stored.len());
        match outcome {
            Ok(result) => {
                committed += 1;
                assert_eq!(stored.len(), 2000);
                assert_eq!((result.first_version, result.last_version), (0, 1999));
            }
            Err(Error::Backend { message, .. }) => {
                failed += 1;
                // Whatever happened, a retry with the same ids settles it: the original
                // result if it committed, a fresh append otherwise.
                let retry = store.append(&stream, ExpectedVersion::NoStream, events).expect("retry");
                assert_eq!((retry.first_version, retry.last_version), (0, 1999), "{message}");
                if !stored.is_empty() {
                    assert_eq!(
                        retry.first_position, stored[0].position,
                        "retry of a committed append: original result"
                    );
                }
            }
            Err(other) => panic!("round {round}: unexpected error {other}"),
        }
    }
    assert!(terminated > 0, "no backend was terminated mid-append ({committed} committed, {failed} failed)");
    println!("{terminated} backends terminated mid-append; {committed} appends returned Ok, {failed} an error");
    // The log stays dense: every batch whole, positions 0.. without holes.
    let all: Vec<RecordedEvent> = observer.read_all(0).expect("read_all").collect::<Result<_, _>>().expect("items");
    assert_eq!(all.len(), 12 * 2000);
    assert!(all.iter().enumerate().all(|(i, e)| e.position == i as u64), "positions have a hole");
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn migrations_are_idempotent_concurrent_and_refuse_a_newer_schema() {
    let schema = common::fresh_schema("migrate");
    let stores: Vec<_> = (0..4)
        .map(|_| {
            let schema = schema.clone();
            thread::spawn(move || PostgresStore::connect_with(&common::url(), common::options(&schema)))
        })
        .collect();
    let stores: Vec<PostgresStore> = stores.into_iter().map(|s| s.join().expect("thread").expect("connect")).collect();
    stores[0].append("s", ExpectedVersion::NoStream, [NewEvent::new("T", "")]).expect("append");
    drop(stores);
    let again = PostgresStore::connect_with(&common::url(), common::options(&schema)).expect("reconnect");
    assert_eq!(again.stream_version("s").expect("version"), Some(0), "reconnect keeps the data");
    let version = common::sql(&format!("SELECT version FROM \"{schema}\".schema_version"));
    assert_eq!(version, [Some(chronicle_postgres::SCHEMA_VERSION.to_string())]);
    common::sql(&format!("UPDATE \"{schema}\".schema_version SET version = version + 1"));
    let newer = PostgresStore::connect_with(&common::url(), common::options(&schema));
    match newer {
        Err(Error::Backend { message, .. }) => assert!(message.contains("newer"), "{message}"),
        other => panic!("a schema newer than the code: {other:?}"),
    }
    let bad = PostgresStore::connect_with(&common::url(), common::options("Robert'); DROP TABLE x;--"));
    assert!(matches!(bad, Err(Error::InvalidInput { .. })), "{bad:?}");
    let bad_url = PostgresStore::connect("not a url at all ===");
    assert!(bad_url.is_err());
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn an_unreachable_server_is_an_error_not_a_hang() {
    let started = Instant::now();
    let options = common::options("unreachable").connect_timeout(Duration::from_secs(2));
    // Port 1 on loopback: nothing listens there.
    let result = PostgresStore::connect_with("postgres://nobody@127.0.0.1:1/none", options);
    assert!(matches!(result, Err(Error::Backend { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn filtered_reads_match_the_embedded_filter() {
    let store = common::fresh_store("filter");
    for (stream, kind) in [
        ("order-1", "OrderPlaced"),
        ("order-1", "OrderPaid"),
        ("orders-2", "OrderPlaced"),
        ("order", "OrderPlaced"),
        ("user-1", "OrderPlaced"),
        ("order-42", "OrderShipped"),
    ] {
        store.append(stream, ExpectedVersion::Any, [NewEvent::new(kind, "")]).expect("append");
    }
    let positions = |filter: Filter| -> Vec<u64> {
        store.read_all_filtered(0, filter).expect("read").map(|e| e.expect("item").position).collect()
    };
    assert_eq!(positions(Filter::category("order")), [0, 1, 3, 5]);
    assert_eq!(positions(Filter::category("order").with_event_types(["OrderPlaced"])), [0, 3]);
    assert_eq!(positions(Filter::stream_prefix("order-4")), [5]);
    assert_eq!(positions(Filter::stream("order-1")), [0, 1]);
    assert_eq!(positions(Filter::event_types(["OrderPlaced", "OrderShipped"])), [0, 2, 3, 4, 5]);
    assert_eq!(positions(Filter::all()), [0, 1, 2, 3, 4, 5]);
    assert_eq!(positions(Filter::stream_prefix("%")), Vec::<u64>::new(), "LIKE wildcards are plain bytes");
    assert!(matches!(store.read_all_filtered(0, Filter::category("")), Err(Error::InvalidInput { .. })));
    assert!(matches!(
        store.read_all_filtered(0, Filter::event_types(Vec::<String>::new())),
        Err(Error::InvalidInput { .. })
    ));
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn streams_lists_live_streams_and_pages_cover_large_streams() {
    let store = common::fresh_store("pages");
    // More than one page of events, and events large enough to cut pages by bytes.
    let count = chronicle_postgres::PAGE_EVENTS_MAX * 2 + 7;
    for chunk in 0..3 {
        let events = (0..count / 3 + 1).map(|i| NewEvent::new("T", format!("{chunk}:{i}")));
        store.append("long", ExpectedVersion::Any, events).expect("append");
    }
    let big = vec![1u8; 3 << 20];
    store.append("big", ExpectedVersion::Any, (0..4).map(|_| NewEvent::new("B", big.clone()))).expect("big append");
    let long: Vec<RecordedEvent> =
        store.read_stream("long", 0).expect("read").collect::<Result<_, _>>().expect("items");
    assert_eq!(long.len(), 3 * (count / 3 + 1));
    assert!(long.iter().enumerate().all(|(i, e)| e.version == i as u64));
    let backward: Vec<u64> =
        store.read_stream_backward("long", None).expect("read").map(|e| e.expect("item").version).collect();
    assert_eq!(backward, (0..long.len() as u64).rev().collect::<Vec<_>>());
    let bigs: Vec<RecordedEvent> = store.read_stream("big", 0).expect("read").collect::<Result<_, _>>().expect("items");
    assert!(bigs.len() == 4 && bigs.iter().all(|e| e.data.len() == 3 << 20));
    let all_backward: Vec<u64> =
        store.read_all_backward(None).expect("read").map(|e| e.expect("item").position).collect();
    assert_eq!(all_backward.len(), long.len() + 4);
    assert!(all_backward.windows(2).all(|w| w[0] == w[1] + 1));
    store.append("gone", ExpectedVersion::Any, [NewEvent::new("T", "")]).expect("append");
    store.delete_stream("gone", ExpectedVersion::Exact(0)).expect("delete");
    assert_eq!(store.streams().expect("streams"), ["big", "long"]);
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn racing_exact_appends_let_exactly_one_win() {
    let schema = common::fresh_schema("race");
    let store = PostgresStore::connect_with(&common::url(), common::options(&schema)).expect("connect");
    let other = PostgresStore::connect_with(&common::url(), common::options(&schema)).expect("connect");
    store.append("s", ExpectedVersion::NoStream, [NewEvent::new("T", "")]).expect("seed");
    for round in 0..10u64 {
        let barrier = Arc::new(Barrier::new(8));
        let racers: Vec<_> = (0..8)
            .map(|r| {
                // Half through another store: racing committers, not only one group queue.
                let store = if r % 2 == 0 { store.clone() } else { other.clone() };
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    store.append("s", ExpectedVersion::Exact(round), [NewEvent::new("T", format!("{r}"))])
                })
            })
            .collect();
        let outcomes: Vec<_> = racers.into_iter().map(|r| r.join().expect("racer")).collect();
        let wins = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {outcomes:?}");
        assert!(outcomes.iter().all(|o| o.is_ok() || matches!(o, Err(Error::WrongExpectedVersion { .. }))));
    }
    assert_eq!(store.stream_version("s").expect("version"), Some(10));
    // Retries racing their original write once: all return the same result.
    let batch = || vec![NewEvent::new("R", "").with_id(42), NewEvent::new("R", "").with_id(43)];
    let barrier = Arc::new(Barrier::new(6));
    let retries: Vec<_> = (0..6)
        .map(|r| {
            let store = if r % 2 == 0 { store.clone() } else { other.clone() };
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                store.append("r", ExpectedVersion::NoStream, batch())
            })
        })
        .collect();
    let results: HashSet<_> = retries.into_iter().map(|r| r.join().expect("retry").expect("append")).collect();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(store.stream_version("r").expect("version"), Some(1));
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn the_async_api_and_the_blocking_api_work_inside_a_tokio_runtime() {
    let store = common::fresh_store("async");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let written =
            store.append_async("a", ExpectedVersion::NoStream, vec![NewEvent::new("T", "x")]).await.expect("append");
        assert_eq!(written.first_position, 0);
        let events = store.read_stream_async("a", 0, 10).await.expect("read");
        assert_eq!(events.len(), 1);
        assert_eq!(store.read_all_async(0, 10).await.expect("read all").len(), 1);
        // The blocking API inside a runtime: no panic (it waits on a channel, not block_on).
        assert_eq!(store.stream_version("a").expect("version"), Some(0));
        // Dropping the last handle inside a runtime does not panic either.
        let other = common::fresh_store("async_drop");
        other.append("b", ExpectedVersion::Any, [NewEvent::new("T", "")]).expect("append");
        drop(other);
    });
}

mod typed {
    use chronicle::typed::{Aggregate, Event, Repository};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum AccountEvent {
        Deposited { cents: u64 },
        Withdrawn { cents: u64 },
    }

    impl Event for AccountEvent {
        const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Deposited", 1), ("Withdrawn", 1)];
        fn event_type(&self) -> &'static str {
            match self {
                Self::Deposited { .. } => "Deposited",
                Self::Withdrawn { .. } => "Withdrawn",
            }
        }
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Account {
        balance: u64,
    }

    #[derive(Clone)]
    enum Command {
        Deposit(u64),
        Withdraw(u64),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("insufficient funds")]
    struct Insufficient;

    impl Aggregate for Account {
        type Event = AccountEvent;
        type Command = Command;
        type Error = Insufficient;
        const AGGREGATE_TYPE: &'static str = "account";
        fn apply(&mut self, event: &AccountEvent) {
            match event {
                AccountEvent::Deposited { cents } => self.balance += cents,
                AccountEvent::Withdrawn { cents } => self.balance -= cents,
            }
        }
        fn handle(&self, command: Command) -> Result<Vec<AccountEvent>, Insufficient> {
            match command {
                Command::Deposit(cents) => Ok(vec![AccountEvent::Deposited { cents }]),
                Command::Withdraw(cents) if cents <= self.balance => Ok(vec![AccountEvent::Withdrawn { cents }]),
                Command::Withdraw(_) => Err(Insufficient),
            }
        }
    }

    #[test]
    #[cfg_attr(
        not(pg_tests),
        ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)"
    )]
    fn the_typed_repository_runs_on_postgres_unchanged() {
        let store = super::common::fresh_store("typed");
        let accounts = Repository::<Account, _>::new(store.clone())
            .snapshot_policy(chronicle::typed::SnapshotPolicy::EveryEvents(3));
        for _ in 0..5 {
            accounts.execute("7", Command::Deposit(100)).expect("deposit");
        }
        assert!(accounts.execute("7", Command::Withdraw(900)).is_err());
        accounts.execute("7", Command::Withdraw(200)).expect("withdraw");
        let loaded = accounts.load("7").expect("load");
        assert_eq!(loaded.state.balance, 300);
        assert!(
            store
                .load_snapshot(&Repository::<Account, chronicle_postgres::PostgresStore>::stream_id("7"))
                .expect("snapshot")
                .is_some()
        );
        // Concurrent executes on one aggregate: conflicts are retried, none is lost.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let accounts = Repository::<Account, _>::new(store.clone()).retries_max(100);
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        accounts.execute("8", Command::Deposit(1)).expect("deposit");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        assert_eq!(accounts.load("8").expect("load").state.balance, 20);
    }
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn group_commits_answer_each_append_on_its_own() {
    // 32 threads on one store: their appends share group commits. Refused appends (wrong
    // expected version), retries (same ids) and appends to one shared stream are mixed in;
    // each is answered as if alone, and the log stays dense.
    let store = common::fresh_store("group");
    const THREADS: usize = 32;
    const ROUNDS: u64 = 30;
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let stream = format!("g-{t}");
                let (mut written, mut refused) = (0u64, 0u64);
                for round in 0..ROUNDS {
                    let id = (u128::from(t as u64) << 64) | (u128::from(round) + 1);
                    let event = NewEvent::new("T", format!("{t}:{round}")).with_id(id);
                    let expected =
                        if round == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(round - 1) };
                    let first = store.append(&stream, expected, [event.clone()]).expect("append");
                    written += 1;
                    // The same append again: a retry, the same result.
                    assert_eq!(store.append(&stream, expected, [event]).expect("retry"), first);
                    // A stale expected version: refused, nothing written.
                    let stale = store.append(&stream, ExpectedVersion::NoStream, [NewEvent::new("X", "")]);
                    if round > 0 {
                        assert!(matches!(stale, Err(Error::WrongExpectedVersion { .. })), "{stale:?}");
                        refused += 1;
                    }
                    if round % 10 == 0 {
                        store.append("shared", ExpectedVersion::Any, [NewEvent::new("S", "")]).expect("shared");
                        written += 1;
                    }
                }
                (written, refused)
            })
        })
        .collect();
    let mut written = 0;
    for thread in threads {
        written += thread.join().expect("thread").0;
    }
    let all: Vec<RecordedEvent> = store.read_all(0).expect("read").collect::<Result<_, _>>().expect("items");
    assert_eq!(all.len() as u64, written);
    assert!(all.iter().enumerate().all(|(i, e)| e.position == i as u64), "positions are dense");
    assert!(all.iter().all(|e| e.event_type != "X"), "a refused append was written");
    for t in 0..THREADS {
        assert_eq!(store.stream_version(&format!("g-{t}")).expect("version"), Some(ROUNDS - 1));
    }
}

/// `append_if` racing across four store handles (four committers, four connections, as
/// four processes would): each round exactly one booking wins, whatever the interleaving
/// of their transactions.
#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn racing_conditional_appends_on_four_stores_let_exactly_one_win() {
    let schema = common::fresh_schema("dcb");
    let stores: Vec<PostgresStore> = (0..4)
        .map(|_| PostgresStore::connect_with(&common::url(), common::options(&schema)).expect("connect"))
        .collect();
    for round in 0..20u64 {
        let seat = format!("seat-{round}");
        let barrier = Arc::new(Barrier::new(8));
        let racers: Vec<_> = (0..8)
            .map(|r| {
                let store = stores[r % stores.len()].clone();
                let (seat, barrier) = (seat.clone(), Arc::clone(&barrier));
                thread::spawn(move || {
                    // Each racer books a stream of its own: only the condition can stop it.
                    let condition = AppendCondition::new(Filter::stream_prefix(format!("{seat}-")), None);
                    let booking = [StreamAppend::new(
                        format!("{seat}-{r}"),
                        ExpectedVersion::NoStream,
                        [NewEvent::new("Booked", vec![r as u8])],
                    )];
                    barrier.wait();
                    store.append_if(condition, booking)
                })
            })
            .collect();
        let outcomes: Vec<_> = racers.into_iter().map(|r| r.join().expect("racer")).collect();
        let wins = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {outcomes:?}");
        assert!(
            outcomes.iter().all(|o| o.is_ok() || matches!(o, Err(Error::ConditionFailed { .. }))),
            "round {round}: {outcomes:?}"
        );
        let stored = stores[0].read_all_filtered(0, Filter::stream_prefix(format!("{seat}-"))).expect("read").count();
        assert_eq!(stored, 1, "round {round}");
    }
}

/// A commit lost in flight: the backend is terminated while it executes COMMIT (each
/// COMMIT of the store is slowed by `commit_delay`, so the terminator finds it; with
/// `commit_siblings=0`, since by default the delay only applies while five other
/// transactions are active, which made the test catch no COMMIT in some runs). The
/// append returns Ok or an error saying the outcome is unknown; an observer polling
/// meanwhile never sees part of the batch; a retry with the same ids settles it (the
/// original result if the commit had happened).
#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn a_commit_lost_in_flight_is_all_or_nothing_and_a_retry_settles_it() {
    const EVENTS: u64 = 300;
    const ROUNDS: u64 = 4;
    let schema = common::fresh_schema("commit");
    let app = format!("commitkill_{schema}");
    let url = format!(
        "{}?application_name={app}&options=-c%20commit_delay%3D50000%20-c%20commit_siblings%3D0",
        common::url()
    );
    let store = PostgresStore::connect_with(&url, common::options(&schema)).expect("connect");
    let observer = PostgresStore::connect_with(&common::url(), common::options(&schema)).expect("observer");
    // A server-side terminator: waits (up to 5 s) for the store's connection to be in
    // COMMIT, then terminates it; returns how many it terminated.
    common::sql(&format!(
        "CREATE FUNCTION \"{schema}\".kill_in_commit(app text) RETURNS integer LANGUAGE plpgsql AS $fn$
         DECLARE n integer := 0;
         BEGIN
             FOR i IN 1 .. 5000 LOOP
                 PERFORM pg_stat_clear_snapshot();
                 SELECT count(pg_terminate_backend(pid)) INTO n FROM pg_stat_activity
                     WHERE application_name = app AND state = 'active' AND query = 'COMMIT';
                 EXIT WHEN n > 0;
                 PERFORM pg_sleep(0.001);
             END LOOP;
             RETURN n;
         END $fn$"
    ));
    let (mut killed, mut lost, mut errors) = (0u32, 0u32, 0u32);
    for round in 0..ROUNDS {
        let stream = format!("batch-{round}");
        let events: Vec<NewEvent> = (0..EVENTS)
            .map(|i| NewEvent::new("Big", vec![round as u8; 256]).with_id(u128::from(round << 32 | i) + 1))
            .collect();
        let terminator = {
            let (schema, app) = (schema.clone(), app.clone());
            thread::spawn(move || common::sql(&format!("SELECT \"{schema}\".kill_in_commit('{app}')")))
        };
        let watching = Arc::new(AtomicBool::new(true));
        let watcher = {
            let (observer, stream, watching) = (observer.clone(), stream.clone(), Arc::clone(&watching));
            thread::spawn(move || {
                let mut seen = HashSet::new();
                while watching.load(Ordering::SeqCst) {
                    let n = observer.read_stream(&stream, 0).expect("read").count() as u64;
                    seen.insert(n);
                }
                seen
            })
        };
        // Give the terminator time to start polling before the COMMIT.
        thread::sleep(Duration::from_millis(50));
        let outcome = store.append(&stream, ExpectedVersion::NoStream, events.clone());
        killed += terminator.join().expect("terminator").first().and_then(|n| n.as_deref()?.parse().ok()).unwrap_or(0);
        watching.store(false, Ordering::SeqCst);
        let seen = watcher.join().expect("watcher");
        assert!(seen.iter().all(|n| *n == 0 || *n == EVENTS), "round {round}: partial batch readable: {seen:?}");
        let stored: Vec<RecordedEvent> =
            observer.read_stream(&stream, 0).expect("read").collect::<Result<_, _>>().expect("items");
        assert!(stored.is_empty() || stored.len() as u64 == EVENTS, "round {round}: {} events", stored.len());
        match outcome {
            Ok(result) => {
                assert_eq!(stored.len() as u64, EVENTS, "round {round}: Ok but not stored");
                assert_eq!(result.first_position, stored[0].position);
            }
            Err(Error::Backend { message, .. }) => {
                errors += 1;
                assert!(message.contains("unknown") || message.contains("not written"), "round {round}: {message}");
                if !stored.is_empty() {
                    lost += 1; // committed, but the answer was lost with the connection
                }
                let retry = store.append(&stream, ExpectedVersion::NoStream, events).expect("retry");
                assert_eq!((retry.first_version, retry.last_version), (0, EVENTS - 1), "{message}");
                if let Some(first) = stored.first() {
                    assert_eq!(retry.first_position, first.position, "retry of a committed append: original result");
                }
            }
            Err(other) => panic!("round {round}: unexpected error {other}"),
        }
    }
    println!(
        "{killed} backends terminated in COMMIT; {errors} appends returned an error, {lost} of them had committed"
    );
    assert!(killed > 0, "no backend was terminated in COMMIT");
    let all: Vec<RecordedEvent> = observer.read_all(0).expect("read_all").collect::<Result<_, _>>().expect("items");
    assert_eq!(all.len() as u64, ROUNDS * EVENTS, "every batch once, whole");
}

/// Durable consumer names are exclusive across store handles (as across processes): a
/// second handle gets `ConsumerInUse` while the first subscription lives, and the name is
/// free again once it is dropped or its lock connection is terminated.
#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn durable_consumer_names_are_exclusive_across_store_handles() {
    let schema = common::fresh_schema("owner");
    let app = format!("owner_{schema}");
    let first =
        PostgresStore::connect_with(&format!("{}?application_name={app}", common::url()), common::options(&schema))
            .expect("connect");
    let second = PostgresStore::connect_with(&common::url(), common::options(&schema)).expect("connect");
    first.append("a", ExpectedVersion::Any, [NewEvent::new("T", "")]).expect("append");
    let mut held = first.subscribe_durable("billing", Filter::all()).expect("subscribe");
    let taken = second.subscribe_durable("billing", Filter::all());
    assert!(matches!(&taken, Err(Error::ConsumerInUse { name }) if name == "billing"), "{taken:?}");
    assert_eq!(held.consumer_name(), Some("billing"));
    let deleted = second.delete_consumer("billing");
    assert!(matches!(deleted, Err(Error::ConsumerInUse { .. })), "delete while another handle holds it: {deleted:?}");
    assert!(matches!(first.subscribe_durable("billing", Filter::all()), Err(Error::ConsumerInUse { .. })));
    let other_name = second.subscribe_durable("audit", Filter::all()).expect("another name is free");
    drop(other_name);
    let event = held.recv_timeout(Duration::from_secs(10)).expect("recv").expect("event");
    held.ack(event.position).expect("ack");
    drop(held);
    let mut moved = second.subscribe_durable("billing", Filter::all()).expect("free once dropped");
    assert_eq!(second.consumer_position("billing").expect("position"), Some(0));
    assert!(matches!(first.subscribe_durable("billing", Filter::all()), Err(Error::ConsumerInUse { .. })));
    assert!(moved.recv_timeout(Duration::from_millis(200)).expect("recv").is_none(), "resumes after the ack");
    drop(moved);
    // The server frees the name when the holder's connection dies.
    let _holder = first.subscribe_durable("billing", Filter::all()).expect("subscribe");
    common::sql(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{app}'"
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let taken = loop {
        match second.subscribe_durable("billing", Filter::all()) {
            Ok(subscription) => break subscription,
            Err(Error::ConsumerInUse { .. }) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Err(other) => panic!("after the holder's connection died: {other}"),
        }
    };
    drop(taken);
}

/// Live durable consumers hold their name's lock on a connection taken out of the pool:
/// more of them than the pool has connections still read, ack, and leave room for appends.
#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn more_durable_consumers_than_pooled_connections_all_work() {
    let schema = common::fresh_schema("pool");
    let store = PostgresStore::connect_with(&common::url(), common::options(&schema).pool_size(2)).expect("connect");
    let mut consumers: Vec<_> =
        (0..5).map(|i| store.subscribe_durable(&format!("c{i}"), Filter::all()).expect("subscribe")).collect();
    store.append("a", ExpectedVersion::Any, [NewEvent::new("T", "")]).expect("append with every consumer live");
    for (i, consumer) in consumers.iter_mut().enumerate() {
        let event = consumer.recv_timeout(Duration::from_secs(30)).expect("recv").expect("event");
        consumer.ack(event.position).expect("ack");
        assert_eq!(store.consumer_position(&format!("c{i}")).expect("position"), Some(0));
    }
    drop(consumers);
    store.delete_consumer("c0").expect("the name is free once dropped");
}

/// The schema's SQL `stream_hash` (used to fill `partition_hash` of streams written before
/// schema version 3) is `chronicle::Filter::partition_hash`.
#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn the_sql_stream_hash_is_the_filters_partition_hash() {
    let store = common::fresh_store("hash");
    for stream in ["", "a", "order-42", "ünïcødé-流-🚀", &"x".repeat(300)] {
        let hex: String = stream.bytes().map(|b| format!("{b:02x}")).collect();
        let sql = common::sql(&format!("SELECT \"{}\".stream_hash('\\x{hex}'::bytea)", store.schema()));
        let expected = i64::from_ne_bytes(Filter::partition_hash(stream).to_ne_bytes());
        assert_eq!(sql, [Some(expected.to_string())], "stream {stream:?}");
    }
    // Streams created by appends carry the same hash.
    store.append("order-7", ExpectedVersion::Any, [NewEvent::new("T", "")]).expect("append");
    let stored = common::sql(&format!(
        "SELECT partition_hash = \"{0}\".stream_hash(stream_id) FROM \"{0}\".streams",
        store.schema()
    ));
    assert_eq!(stored, [Some("t".to_owned())]);
}

/// A commit lost in flight, by the network: a proxy cuts the store's connection right
/// after forwarding its COMMIT (the server commits, the answer never arrives) or right
/// before it (the server rolls back, the client sent COMMIT). Both return an error saying
/// the outcome is unknown; the batch is whole or absent; a retry with the same ids
/// returns the original result or writes it once.
#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn a_commit_whose_answer_is_lost_is_reported_unknown_and_a_retry_settles_it() {
    const EVENTS: u64 = 200;
    let proxy = common::CutProxy::start();
    let schema = common::fresh_schema("cut");
    let store = PostgresStore::connect_with(&proxy.url(), common::options(&schema)).expect("connect");
    let observer = common::fresh_store_in(&schema);
    for (round, cut) in [common::Cut::AfterCommit, common::Cut::BeforeCommit].into_iter().cycle().take(4).enumerate() {
        let stream = format!("batch-{round}");
        let events: Vec<NewEvent> = (0..EVENTS)
            .map(|i| NewEvent::new("E", vec![round as u8; 64]).with_id(u128::from(round as u64) << 32 | u128::from(i)))
            .collect();
        proxy.arm(cut);
        let outcome = store.append(&stream, ExpectedVersion::NoStream, events.clone());
        // Once the cut is over, the server has answered the COMMIT (or rolled back).
        assert_eq!(proxy.wait_cuts(round as u32 + 1), round as u32 + 1, "round {round}: the cut did not happen");
        let stored: Vec<RecordedEvent> =
            observer.read_stream(&stream, 0).expect("read").collect::<Result<_, _>>().expect("items");
        let message = match outcome {
            Err(Error::Backend { message, .. }) => message,
            other => panic!("round {round} ({cut:?}): {other:?}"),
        };
        assert!(message.contains("unknown"), "round {round}: {message}");
        match cut {
            common::Cut::AfterCommit => assert_eq!(stored.len() as u64, EVENTS, "round {round}: committed whole"),
            _ => assert!(stored.is_empty(), "round {round}: rolled back, {} events readable", stored.len()),
        }
        let retry = store.append(&stream, ExpectedVersion::NoStream, events).expect("retry");
        assert_eq!((retry.first_version, retry.last_version), (0, EVENTS - 1));
        if let Some(first) = stored.first() {
            assert_eq!(retry.first_position, first.position, "round {round}: the original result");
        }
        assert_eq!(observer.read_stream(&stream, 0).expect("read").count() as u64, EVENTS, "round {round}: once");
    }
    assert_eq!(observer.read_all(0).expect("read_all").count() as u64, 4 * EVENTS);
}

/// A schema at version 2 (before partition hashes) is migrated at connect: existing
/// streams get their hash from the SQL function, and partitioned filters see them.
#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn a_version_2_schema_gets_partition_hashes_for_its_streams() {
    let schema = common::fresh_schema("v2");
    let store = common::fresh_store_in(&schema);
    for i in 0..12 {
        store.append(&format!("order-{i}"), ExpectedVersion::Any, [NewEvent::new("T", "")]).expect("append");
    }
    drop(store);
    // Back to version 2, as an older chronicle-postgres left it.
    common::sql(&format!(
        "ALTER TABLE \"{schema}\".streams DROP COLUMN partition_hash; DROP FUNCTION \"{schema}\".stream_hash(bytea); \
         UPDATE \"{schema}\".schema_version SET version = 2"
    ));
    let store = common::fresh_store_in(&schema);
    let mut seen = 0;
    for index in 0..3u32 {
        for event in store.read_all_filtered(0, Filter::category("order").with_partition(index, 3)).expect("read") {
            let event = event.expect("event");
            assert_eq!(Filter::partition_hash(&event.stream_id) % 3, u64::from(index), "{}", event.stream_id);
            seen += 1;
        }
    }
    assert_eq!(seen, 12, "every stream in exactly one partition");
}
