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

/// Thread names of the benchmark's own threads, so that the CPU split can tell them apart
/// from the store's (`chronicle-writer`, ...).
const APPENDER_THREAD: &str = "follow-append";
const SUBSCRIBER_THREAD: &str = "follow-sub";

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
    let mut splits = Vec::new();
    for (durability, threads) in [(Durability::Sync, 16), (Durability::Buffered, 1)] {
        for (label, filter) in [("all events", Filter::all()), ("1 % (one category)", Filter::category("cat7"))] {
            let (mut none, mut with, mut ratios, mut deliveries) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for round in 0..ctx.args.follow_rounds {
                eprintln!("follow: append {durability:?} {threads} threads, {label}, round {round}");
                let (alone, _, cpu_alone) = append_run(ctx, durability, threads, 0, &filter)?;
                let (followed, delivered, cpu_followed) = append_run(ctx, durability, threads, SUBSCRIBERS, &filter)?;
                none.push(alone);
                with.push(followed);
                ratios.push(followed / alone);
                deliveries.push(delivered);
                splits.push((format!("{durability:?}, {threads} | {label} | round {round}"), cpu_alone, cpu_followed));
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
    cpu_table(&splits);
    Ok(())
}

/// CPU seconds per second of run (1.0 = one core) and context switches per second, by
/// thread group, of one append run; read from `/proc/self/task/*/{schedstat,status}`.
#[derive(Debug, Default, Clone, Copy)]
struct CpuSplit {
    appenders: f64,
    writer: f64,
    subscribers: f64,
    other: f64,
    /// Voluntary context switches per second, all threads.
    voluntary_switches: f64,
    /// Involuntary (preempted) context switches per second, all threads.
    involuntary_switches: f64,
}

fn cpu_table(splits: &[(String, CpuSplit, CpuSplit)]) {
    if splits.is_empty() {
        return;
    }
    println!("\n### Following: CPU by thread group, 0 vs {SUBSCRIBERS} subscribers (cores busy; context switches/s)\n");
    println!(
        "| durability, writer threads | subscribers' filter | round | subscribers | appenders | `chronicle-writer` | subscribers | other | voluntary cs/s | involuntary cs/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (case, alone, followed) in splits {
        for (subscribers, split) in [(0, alone), (SUBSCRIBERS, followed)] {
            println!(
                "| {case} | {subscribers} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
                split.appenders,
                split.writer,
                split.subscribers,
                split.other,
                count(split.voluntary_switches),
                count(split.involuntary_switches),
            );
        }
    }
    println!(
        "\nfrom `/proc/self/task/*/schedstat` (time on a CPU) and `status` (context switches) at the start and the end of each timed run; 2.00 = both cores of this machine."
    );
}

/// Per thread: name, nanoseconds on a CPU, voluntary and involuntary context switches.
type ThreadTimes = std::collections::HashMap<u64, (String, u64, u64, u64)>;

fn thread_times() -> ThreadTimes {
    let mut times = ThreadTimes::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return times;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u64>().ok()) else {
            continue;
        };
        let read = |file: &str| std::fs::read_to_string(task.path().join(file)).ok();
        let (Some(comm), Some(schedstat), Some(status)) = (read("comm"), read("schedstat"), read("status")) else {
            continue;
        };
        // schedstat: "on-CPU ns, waiting-to-run ns, timeslices"; exact, unlike stat's
        // utime/stime, which are sampled at the tick and miss threads that run briefly.
        let on_cpu_ns = schedstat.split_whitespace().next().and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        let switches = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        times.insert(
            tid,
            (
                comm.trim_end().to_owned(),
                on_cpu_ns,
                switches("voluntary_ctxt_switches:"),
                switches("nonvoluntary_ctxt_switches:"),
            ),
        );
    }
    times
}

fn cpu_split(before: &ThreadTimes, after: &ThreadTimes, seconds: f64) -> CpuSplit {
    let mut split = CpuSplit::default();
    for (tid, (name, on_cpu_ns, voluntary, involuntary)) in after {
        let (_, on_cpu_ns0, voluntary0, involuntary0) = before.get(tid).cloned().unwrap_or_default();
        let cores = on_cpu_ns.saturating_sub(on_cpu_ns0) as f64 / 1e9 / seconds;
        match name.as_str() {
            APPENDER_THREAD => split.appenders += cores,
            SUBSCRIBER_THREAD => split.subscribers += cores,
            // The kernel keeps 15 bytes of a thread's name.
            "chronicle-write" => split.writer += cores,
            _ => split.other += cores,
        }
        split.voluntary_switches += voluntary.saturating_sub(voluntary0) as f64 / seconds;
        split.involuntary_switches += involuntary.saturating_sub(involuntary0) as f64 / seconds;
    }
    split
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// `subscribers` threads follow the log (each with `filter`) while `threads` writers append
/// 1-event batches; returns appends/s, deliveries/s and where the CPU went.
fn append_run(
    ctx: &Ctx,
    durability: Durability,
    threads: usize,
    subscribers: usize,
    filter: &Filter,
) -> Res<(f64, f64, CpuSplit)> {
    let dir = tempfile::tempdir_in(&ctx.base)?;
    let store = Store::open_with(dir.path(), Options::default().durability(durability))?;
    let delivered = Arc::new(AtomicU64::new(0));
    let mut followers = Vec::new();
    for _ in 0..subscribers {
        let mut subscription = store.subscribe(0, filter.clone())?;
        let stop = subscription.stop_handle();
        let delivered = Arc::clone(&delivered);
        let handle = thread::Builder::new().name(SUBSCRIBER_THREAD.into()).spawn(move || -> Res<()> {
            let mut n = 0u64;
            for event in subscription.by_ref() {
                std::hint::black_box(event?);
                n += 1;
            }
            delivered.fetch_add(n, Ordering::Relaxed);
            Ok(())
        })?;
        followers.push((stop, handle));
    }
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads + 1));
    let writers: Vec<thread::JoinHandle<Res<u64>>> = (0..threads)
        .map(|t| {
            let (store, done, start, data) = (store.clone(), Arc::clone(&done), Arc::clone(&start), ctx.data.clone());
            thread::Builder::new().name(APPENDER_THREAD.into()).spawn(move || -> Res<u64> {
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
        .collect::<Result<_, _>>()?;
    start.wait();
    let began = Instant::now();
    let times_before = thread_times();
    thread::sleep(Duration::from_secs_f64(ctx.args.run_seconds));
    let cpu = cpu_split(&times_before, &thread_times(), began.elapsed().as_secs_f64());
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
    Ok((appended as f64 / elapsed, delivered.load(Ordering::Relaxed) as f64 / elapsed, cpu))
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
    println!(
        "| round | `read_all_with` | `Filter::category` (1 %) | ÷ | `Filter::event_types` (1 %) | ÷ | category, `read_all_filtered_with` | ÷ | event types, `read_all_filtered_with` | ÷ |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
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
        // The same two reads through the borrowed visitor (no event built), as `read_all_with`.
        let visited = |filter: Filter| -> Res<(u64, std::time::Duration)> {
            let started = Instant::now();
            let mut count = 0u64;
            store.read_all_filtered_with(0, filter, |_| {
                count += 1;
                ControlFlow::Continue(())
            })?;
            Ok((count, started.elapsed()))
        };
        let (category_visited, category_with) = visited(Filter::category("cat42"))?;
        let (types_visited, types_with) = visited(Filter::event_types(["Rare"]))?;
        let cell = |events: u64, time: std::time::Duration| {
            format!(
                "{events} events, {} | 1/{:.0}",
                micros(time.as_secs_f64() * 1e6),
                full.as_secs_f64() / time.as_secs_f64()
            )
        };
        println!(
            "| {round} | {replayed} events, {} | {} | {} | {} | {} |",
            micros(full.as_secs_f64() * 1e6),
            cell(by_category as u64, category),
            cell(by_type as u64, types),
            cell(category_visited, category_with),
            cell(types_visited, types_with),
        );
    }
    println!(
        "\n{events} events of {} bytes, 10,000 streams in 100 categories, 1,000-event appends; reopened.",
        ctx.data.len()
    );
    store.close()?;
    Ok(())
}
