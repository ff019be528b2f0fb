//! Side-by-side benchmark of chronicle against SQLite, fjall, redb and the disk's own limit
//! (issue 5). Prints one markdown table per workload.
//!
//! ```text
//! cargo bench --bench compare -- --quick          # under 2 minutes
//! cargo bench --bench compare                     # full sizes
//! cargo bench --bench compare -- --big            # plus the 10 M-event chronicle runs
//! cargo bench --bench compare -- --help
//! ```
//! Figures depend on the machine and on whatever else runs on it: see docs/performance.md.

mod args;
mod engines;
mod follow;
mod raw;
mod report;
mod w7;
mod workloads;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::engines::Res;
use crate::report::{Row, count, micros, table};
use crate::workloads::Ctx;

fn main() {
    let raw_args: Vec<String> = std::env::args().skip(1).collect();
    if raw_args.first().map(String::as_str) == Some("--child-open") {
        if let Err(error) = workloads::child_main(&raw_args[1..]) {
            eprintln!("child open failed: {error}");
            std::process::exit(1);
        }
        return;
    }
    let args = match args::parse(raw_args) {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            eprintln!("{}", args::USAGE);
            std::process::exit(2);
        }
    };
    if let Err(error) = run(args) {
        eprintln!("benchmark failed: {error}");
        std::process::exit(1);
    }
}

/// 100 bytes (by default) of incompressible data, the same for every engine.
fn event_data(bytes: usize) -> Bytes {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn run(args: args::Args) -> Res<()> {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let base = parent.join(format!("chronicle-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    let ctx = Ctx { data: event_data(args.data_bytes), args, base };
    let started = Instant::now();
    let result = run_all(&ctx);
    if !ctx.args.keep {
        let _ = std::fs::remove_dir_all(&ctx.base);
    }
    eprintln!("total time {:.1?}", started.elapsed());
    result
}

fn run_all(ctx: &Ctx) -> Res<()> {
    let args = &ctx.args;
    print_machine(ctx);
    if args.runs("disk") {
        eprintln!("disk: fdatasync latency and bandwidth");
        let disk = raw::measure_disk(&ctx.base, args.disk_syncs, args.disk_bandwidth_bytes)?;
        print_disk(disk);
    }
    let durable_columns = ["threads", "events/s", "p50", "p99"];
    if args.runs("w1") {
        let rows = workloads::w1(ctx)?;
        table("W1 durable 1-event appends, each thread to its own stream", &durable_columns, &rows, true);
    }
    if args.runs("w2") {
        let rows = workloads::w2(ctx)?;
        let title = format!("W2 durable {}-event appends, 1 thread", args.batch_events);
        table(&title, &["events/s", "MB/s (raw-equivalent)", "p50", "p99"], &rows, true);
    }
    if args.runs("w3") {
        let rows = workloads::w3(ctx)?;
        table("W3 non-durable 1-event appends, 1 thread", &["events/s", "p50", "p99"], &rows, true);
    }
    let data_set = ["w4", "w5", "w6", "w8"].iter().any(|w| args.runs(w));
    let data = if data_set { workloads::data_workloads(ctx)? } else { workloads::DataRows::default() };
    if args.runs("w4") {
        table(
            "W4 replay of the whole log, every field, checksums verified",
            &["log", "events/s", "time"],
            &data.w4,
            true,
        );
    }
    if args.runs("w5") {
        let title = format!(
            "W5 read {} random whole streams of {} events (among {})",
            args.stream_reads, args.events_per_stream, args.streams
        );
        table(&title, &["store", "streams/s", "p50", "p99"], &data.w5, false);
    }
    if args.runs("w6") {
        table(
            "W6 open time (open + one query; median of 3 processes) and peak RSS above an idle process",
            &["store", "clean open", "open after crash", "peak RSS (clean)", "peak RSS (crash)"],
            &data.w6,
            false,
        );
        println!("\nratio: clean-open time ÷ chronicle's (lower is faster); page cache warm.");
    }
    if args.runs("w7") && args.has_engine("chronicle") {
        w7::w7(ctx)?;
    }
    if args.runs("w8") {
        let rows: Vec<Row> = data.w8;
        table(
            "W8 bytes on disk per event (after a clean close)",
            &["apparent bytes/event", "allocated bytes/event"],
            &rows,
            false,
        );
        println!("\nratio: bytes per event ÷ chronicle's; raw disk = 32-byte header + stream id + type + data.");
    }
    if args.runs("follow") && args.has_engine("chronicle") {
        follow::follow(ctx)?;
    }
    Ok(())
}

fn print_machine(ctx: &Ctx) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or_else(|| "unknown".into(), |kib| format!("{:.1} GiB", kib as f64 / (1 << 20) as f64));
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    println!("## chronicle comparison ({} mode)\n", if ctx.args.quick { "quick" } else { "full" });
    println!("- unix time {unix}; {cores} cores ({cpu}); {memory} RAM; Linux {}", kernel.trim());
    println!("- store directory {} on {}", ctx.base.display(), file_system(&ctx.base));
    println!(
        "- event: {} bytes of data, type {:?}, no metadata; timed runs {} s each",
        ctx.args.data_bytes,
        engines::EVENT_TYPE,
        ctx.args.run_seconds
    );
}

/// The file system type and device of the mount holding `path` (from /proc/mounts).
fn file_system(path: &std::path::Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 3 && path.starts_with(fields[1]))
                .then(|| (fields[1].len(), format!("{} ({})", fields[2], fields[0])))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, fs)| fs)
}

fn print_disk(mut disk: raw::DiskFigures) {
    println!("\n### disk\n");
    println!("| measurement | p50 | p99 | figure |");
    println!("|---|---|---|---|");
    for (label, latencies) in
        [("4 KiB append + fdatasync", &mut disk.append_sync), ("4 KiB overwrite + fdatasync", &mut disk.overwrite_sync)]
    {
        let p50 = latencies.percentile_us(50.0);
        let p99 = latencies.percentile_us(99.0);
        println!("| {label} | {} | {} | {} syncs/s at p50 |", micros(p50), micros(p99), count(1e6 / p50));
    }
    println!(
        "| sequential durable write ({} KiB writes + fdatasync) | — | — | {:.0} MB/s |",
        disk.bandwidth_chunk_bytes / 1024,
        disk.bandwidth_bytes_per_s / 1e6
    );
}
