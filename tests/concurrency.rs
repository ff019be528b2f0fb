//! Proves that concurrent appends keep the concurrency-control guarantees: exactly one
//! winner per expected version, unique strictly increasing positions, and readers that run
//! alongside writers never observe part of an append_multi.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use chronicle::{AppendResult, Durability, Error, ExpectedVersion, NewEvent, Options, Store, StreamAppend};
use common::{read_all, read_stream};

const RACERS: usize = 8;

#[test]
fn exact_version_race_has_exactly_one_winner_per_version() {
    exact_version_race(Durability::Sync);
}

/// Without `Sync`, an append may commit on its own thread while others queue for the writer
/// thread: the race must come out the same.
#[test]
fn exact_version_race_has_exactly_one_winner_per_version_buffered() {
    exact_version_race(Durability::Buffered);
}

fn exact_version_race(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().durability(durability)).unwrap();
    store.append("race", ExpectedVersion::NoStream, [NewEvent::new("Start", "")]).unwrap();
    let rounds = 25u64;
    let barrier = Arc::new(Barrier::new(RACERS));
    let handles: Vec<_> = (0..RACERS)
        .map(|racer| {
            let store = store.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut wins = Vec::new();
                for round in 0..rounds {
                    barrier.wait();
                    let event = NewEvent::new("Move", format!("racer {racer} round {round}"));
                    match store.append("race", ExpectedVersion::Exact(round), [event]) {
                        Ok(result) => {
                            assert_eq!((result.first_version, result.last_version), (round + 1, round + 1));
                            wins.push(round);
                        }
                        Err(Error::WrongExpectedVersion { stream, expected, actual }) => {
                            assert_eq!(stream, "race");
                            assert_eq!(expected, ExpectedVersion::Exact(round));
                            assert_eq!(actual, Some(round + 1), "the loser sees the winner's version");
                        }
                        Err(other) => panic!("unexpected error {other:?}"),
                    }
                    // Everyone has answered before the next round starts.
                    barrier.wait();
                }
                (racer, wins)
            })
        })
        .collect();
    let mut winner_of_round: BTreeMap<u64, usize> = BTreeMap::new();
    for handle in handles {
        let (racer, wins) = handle.join().unwrap();
        for round in wins {
            assert!(winner_of_round.insert(round, racer).is_none(), "round {round} has two winners");
        }
    }
    assert_eq!(winner_of_round.len() as u64, rounds, "every round has a winner");
    let events = read_stream(&store, "race");
    assert_eq!(events.len() as u64, rounds + 1);
    for (round, racer) in winner_of_round {
        assert_eq!(events[round as usize + 1].data, format!("racer {racer} round {round}").as_bytes());
    }
}

#[test]
fn no_stream_race_has_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for attempt in 0..10 {
        let stream = format!("created-{attempt}");
        let barrier = Arc::new(Barrier::new(RACERS));
        let outcomes: Vec<Result<AppendResult, Error>> = (0..RACERS)
            .map(|racer| {
                let (store, barrier, stream) = (store.clone(), Arc::clone(&barrier), stream.clone());
                thread::spawn(move || {
                    barrier.wait();
                    store.append(&stream, ExpectedVersion::NoStream, [NewEvent::new("Created", racer.to_string())])
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{stream}");
        for outcome in outcomes.iter().filter(|o| o.is_err()) {
            assert!(matches!(outcome, Err(Error::WrongExpectedVersion { actual: Some(0), .. })), "{outcome:?}");
        }
        assert_eq!(read_stream(&store, &stream).len(), 1);
    }
}

#[test]
fn writers_on_own_streams_all_succeed_with_unique_increasing_positions() {
    writers_on_own_streams(Durability::Sync);
}

#[test]
fn writers_on_own_streams_all_succeed_with_unique_increasing_positions_buffered() {
    writers_on_own_streams(Durability::Buffered);
}

fn writers_on_own_streams(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().durability(durability)).unwrap();
    let appends_per_writer = 40u64;
    let handles: Vec<_> = (0..RACERS)
        .map(|writer| {
            let store = store.clone();
            thread::spawn(move || {
                let stream = format!("writer-{writer}");
                let mut results = Vec::new();
                for i in 0..appends_per_writer {
                    let expected = if i == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(i - 1) };
                    let event = NewEvent::new("Wrote", format!("{writer}:{i}"));
                    results.push((stream.clone(), store.append(&stream, expected, [event]).unwrap()));
                }
                results
            })
        })
        .collect();
    let results: Vec<(String, AppendResult)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();

    let events = read_all(&store);
    assert_eq!(events.len() as u64, RACERS as u64 * appends_per_writer);
    assert!(events.windows(2).all(|w| w[0].position < w[1].position), "strictly increasing positions");
    let positions: HashSet<u64> = results.iter().map(|(_, r)| r.first_position).collect();
    assert_eq!(positions.len(), results.len(), "every append got its own position");
    for (stream, result) in &results {
        let event = events.iter().find(|e| e.position == result.first_position).unwrap();
        assert_eq!((&event.stream_id, event.version), (stream, result.first_version));
        let writer: u64 = stream.strip_prefix("writer-").unwrap().parse().unwrap();
        assert_eq!(event.data, format!("{writer}:{}", result.first_version).as_bytes());
    }
    for writer in 0..RACERS {
        let versions: Vec<u64> = read_stream(&store, &format!("writer-{writer}")).iter().map(|e| e.version).collect();
        assert_eq!(versions, (0..appends_per_writer).collect::<Vec<_>>());
    }
}

/// Event data of the multi-append test: "batch <writer>-<n> part <p> of <total>".
fn batch_event(writer: usize, n: usize, part: usize, total: usize) -> NewEvent {
    NewEvent::new("Part", format!("batch {writer}-{n} part {part} of {total}"))
}

fn parse_batch(data: &[u8]) -> (String, usize, usize) {
    let text = std::str::from_utf8(data).unwrap();
    let mut words = text.split(' ');
    let (_, batch, _, part, _, total) =
        (words.next(), words.next().unwrap(), words.next(), words.next().unwrap(), words.next(), words.next().unwrap());
    (batch.to_string(), part.parse().unwrap(), total.parse().unwrap())
}

#[test]
fn readers_never_see_part_of_an_append_multi() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().durability(Durability::Buffered).segment_bytes(16 << 10);
    let store = Store::open_with(dir.path(), options).unwrap();
    let writers_done = Arc::new(AtomicBool::new(false));
    let batches_per_writer = 150;
    let writers: Vec<_> = (0..2)
        .map(|writer| {
            let store = store.clone();
            thread::spawn(move || {
                for n in 0..batches_per_writer {
                    // 3 streams x 2 events: 6 events, contiguous positions, one commit.
                    let parts = (0..3).map(|s| {
                        let stream = format!("account-{}", (writer * 3 + s + n) % 7);
                        let events = (0..2).map(|e| batch_event(writer, n, s * 2 + e, 6));
                        StreamAppend::new(stream, ExpectedVersion::Any, events.collect::<Vec<_>>())
                    });
                    store.append_multi(parts.collect::<Vec<_>>()).unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, writers_done) = (store.clone(), Arc::clone(&writers_done));
            thread::spawn(move || {
                let mut checks = 0usize;
                loop {
                    let done = writers_done.load(Ordering::Acquire);
                    check_whole_batches(&store);
                    checks += 1;
                    if done {
                        return checks;
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    writers_done.store(true, Ordering::Release);
    for reader in readers {
        assert!(reader.join().unwrap() >= 1);
    }
    assert_eq!(read_all(&store).len(), 2 * batches_per_writer * 6);
}

/// Every batch visible in a read_all is complete, in contiguous positions; every stream
/// read has versions 0..n without gaps.
fn check_whole_batches(store: &Store) {
    check_events_form_whole_batches(read_all(store));
    let mut backward = common::read_all_backward(store);
    backward.reverse();
    check_events_form_whole_batches(backward);
    for s in 0..7 {
        let stream = format!("account-{s}");
        let versions: Vec<u64> = store.read_stream(&stream, 0).unwrap().map(|e| e.unwrap().version).collect();
        assert_eq!(versions, (0..versions.len() as u64).collect::<Vec<_>>(), "{stream}");
        // Each stream holds both events of a part, or neither.
        assert_eq!(versions.len() % 2, 0, "{stream} shows half of a part");
    }
}

fn check_events_form_whole_batches(events: Vec<chronicle::RecordedEvent>) {
    let mut batches: BTreeMap<String, Vec<(u64, usize, usize)>> = BTreeMap::new();
    for event in &events {
        let (batch, part, total) = parse_batch(&event.data);
        batches.entry(batch).or_default().push((event.position, part, total));
    }
    for (batch, parts) in &batches {
        let total = parts[0].2;
        assert_eq!(parts.len(), total, "batch {batch} is partly visible: {parts:?}");
        for (k, (position, part, _)) in parts.iter().enumerate() {
            assert_eq!((*position, *part), (parts[0].0 + k as u64, k), "batch {batch} is not contiguous");
        }
    }
}
