//! Following the log, measured: append throughput with 0 vs 100 live subscribers,
//! commit-to-delivery latency with 1 and 100 subscribers, filtered catch-up vs full replay.
//!
//! ```text
//! cargo run --release -p chronicle-bench --example follow -- [--events N] [--secs S] [--only append,latency,catchup]
//! ```
//! Stores live under the system temp directory.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use chronicle::{Durability, ExpectedVersion, Filter, NewEvent, Options, Store};

struct Args {
    events: u64,
    secs: f64,
    only: Vec<String>,
}

fn args() -> Args {
    let mut out = Args { events: 1_000_000, secs: 3.0, only: Vec::new() };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--events" => out.events = it.next().and_then(|v| v.parse().ok()).unwrap_or(out.events),
            "--secs" => out.secs = it.next().and_then(|v| v.parse().ok()).unwrap_or(out.secs),
            "--only" => out.only = it.next().unwrap_or_default().split(',').map(str::to_owned).collect(),
            _ => {}
        }
    }
    out
}

fn wanted(args: &Args, what: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|o| o == what)
}

/// `subscribers` threads follow the log (each with `filter`) while `threads` writers
/// append 1-event batches for `secs`; returns events/s.
fn append_run(durability: Durability, threads: usize, subscribers: usize, filter: &Filter, secs: f64) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().durability(durability)).unwrap();
    let delivered = Arc::new(AtomicU64::new(0));
    let subs: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut sub = store.subscribe(0, filter.clone()).unwrap();
            let stop = sub.stop_handle();
            let delivered = Arc::clone(&delivered);
            let handle = thread::spawn(move || {
                let mut n = 0u64;
                for event in sub.by_ref() {
                    std::hint::black_box(event.unwrap());
                    n += 1;
                }
                delivered.fetch_add(n, Ordering::Relaxed);
            });
            (stop, handle)
        })
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads + 1));
    let writers: Vec<_> = (0..threads)
        .map(|t| {
            let (store, done, start) = (store.clone(), Arc::clone(&done), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                let mut n = 0u64;
                let payload = vec![7u8; 100];
                while !done.load(Ordering::Relaxed) {
                    let stream = format!("cat{}-{}", n % 100, t);
                    store
                        .append(&stream, ExpectedVersion::Any, [NewEvent::new("OrderPlaced", payload.clone())])
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    thread::sleep(Duration::from_secs_f64(secs));
    done.store(true, Ordering::Relaxed);
    let appended: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let elapsed = began.elapsed().as_secs_f64();
    for (stop, handle) in subs {
        stop.stop();
        handle.join().unwrap();
    }
    (appended as f64 / elapsed, delivered.load(Ordering::Relaxed))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One writer appends an event every 200 µs; each of `subscribers` records, for every
/// event, the time from just before the append call to its delivery.
fn latency_run(durability: Durability, subscribers: usize, events: usize) -> (Duration, Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().durability(durability)).unwrap();
    let base = Instant::now();
    let handles: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut sub = store.subscribe(0, Filter::all()).unwrap();
            thread::spawn(move || {
                let mut lat = Vec::with_capacity(events);
                for _ in 0..events {
                    let event = sub.next().unwrap().unwrap();
                    let now = base.elapsed().as_nanos() as u64;
                    let sent = u64::from_le_bytes(event.data[..8].try_into().unwrap());
                    lat.push(Duration::from_nanos(now.saturating_sub(sent)));
                }
                lat
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    for _ in 0..events {
        let sent = base.elapsed().as_nanos() as u64;
        store.append("s", ExpectedVersion::Any, [NewEvent::new("T", sent.to_le_bytes().to_vec())]).unwrap();
        let until = Instant::now() + Duration::from_micros(200);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
    let mut all: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    all.sort_unstable();
    (percentile(&all, 0.5), percentile(&all, 0.99), percentile(&all, 0.999))
}

fn catchup(events: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().durability(Durability::Buffered)).unwrap();
    let began = Instant::now();
    let payload = vec![7u8; 100];
    let batch = 1000u64;
    for b in 0..events / batch {
        // 10,000 streams in 100 categories; the category is 1 % of the events, "Rare" as well.
        let s = b % 10_000;
        let stream = format!("cat{}-{}", s % 100, s);
        let evs = (0..batch).map(|i| {
            let t = if (b * batch + i).is_multiple_of(100) { "Rare" } else { "OrderPlaced" };
            NewEvent::new(t, payload.clone())
        });
        store.append(&stream, ExpectedVersion::Any, evs).unwrap();
    }
    store.close().unwrap();
    println!("catch-up: wrote {events} events in {:.1} s", began.elapsed().as_secs_f64());
    let store = Store::open(dir.path()).unwrap();
    // Warm: the first pass maps segments and index files.
    for round in 0..2 {
        let t = Instant::now();
        let mut n = 0u64;
        store
            .read_all_with(0, |_| {
                n += 1;
                ControlFlow::Continue(())
            })
            .unwrap();
        let full = t.elapsed();
        let t = Instant::now();
        let by_category = store.read_all_filtered(0, Filter::category("cat42")).unwrap().filter(|e| e.is_ok()).count();
        let category = t.elapsed();
        let t = Instant::now();
        let by_type = store.read_all_filtered(0, Filter::event_types(["Rare"])).unwrap().filter(|e| e.is_ok()).count();
        let types = t.elapsed();
        println!(
            "catch-up round {round}: read_all_with {n} events {:.3} s | Filter::category 1 % ({by_category}) {:.3} s = 1/{:.0} | Filter::event_types 1 % ({by_type}) {:.3} s = 1/{:.1}",
            full.as_secs_f64(),
            category.as_secs_f64(),
            full.as_secs_f64() / category.as_secs_f64(),
            types.as_secs_f64(),
            full.as_secs_f64() / types.as_secs_f64(),
        );
    }
}

fn main() {
    let args = args();
    if wanted(&args, "append") {
        for (durability, threads) in [(Durability::Sync, 16), (Durability::Buffered, 1)] {
            for (label, filter) in [("all events", Filter::all()), ("1 % (one category)", Filter::category("cat7"))] {
                let (none, _) = append_run(durability, threads, 0, &filter, args.secs);
                let (with, delivered) = append_run(durability, threads, 100, &filter, args.secs);
                println!(
                    "append {durability:?} {threads} threads: 0 subscribers {none:.0} ev/s | 100 subscribers ({label}) {with:.0} ev/s ({:+.1} %), {delivered} deliveries",
                    (with / none - 1.0) * 100.0
                );
            }
        }
    }
    if wanted(&args, "latency") {
        for durability in [Durability::Buffered, Durability::Sync] {
            for subscribers in [1, 100] {
                let (p50, p99, p999) = latency_run(durability, subscribers, 2000);
                println!(
                    "latency {durability:?} {subscribers} subscribers: append start -> delivery p50 {:?} p99 {:?} p99.9 {:?}",
                    p50, p99, p999
                );
            }
        }
    }
    if wanted(&args, "catchup") {
        catchup(args.events);
    }
}
