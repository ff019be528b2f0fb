//! W7 (chronicle only): durable append latency while `Store::compact()` rewrites sealed
//! segments, against the same appends on the same store just before (target: p99 during
//! compaction ≤ 2× idle).
//!
//! The store holds the read data set's shape (`--streams` × `--events-per-stream`, streams
//! interleaved) in 4 MiB segments, then every other stream is deleted, so compaction
//! rewrites every sealed segment and drops about half of its bytes.

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chronicle::{CompactionReport, Durability, ExpectedVersion, NewEvent, Options, Store, StreamAppend};

use crate::engines::{EVENT_TYPE, Res};
use crate::report::{Latencies, micros};
use crate::workloads::{Ctx, stream_name};

const SEGMENT_BYTES: u64 = 4 << 20;

pub fn w7(ctx: &Ctx) -> Res<()> {
    let mut lines = Vec::new();
    for &threads in &ctx.args.threads {
        eprintln!("W7: chronicle, {threads} thread(s)");
        lines.push(measure(ctx, threads)?);
    }
    println!("\n### W7 durable 1-event append latency while a compaction runs (chronicle)\n");
    println!(
        "| threads | idle p50 | idle p99 | during p50 | during p99 | p99 during ÷ idle | appends during | compaction |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    println!(
        "\nstore: {} × {} events in {} MiB segments, every other stream deleted before compacting.",
        ctx.args.streams,
        ctx.args.events_per_stream,
        SEGMENT_BYTES >> 20
    );
    Ok(())
}

fn measure(ctx: &Ctx, threads: usize) -> Res<String> {
    let dir = ctx.base.join(format!("w7-{threads}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    prepare(ctx, &dir)?;
    let store = Store::open_with(&dir, Options::default().durability(Durability::Sync).segment_bytes(SEGMENT_BYTES))?;
    let stop = AtomicBool::new(false);
    let idle_run = Duration::from_secs_f64(ctx.args.run_seconds);
    // Idle: the appenders alone, for the run length.
    let mut idle = appenders(&store, &ctx.data, threads, "idle", &stop, Some(idle_run))?;
    // During: the same appenders until the compaction returns.
    let (during, report) = std::thread::scope(|scope| -> Res<(Latencies, CompactionReport)> {
        let appending = scope.spawn(|| appenders(&store, &ctx.data, threads, "during", &stop, None));
        let report = store.compact();
        stop.store(true, Ordering::Release);
        let during = appending.join().map_err(|_| "appender panicked")??;
        Ok((during, report?))
    })?;
    let mut during = during;
    store.close()?;
    std::fs::remove_dir_all(&dir)?;
    let idle_p99 = idle.percentile_us(99.0);
    let during_p99 = during.percentile_us(99.0);
    let ratio = if idle_p99 > 0.0 { format!("{:.2}×", during_p99 / idle_p99) } else { "—".into() };
    Ok(format!(
        "| {threads} | {} | {} | {} | {} | {ratio} | {} | {} segments, {:.1} → {:.1} MB in {} |",
        micros(idle.percentile_us(50.0)),
        micros(idle_p99),
        micros(during.percentile_us(50.0)),
        micros(during_p99),
        during.len(),
        report.segments_rewritten,
        report.bytes_before as f64 / 1e6,
        report.bytes_after as f64 / 1e6,
        micros(report.duration.as_secs_f64() * 1e6),
    ))
}

/// Loads the data set non-durably, deletes every other stream, closes.
fn prepare(ctx: &Ctx, dir: &std::path::Path) -> Res<()> {
    let options = Options::default().durability(Durability::Buffered).segment_bytes(SEGMENT_BYTES);
    let store = Store::open_with(dir, options)?;
    let streams: Vec<String> = (0..ctx.args.streams).map(stream_name).collect();
    for version in 0..ctx.args.events_per_stream as u64 {
        let expected = version.checked_sub(1).map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        for chunk in streams.chunks(1000) {
            store.append_multi(
                chunk
                    .iter()
                    .map(|s| StreamAppend::new(s.as_str(), expected, [NewEvent::new(EVENT_TYPE, ctx.data.clone())])),
            )?;
        }
    }
    for stream in streams.iter().step_by(2) {
        store.delete_stream(stream, ExpectedVersion::Any)?;
    }
    store.close()?;
    Ok(())
}

/// `threads` threads append one event at a time to their own streams until `run` passed
/// (`Some`) or `stop` is set (`None`).
fn appenders(
    store: &Store,
    data: &Bytes,
    threads: usize,
    label: &str,
    stop: &AtomicBool,
    run: Option<Duration>,
) -> Res<Latencies> {
    let barrier = Barrier::new(threads);
    let results: Vec<Res<Latencies>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let barrier = &barrier;
                scope.spawn(move || -> Res<Latencies> {
                    let stream = format!("w7-{label}-{thread:03}");
                    let mut expected = ExpectedVersion::NoStream;
                    let mut latencies = Latencies::with_capacity(1 << 12);
                    barrier.wait();
                    let start = Instant::now();
                    while run.map_or(!stop.load(Ordering::Acquire), |run| start.elapsed() < run) {
                        let begin = Instant::now();
                        let result = store.append(&stream, expected, [NewEvent::new(EVENT_TYPE, data.clone())])?;
                        latencies.record(begin.elapsed());
                        expected = ExpectedVersion::Exact(result.last_version);
                    }
                    Ok(latencies)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("appender panicked".into()))).collect()
    });
    let mut all = Latencies::default();
    for result in results {
        all.merge(result?);
    }
    Ok(all)
}
