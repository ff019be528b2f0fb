//! Following the log (chronicle only, issue 11): append throughput with 0 vs 100 live
//! subscribers, commit-to-delivery latency with 1 and 100 subscribers, and a filtered
//! catch-up (1 % of the log) against a full replay.
//!
//! The append runs alternate (0 subscribers, then 100, repeated `--follow-rounds` times) so
//! that the machine's drift hits both sides alike; each pair gives one ratio.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use chronicle::{Durability, ExpectedVersion, Filter, NewEvent, Options, Store};

use crate::engines::Res;
use crate::report::{Latencies, count, micros};
use crate::workloads::Ctx;

/// Live subscribers of the "100 subscribers" runs.
const SUBSCRIBERS: usize = 100;

pub fn follow(ctx: &Ctx) -> Res<()> {
    append_table(ctx)?;
    latency_table(ctx)?;
    catch_up_table(ctx)
}

fn append_table(ctx: &Ctx) -> Res<()> {
    println!("\n### Following: append throughput, 0 vs {SUBSCRIBERS} live subscribers (chronicle)\n");
    println!(
        "| durability, writer threads | subscribers' filter | 0 subscribers (median) | {SUBSCRIBERS} subscribers (median) | ratio per pair | median ratio | deliveries/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (durability, threads) in [(Durability::Sync, 16), (Durability::Buffered, 1)] {
        for (label, filter) in [("all events", Filter::all()), ("1 % (one category)", Filter::category("cat7"))] {
            let (mut none, mut with, mut ratios, mut deliveries) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for round in 0..ctx.args.follow_rounds {
                eprintln!("follow: append {durability:?} {threads} threads, {label}, round {round}");
                let (alone, _) = append_run(ctx, durability, threads, 0, &filter)?;
                let (followed, delivered) = append_run(ctx, durability, threads, SUBSCRIBERS, &filter)?;
                none.push(alone);
                with.push(followed);
                ratios.push(followed / alone);
                deliveries.push(delivered);
            }
            let pairs: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            println!(
                "| {durability:?}, {threads} | {label} | {} ev/s | {} ev/s | {} | **{:.2}** | {} |",
                count(median(&mut none)),
                count(median(&mut with)),
                pairs.join(" / "),
                median(&mut ratios),
                count(median(&mut deliveries)),
            );
        }
    }
    println!(
        "\n1-event appends of {} bytes to `cat{{0..99}}-{{thread}}`; each subscriber a thread doing `for event in subscription`; runs of {} s.",
        ctx.data.len(),
        ctx.args.run_seconds
    );
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// `subscribers` threads follow the log (each with `filter`) while `threads` writers append
/// 1-event batches; returns appends/s and deliveries/s.
fn append_run(
    ctx: &Ctx,
    durability: Durability,
    threads: usize,
    subscribers: usize,
    filter: &Filter,
) -> Res<(f64, f64)> {
    let dir = tempfile::tempdir_in(&ctx.base)?;
    let store = Store::open_with(dir.path(), Options::default().durability(durability))?;
    let delivered = Arc::new(AtomicU64::new(0));
    let mut followers = Vec::new();
    for _ in 0..subscribers {
        let mut subscription = store.subscribe(0, filter.clone())?;
        let stop = subscription.stop_handle();
        let delivered = Arc::clone(&delivered);
        let handle = thread::spawn(move || -> Res<()> {
            let mut n = 0u64;
            for event in subscription.by_ref() {
                std::hint::black_box(event?);
                n += 1;
            }
            delivered.fetch_add(n, Ordering::Relaxed);
            Ok(())
        });
        followers.push((stop, handle));
    }
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads + 1));
    let writers: Vec<_> = (0..threads)
        .map(|t| {
            let (store, done, start, data) = (store.clone(), Arc::clone(&done), Arc::clone(&start), ctx.data.clone());
            thread::spawn(move || -> Res<u64> {
                start.wait();
                let mut n = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let stream = format!("cat{}-{t}", n % 100);
                    store.append(&stream, ExpectedVersion::Any, [NewEvent::new("OrderPlaced", data.clone())])?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    thread::sleep(Duration::from_secs_f64(ctx.args.run_seconds));
    done.store(true, Ordering::Relaxed);
    let mut appended = 0u64;
    for writer in writers {
        appended += writer.join().map_err(|_| "writer thread panicked")??;
    }
    let elapsed = began.elapsed().as_secs_f64();
    for (stop, handle) in followers {
        stop.stop();
        handle.join().map_err(|_| "subscriber thread panicked")??;
    }
    store.close()?;
    Ok((appended as f64 / elapsed, delivered.load(Ordering::Relaxed) as f64 / elapsed))
}

fn latency_table(ctx: &Ctx) -> Res<()> {
    let events = if ctx.args.quick { 500 } else { 2000 };
    println!("\n### Following: commit-to-delivery latency (chronicle)\n");
    println!("| durability | subscribers | p50 | p99 | p99.9 |");
    println!("|---|---|---|---|---|");
    for durability in [Durability::Buffered, Durability::Sync] {
        for subscribers in [1, SUBSCRIBERS] {
            eprintln!("follow: latency {durability:?}, {subscribers} subscriber(s)");
            let mut latencies = latency_run(ctx, durability, subscribers, events)?;
            println!(
                "| {durability:?} | {subscribers} | {} | {} | {} |",
                micros(latencies.percentile_us(50.0)),
                micros(latencies.percentile_us(99.0)),
                micros(latencies.percentile_us(99.9)),
            );
        }
    }
    println!(
        "\none writer appends an event every 200 µs ({events} events); each subscriber records, per event, the time from just before the `append` call to its delivery (under `Sync` it includes the fsync); all subscribers' samples pooled."
    );
    Ok(())
}

/// One writer appends an event every 200 µs; each of `subscribers` records, for every
/// event, the time from just before the append call to its delivery.
fn latency_run(ctx: &Ctx, durability: Durability, subscribers: usize, events: usize) -> Res<Latencies> {
    let dir = tempfile::tempdir_in(&ctx.base)?;
    let store = Store::open_with(dir.path(), Options::default().durability(durability))?;
    let base = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..subscribers {
        let mut subscription = store.subscribe(0, Filter::all())?;
        handles.push(thread::spawn(move || -> Res<Latencies> {
            let mut latencies = Latencies::with_capacity(events);
            for _ in 0..events {
                let event = subscription.next().ok_or("subscription ended early")??;
                let now = base.elapsed().as_nanos() as u64;
                let sent = u64::from_le_bytes(event.data.get(..8).ok_or("short event")?.try_into()?);
                latencies.record(Duration::from_nanos(now.saturating_sub(sent)));
            }
            Ok(latencies)
        }));
    }
    thread::sleep(Duration::from_millis(100));
    for _ in 0..events {
        let sent = base.elapsed().as_nanos() as u64;
        store.append("s", ExpectedVersion::Any, [NewEvent::new("T", sent.to_le_bytes().to_vec())])?;
        let until = Instant::now() + Duration::from_micros(200);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
    let mut all = Latencies::default();
    for handle in handles {
        all.merge(handle.join().map_err(|_| "subscriber thread panicked")??);
    }
    store.close()?;
    Ok(all)
}

fn catch_up_table(ctx: &Ctx) -> Res<()> {
    let events = if ctx.args.big {
        ctx.args.big_events as u64
    } else if ctx.args.quick {
        200_000
    } else {
        1_000_000
    };
    eprintln!("follow: catch-up data set of {events} events");
    let dir = tempfile::tempdir_in(&ctx.base)?;
    let store = Store::open_with(dir.path(), Options::default().durability(Durability::Buffered))?;
    let batch = 1000u64;
    for b in 0..events / batch {
        // 10,000 streams in 100 categories; the category is 1 % of the events, "Rare" as well.
        let s = b % 10_000;
        let stream = format!("cat{}-{s}", s % 100);
        let batch_events = (0..batch).map(|i| {
            let event_type = if (b * batch + i).is_multiple_of(100) { "Rare" } else { "OrderPlaced" };
            NewEvent::new(event_type, ctx.data.clone())
        });
        store.append(&stream, ExpectedVersion::Any, batch_events)?;
    }
    store.close()?;
    let store = Store::open(dir.path())?;
    println!("\n### Following: filtered catch-up (1 %) against a full replay (chronicle)\n");
    println!("| round | `read_all_with` | `Filter::category` (1 %) | ÷ | `Filter::event_types` (1 %) | ÷ |");
    println!("|---|---|---|---|---|---|");
    // Round 0 maps segments and index files; round 1 reads them warm.
    for round in 0..2 {
        let started = Instant::now();
        let mut replayed = 0u64;
        store.read_all_with(0, |_| {
            replayed += 1;
            ControlFlow::Continue(())
        })?;
        let full = started.elapsed();
        let started = Instant::now();
        let by_category = store.read_all_filtered(0, Filter::category("cat42"))?.collect::<Result<Vec<_>, _>>()?.len();
        let category = started.elapsed();
        let started = Instant::now();
        let by_type = store.read_all_filtered(0, Filter::event_types(["Rare"]))?.collect::<Result<Vec<_>, _>>()?.len();
        let types = started.elapsed();
        println!(
            "| {round} | {replayed} events, {} | {by_category} events, {} | 1/{:.0} | {by_type} events, {} | 1/{:.0} |",
            micros(full.as_secs_f64() * 1e6),
            micros(category.as_secs_f64() * 1e6),
            full.as_secs_f64() / category.as_secs_f64(),
            micros(types.as_secs_f64() * 1e6),
            full.as_secs_f64() / types.as_secs_f64(),
        );
    }
    println!(
        "\n{events} events of {} bytes, 10,000 streams in 100 categories, 1,000-event appends; reopened.",
        ctx.data.len()
    );
    store.close()?;
    Ok(())
}
