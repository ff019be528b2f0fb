//! The shared checks of following the log ([`chronicle::FollowStore`]): subscriptions
//! (catch-up then live, filters, positions, stop, timeouts, deletions) and durable
//! consumers (resume after the last ack, at-least-once, one live subscription per name,
//! bad input). Every wait is bounded by [`WAIT_MAX`], a hang guard, not a timing assert.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use chronicle::{Error, ExpectedVersion, Filter, FollowStore, LogSubscription, RecordedEvent, SubscriptionStop};

use super::{Check, Make, append, ensure, event, filtered, positions, step};

/// The longest any check waits for something that should happen (a hang guard).
const WAIT_MAX: Duration = Duration::from_secs(60);

/// One poll of a waiting loop.
const POLL: Duration = Duration::from_millis(200);

/// The next event of `sub`, or an error once [`WAIT_MAX`] passed without one.
fn recv<T: LogSubscription>(sub: &mut T, what: &str) -> Result<RecordedEvent, String> {
    let deadline = Instant::now() + WAIT_MAX;
    while Instant::now() < deadline {
        if let Some(event) = step(sub.recv_timeout(POLL), what)? {
            return Ok(event);
        }
    }
    Err(format!("{what}: no event within {WAIT_MAX:?}"))
}

/// Nothing within `timeout`.
fn quiet<T: LogSubscription>(sub: &mut T, timeout: Duration, what: &str) -> Check {
    match step(sub.recv_timeout(timeout), what)? {
        None => Ok(()),
        Some(event) => Err(format!("{what}: unexpected event at position {}", event.position)),
    }
}

fn invalid<T>(result: Result<T, Error>, what: &str) -> Check {
    match result {
        Err(Error::InvalidInput { .. }) => Ok(()),
        Err(other) => Err(format!("{what}: expected InvalidInput, got {other}")),
        Ok(_) => Err(format!("{what}: expected InvalidInput, got Ok")),
    }
}

fn in_use<T>(result: Result<T, Error>, what: &str) -> Check {
    match result {
        Err(Error::ConsumerInUse { .. }) => Ok(()),
        Err(other) => Err(format!("{what}: expected ConsumerInUse, got {other}")),
        Ok(_) => Err(format!("{what}: expected ConsumerInUse, got Ok")),
    }
}

/// `i` events spread over streams `s-0`..`s-2`, typed `Even`/`Odd` by their index.
fn fill<S: FollowStore>(store: &S, n: u32) -> Check {
    for i in 0..n {
        let kind = if i.is_multiple_of(2) { "Even" } else { "Odd" };
        step(append(store, &format!("s-{}", i % 3), ExpectedVersion::Any, [event(kind, &i.to_string())]), "append")?;
    }
    Ok(())
}

/// Catch-up then live: events before the subscription, then writers on several threads
/// while six subscribers with different filters follow; each sees every matching event
/// exactly once, in position order, across the switch.
pub(super) fn catch_up_then_live<S: FollowStore>(make_store: Make<'_, S>) -> Check {
    const BEFORE: u32 = 40;
    const WRITERS: u32 = 4;
    const PER_WRITER: u32 = 40;
    let total = u64::from(BEFORE + WRITERS * PER_WRITER);
    let store = make_store();
    let stream_of = |n: u32| format!("{}-{}", if n.is_multiple_of(3) { "order" } else { "user" }, n % 7);
    let kind_of = |n: u32| if n.is_multiple_of(2) { "Placed" } else { "Paid" };
    for i in 0..BEFORE {
        step(append(&store, &stream_of(i), ExpectedVersion::Any, [event(kind_of(i), "before")]), "append")?;
    }
    let filters = [
        Filter::all(),
        Filter::category("order"),
        Filter::event_types(["Paid"]),
        Filter::category("user").with_event_types(["Placed"]),
        Filter::stream("order-3"),
        Filter::stream_prefix("user-"),
    ];
    let subscriptions =
        filters.iter().map(|f| step(store.subscribe(0, f.clone()), "subscribe")).collect::<Result<Vec<_>, _>>()?;
    let start = Barrier::new(filters.len() + WRITERS as usize);
    let seen = std::thread::scope(|scope| -> Result<Vec<Vec<u64>>, String> {
        let followers: Vec<_> = subscriptions
            .into_iter()
            .map(|mut sub| {
                let start = &start;
                scope.spawn(move || -> Result<Vec<u64>, String> {
                    start.wait();
                    let deadline = Instant::now() + WAIT_MAX;
                    let mut seen = Vec::new();
                    // Until it has examined the whole log, matching or not.
                    while LogSubscription::position(&sub) < total {
                        if Instant::now() > deadline {
                            return Err(format!("stalled at position {}", LogSubscription::position(&sub)));
                        }
                        if let Some(event) = step(sub.recv_timeout(POLL), "recv_timeout")? {
                            seen.push(event.position);
                        }
                    }
                    Ok(seen)
                })
            })
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (store, start) = (&store, &start);
                scope.spawn(move || -> Check {
                    start.wait();
                    for i in 0..PER_WRITER {
                        let n = w * 31 + i;
                        step(
                            append(store, &stream_of(n), ExpectedVersion::Any, [event(kind_of(n), "live")]),
                            "append",
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        for writer in writers {
            writer.join().map_err(|_| "a writer panicked".to_owned())??;
        }
        followers.into_iter().map(|f| f.join().map_err(|_| "a subscriber panicked".to_owned())?).collect()
    })?;
    for (filter, seen) in filters.iter().zip(seen) {
        let expected = positions(&filtered(&store, 0, filter.clone())?);
        ensure(seen == expected, || {
            format!(
                "{filter:?}: saw {} events, not the {} matching ones once each in order",
                seen.len(),
                expected.len()
            )
        })?;
    }
    Ok(())
}

/// A filtered subscription's position moves past the events it examined and skipped, and
/// past non-matching events appended later.
pub(super) fn filtered_positions<S: FollowStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    step(append(&store, "a-1", ExpectedVersion::Any, [event("X", ""), event("Y", "")]), "append")?;
    step(append(&store, "b-1", ExpectedVersion::Any, [event("X", "")]), "append")?;
    let mut sub = step(store.subscribe(0, Filter::category("a").with_event_types(["X"])), "subscribe")?;
    ensure(LogSubscription::position(&sub) == 0, || "a new subscription is at its start position".into())?;
    let first = recv(&mut sub, "first match")?;
    ensure(first.position == 0, || format!("first match at {}, not 0", first.position))?;
    ensure(LogSubscription::position(&sub) >= 1, || "position past the delivered event".into())?;
    quiet(&mut sub, Duration::from_millis(20), "no second match")?;
    ensure(LogSubscription::position(&sub) == 3, || {
        format!("position {} after examining 3 events, not 3", LogSubscription::position(&sub))
    })?;
    step(append(&store, "b-1", ExpectedVersion::Any, [event("X", "")]), "append")?;
    let deadline = Instant::now() + WAIT_MAX;
    while LogSubscription::position(&sub) < 4 {
        ensure(Instant::now() < deadline, || "position never passed a later non-matching event".into())?;
        quiet(&mut sub, POLL, "no match later")?;
    }
    ensure(LogSubscription::position(&sub) == 4, || format!("position {}, not 4", LogSubscription::position(&sub)))
}

/// A subscription from beyond the end delivers nothing until the log reaches its position,
/// then the event there; `recv_timeout` returns `Ok(None)` on an idle store.
pub(super) fn beyond_the_end_and_timeouts<S: FollowStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    let mut idle = step(store.subscribe(0, Filter::all()), "subscribe")?;
    quiet(&mut idle, Duration::from_millis(20), "idle store")?;
    quiet(&mut idle, Duration::ZERO, "idle store, zero timeout")?;
    let mut sub = step(store.subscribe(5, Filter::all()), "subscribe beyond the end")?;
    for i in 0..5u32 {
        step(append(&store, "s", ExpectedVersion::Any, [event("T", &i.to_string())]), "append")?;
        quiet(&mut sub, Duration::from_millis(5), "before the log reached the position")?;
    }
    step(append(&store, "s", ExpectedVersion::Any, [event("T", "5")]), "append")?;
    let got = recv(&mut sub, "at the position")?;
    ensure(got.position == 5, || format!("delivered position {}, not 5", got.position))?;
    let first = recv(&mut idle, "the idle subscription, once events came")?;
    ensure(first.position == 0, || format!("delivered position {}, not 0", first.position))
}

/// A stop from another thread wakes a `next()` blocked on an idle store (and one on a
/// durable subscription); a stopped subscription's `recv_timeout` returns `Ok(None)`.
pub(super) fn stop_wakes_a_blocked_next<S: FollowStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    for round in 0..6 {
        let mut sub = if round % 2 == 0 {
            step(store.subscribe(0, Filter::all()), "subscribe")?
        } else {
            step(store.subscribe_durable("stopper", Filter::all()), "subscribe_durable")?
        };
        let stop = sub.stop_handle();
        let (done, woken) = std::sync::mpsc::channel();
        // Not scoped: should the stop not wake it, the check fails instead of hanging.
        std::thread::spawn(move || {
            let ended = sub.next().is_none();
            let _ = done.send((ended, sub));
        });
        std::thread::sleep(Duration::from_millis(2));
        stop.clone().stop();
        let (ended, mut sub) =
            woken.recv_timeout(WAIT_MAX).map_err(|_| format!("round {round}: stop did not wake next()"))?;
        ensure(ended, || format!("round {round}: next() after stop returned an item"))?;
        quiet(&mut sub, Duration::from_millis(5), "stopped")?;
        stop.stop();
    }
    Ok(())
}

/// A deletion takes a position but is no event: a subscriber delivers nothing for it, its
/// position moves past it, and the next event comes through.
pub(super) fn subscription_past_a_deletion<S: FollowStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    step(append(&store, "a", ExpectedVersion::Any, [event("T", "")]), "append")?;
    let mut all = step(store.subscribe(0, Filter::all()), "subscribe")?;
    ensure(recv(&mut all, "first")?.position == 0, || "first event not at 0".into())?;
    step(store.delete_stream("a", ExpectedVersion::Any), "delete_stream")?;
    quiet(&mut all, Duration::from_millis(50), "a deletion is no event")?;
    ensure(LogSubscription::position(&all) == 2, || {
        format!("position {} after the deletion, not 2", LogSubscription::position(&all))
    })?;
    step(append(&store, "b", ExpectedVersion::Any, [event("T", "")]), "append")?;
    let next = recv(&mut all, "after the deletion")?;
    ensure(next.position == 2 && next.stream_id == "b", || format!("delivered {}@{}", next.stream_id, next.position))?;
    let mut late = step(store.subscribe(0, Filter::all()), "subscribe after the deletion")?;
    let first = recv(&mut late, "a later subscriber")?;
    ensure(first.position == 2, || format!("a later subscriber got the deleted stream's event at {}", first.position))
}

/// A durable consumer resumes just after its last acknowledgement: what was delivered but
/// not acknowledged comes again (at-least-once); an ack at or below the checkpoint changes
/// nothing.
pub(super) fn durable_consumer_resumes<S: FollowStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    fill(&store, 10)?;
    let odd = || Filter::event_types(["Odd"]);
    let mut sub = step(store.subscribe_durable("billing", odd()), "subscribe_durable")?;
    ensure(step(store.consumer_position("billing"), "consumer_position")?.is_none(), || {
        "a new consumer has a checkpoint".into()
    })?;
    let (a, b) = (recv(&mut sub, "a")?, recv(&mut sub, "b")?);
    ensure((a.position, b.position) == (1, 3), || format!("delivered {} and {}, not 1 and 3", a.position, b.position))?;
    step(sub.ack(a.position), "ack")?;
    ensure(step(store.consumer_position("billing"), "consumer_position")? == Some(1), || "checkpoint not at 1".into())?;
    step(sub.ack(0), "ack below the checkpoint")?;
    ensure(step(store.consumer_position("billing"), "consumer_position")? == Some(1), || "ack below moved it".into())?;
    drop(sub);
    let mut again = step(store.subscribe_durable("billing", odd()), "subscribe_durable again")?;
    let first = recv(&mut again, "after resuming")?;
    ensure(first.position == 3, || format!("resumed at {}, not at the unacknowledged 3", first.position))?;
    step(again.ack(first.position), "ack")?;
    drop(again);
    let mut third = step(store.subscribe_durable("billing", odd()), "subscribe_durable a third time")?;
    ensure(recv(&mut third, "third")?.position == 5, || "did not resume after the second ack".into())
}

/// Acknowledgements: only of delivered or examined positions (examined non-matching ones
/// included), never beyond, never on a plain subscription; refused ones write nothing.
pub(super) fn ack_bounds<S: FollowStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    fill(&store, 4)?;
    let mut sub = step(store.subscribe_durable("c", Filter::stream("nothing")), "subscribe_durable")?;
    invalid(sub.ack(0), "ack before anything was examined")?;
    quiet(&mut sub, Duration::from_millis(10), "nothing matches")?;
    ensure(LogSubscription::position(&sub) == 4, || format!("position {}, not 4", LogSubscription::position(&sub)))?;
    invalid(sub.ack(4), "ack beyond the end")?;
    invalid(sub.ack(u64::MAX), "ack of u64::MAX")?;
    ensure(step(store.consumer_position("c"), "consumer_position")?.is_none(), || "a refused ack wrote".into())?;
    step(sub.ack(3), "ack of an examined position")?;
    ensure(step(store.consumer_position("c"), "consumer_position")? == Some(3), || "checkpoint not at 3".into())?;
    let mut plain = step(store.subscribe(0, Filter::all()), "subscribe")?;
    recv(&mut plain, "plain")?;
    invalid(plain.ack(0), "ack on a plain subscription")
}

/// One live subscription per name: a second one, with any filter, and deleting the
/// consumer meanwhile are `ConsumerInUse`; the name is free once the first is dropped.
pub(super) fn one_live_subscription_per_name<S: FollowStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    let first = step(store.subscribe_durable("x", Filter::all()), "subscribe_durable")?;
    in_use(store.subscribe_durable("x", Filter::all()), "a second subscription")?;
    in_use(store.subscribe_durable("x", Filter::category("a")), "a second one with another filter")?;
    in_use(store.delete_consumer("x"), "delete_consumer while in use")?;
    let other = step(store.subscribe_durable("y", Filter::all()), "another name")?;
    drop(first);
    let again = step(store.subscribe_durable("x", Filter::all()), "free once dropped")?;
    drop((other, again));
    Ok(())
}

/// Deleting a consumer starts it over at 0; deleting an absent one is fine.
pub(super) fn delete_consumer_starts_over<S: FollowStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    fill(&store, 3)?;
    let mut sub = step(store.subscribe_durable("x", Filter::all()), "subscribe_durable")?;
    recv(&mut sub, "first")?;
    recv(&mut sub, "second")?;
    step(sub.ack(1), "ack")?;
    drop(sub);
    ensure(step(store.consumer_position("x"), "consumer_position")? == Some(1), || "checkpoint not at 1".into())?;
    step(store.delete_consumer("x"), "delete_consumer")?;
    step(store.delete_consumer("x"), "delete_consumer of an absent consumer")?;
    ensure(step(store.consumer_position("x"), "consumer_position")?.is_none(), || {
        "deleted consumer has a checkpoint".into()
    })?;
    let mut sub = step(store.subscribe_durable("x", Filter::all()), "subscribe_durable after delete")?;
    ensure(recv(&mut sub, "after delete")?.position == 0, || "a deleted consumer did not start over at 0".into())
}

/// Bad consumer names and bad filters are `InvalidInput` everywhere they are taken.
pub(super) fn bad_names_and_filters<S: FollowStore>(make_store: Make<'_, S>) -> Check {
    let store = make_store();
    let long = "n".repeat(chronicle::CONSUMER_NAME_BYTES_MAX + 1);
    for name in ["", long.as_str(), "a/b", "../x", "a\\b", ".hidden", "a b", "nul\0", "é"] {
        invalid(store.subscribe_durable(name, Filter::all()), &format!("subscribe_durable({name:?})"))?;
        invalid(store.consumer_position(name), &format!("consumer_position({name:?})"))?;
        invalid(store.delete_consumer(name), &format!("delete_consumer({name:?})"))?;
    }
    let longest = "n".repeat(chronicle::CONSUMER_NAME_BYTES_MAX);
    drop(step(store.subscribe_durable(&longest, Filter::all()), "the longest name")?);
    let bad = [
        Filter::event_types(Vec::<String>::new()),
        Filter::event_types([""]),
        Filter::category(""),
        Filter::category("a-b"),
        Filter::stream(""),
        Filter::stream("x".repeat(100_000)),
        Filter::stream_prefix(""),
        Filter::category("order").with_event_types(Vec::<&str>::new()),
    ];
    for filter in bad {
        invalid(store.subscribe(0, filter.clone()), &format!("subscribe({filter:?})"))?;
        invalid(store.subscribe_durable("c", filter.clone()), &format!("subscribe_durable({filter:?})"))?;
    }
    ensure(step(store.consumer_position("c"), "consumer_position")?.is_none(), || "a refused subscription wrote".into())
}

/// Partitioned consumers: four durable consumers, one partition each, on their own
/// threads while a writer appends: together they see every event exactly once, each
/// stream entirely in one partition, each partition in position order.
pub(super) fn partitioned_consumers<S: FollowStore>(make_store: Make<'_, S>) -> Check {
    const PARTITIONS: u32 = 4;
    const EVENTS: u32 = 200;
    let store = make_store();
    let subscriptions = (0..PARTITIONS)
        .map(|p| {
            step(
                store.subscribe_durable(&format!("billing-{p}"), Filter::all().with_partition(p, PARTITIONS)),
                "subscribe",
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let per_partition = std::thread::scope(|scope| -> Result<Vec<Vec<(String, u64)>>, String> {
        let consumers: Vec<_> = subscriptions
            .into_iter()
            .map(|mut sub| {
                scope.spawn(move || -> Result<Vec<(String, u64)>, String> {
                    let deadline = Instant::now() + WAIT_MAX;
                    let mut seen = Vec::new();
                    while LogSubscription::position(&sub) < u64::from(EVENTS) {
                        ensure(Instant::now() < deadline, || {
                            format!("a partition stalled after {} events", seen.len())
                        })?;
                        if let Some(event) = step(sub.recv_timeout(POLL), "recv_timeout")? {
                            step(sub.ack(event.position), "ack")?;
                            seen.push((event.stream_id, event.position));
                        }
                    }
                    Ok(seen)
                })
            })
            .collect();
        for i in 0..EVENTS {
            step(append(&store, &format!("acct-{}", i % 37), ExpectedVersion::Any, [event("T", "")]), "append")?;
        }
        consumers.into_iter().map(|c| c.join().map_err(|_| "a consumer panicked".to_owned())?).collect()
    })?;
    let mut all: Vec<u64> = per_partition.iter().flatten().map(|e| e.1).collect();
    all.sort_unstable();
    ensure(all == (0..u64::from(EVENTS)).collect::<Vec<_>>(), || {
        "not every event exactly once across partitions".into()
    })?;
    let mut owner = std::collections::HashMap::new();
    for (p, events) in per_partition.iter().enumerate() {
        ensure(events.windows(2).all(|w| w[0].1 < w[1].1), || format!("partition {p} out of position order"))?;
        for (stream, _) in events {
            ensure(*owner.entry(stream.clone()).or_insert(p) == p, || format!("stream {stream} in two partitions"))?;
        }
    }
    invalid(store.subscribe(0, Filter::all().with_partition(4, 4)), "partition 4 of 4")?;
    invalid(store.subscribe(0, Filter::all().with_partition(0, 0)), "partition 0 of 0")
}
