//! The workloads of issue 5, each run against every selected engine and the raw disk loop.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::args::Args;
use crate::engines::{self, Engine, Res};
use crate::raw::{self, RawFile};
use crate::report::{self, Latencies, Row, count, mb_per_s, micros};

/// What every workload needs.
pub struct Ctx {
    pub args: Args,
    pub base: PathBuf,
    pub data: Bytes,
}

impl Ctx {
    fn run(&self) -> Duration {
        Duration::from_secs_f64(self.args.run_seconds)
    }

    fn engines(&self) -> impl Iterator<Item = &str> {
        crate::args::ENGINES.iter().copied().filter(|e| self.args.has_engine(e))
    }

    /// The engines of workloads that measure files (W3 non-durable, W6 open, W8 bytes on
    /// disk): not the server-backed `postgres`.
    fn file_engines(&self) -> impl Iterator<Item = &str> {
        self.engines().filter(|e| *e != "postgres")
    }

    /// A fresh, empty directory under the run's base directory.
    fn fresh(&self, name: &str) -> Res<PathBuf> {
        let dir = self.base.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

pub fn stream_name(index: usize) -> String {
    format!("stream-{index:06}")
}

/// Outcome of a timed append run.
struct Timed {
    events: u64,
    elapsed: Duration,
    latencies: Latencies,
}

impl Timed {
    fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// What each appending thread or task reports: events, its run's length, latencies.
type Share = Res<(u64, Duration, Latencies)>;

/// The shares of one run added up: all events, the longest run, every latency.
fn total(shares: Vec<Share>) -> Res<Timed> {
    let mut total = Timed { events: 0, elapsed: Duration::ZERO, latencies: Latencies::default() };
    for share in shares {
        let (events, elapsed, latencies) = share?;
        total.events += events;
        total.elapsed = total.elapsed.max(elapsed);
        total.latencies.merge(latencies);
    }
    Ok(total)
}

/// `threads` threads append `batch` events per call, each to its own stream with an exact
/// expected version, until `run` has passed.
fn timed_appends(engine: &dyn Engine, threads: usize, batch: usize, run: Duration) -> Res<Timed> {
    let barrier = Barrier::new(threads);
    let results: Vec<Share> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let barrier = &barrier;
                scope.spawn(move || -> Res<(u64, Duration, Latencies)> {
                    let stream = format!("bench-{thread:03}");
                    let mut expected: Option<u64> = None;
                    let mut latencies = Latencies::with_capacity(1 << 14);
                    let mut events = 0u64;
                    barrier.wait();
                    let start = Instant::now();
                    while start.elapsed() < run {
                        let begin = Instant::now();
                        engine.append(&stream, expected, batch)?;
                        latencies.record(begin.elapsed());
                        expected = Some(expected.map_or(batch as u64 - 1, |v| v + batch as u64));
                        events += batch as u64;
                    }
                    Ok((events, start.elapsed(), latencies))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("append thread panicked".into()))).collect()
    });
    total(results)
}

fn with_engine<T>(ctx: &Ctx, name: &str, dir: &Path, durable: bool, f: impl FnOnce(&dyn Engine) -> Res<T>) -> Res<T> {
    let engine = engines::open(name, dir, durable, &ctx.data)?;
    let result = f(&*engine);
    engine.close()?;
    result
}

fn append_row(engine: &str, group: &str, prefix: Vec<String>, timed: &mut Timed) -> Row {
    let mut cells = prefix;
    cells.push(count(timed.events_per_s()));
    cells.push(micros(timed.latencies.percentile_us(50.0)));
    cells.push(micros(timed.latencies.percentile_us(99.0)));
    Row::new(engine, group, cells, Some(timed.events_per_s()))
}

fn raw_rows(ctx: &Ctx, group: &str, prefix: Vec<String>, events_per_write: usize, durable: bool) -> Res<Vec<Row>> {
    let mut rows = Vec::new();
    let modes: &[(RawFile, &str)] = if durable {
        &[(RawFile::Append, "raw disk"), (RawFile::Preallocated, "raw disk (preallocated)")]
    } else {
        &[(RawFile::Append, "raw disk")]
    };
    for &(mode, label) in modes {
        let path = ctx.base.join("raw.log");
        let run = raw::append_loop(&path, events_per_write, &ctx.data, durable, mode, ctx.run())?;
        let mut timed = Timed { events: run.events, elapsed: run.elapsed, latencies: run.latencies };
        rows.push(append_row(label, group, prefix.clone(), &mut timed));
    }
    Ok(rows)
}

/// Threads of the tokio runtime that runs W1's async tasks.
const ASYNC_RUNTIME_THREADS: usize = 2;

/// `tasks` tasks on a 2-thread tokio runtime each append one event per call with
/// `Store::append_async` to their own stream (exact expected versions), until `run` has
/// passed: W1 as an async application calls it, no thread per waiting append.
fn timed_async_appends(store: &chronicle::Store, data: &Bytes, tasks: usize, run: Duration) -> Res<Timed> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(ASYNC_RUNTIME_THREADS).enable_time().build()?;
    let results: Vec<Share> = runtime.block_on(async {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(tasks));
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let store = store.clone();
                let data = data.clone();
                let barrier = std::sync::Arc::clone(&barrier);
                tokio::spawn(async move {
                    let stream = format!("bench-{task:03}");
                    let mut expected = chronicle::ExpectedVersion::NoStream;
                    let mut latencies = Latencies::with_capacity(1 << 14);
                    let mut events = 0u64;
                    barrier.wait().await;
                    let start = Instant::now();
                    while start.elapsed() < run {
                        let begin = Instant::now();
                        let event = chronicle::NewEvent::new(engines::EVENT_TYPE, data.clone());
                        let written = store.append_async(&stream, expected, [event]).await?;
                        latencies.record(begin.elapsed());
                        expected = chronicle::ExpectedVersion::Exact(written.last_version);
                        events += 1;
                    }
                    Ok::<_, engines::BoxError>((events, start.elapsed(), latencies))
                })
            })
            .collect();
        let mut results = Vec::with_capacity(tasks);
        for handle in handles {
            results.push(handle.await.unwrap_or_else(|_| Err("append task panicked".into())));
        }
        results
    });
    total(results)
}

/// W1 through the async API: `tasks` concurrent tasks on a 2-thread runtime.
fn w1_async_row(ctx: &Ctx, tasks: usize, group: &str) -> Res<Row> {
    eprintln!("W1: chronicle, {tasks} async task(s) on {ASYNC_RUNTIME_THREADS} threads");
    let dir = ctx.fresh("w1-chronicle-async")?;
    let store = chronicle::Store::open(&dir)?;
    let timed = timed_async_appends(&store, &ctx.data, tasks, ctx.run());
    store.close()?;
    std::fs::remove_dir_all(&dir)?;
    let label = format!("chronicle (async, {ASYNC_RUNTIME_THREADS}-thread runtime)");
    Ok(append_row(&label, group, vec![format!("{tasks} tasks")], &mut timed?))
}

/// W1: durable 1-event appends from each thread count, each thread to its own stream.
pub fn w1(ctx: &Ctx) -> Res<Vec<Row>> {
    let mut rows = Vec::new();
    for &threads in &ctx.args.threads {
        let group = threads.to_string();
        for name in ctx.engines() {
            eprintln!("W1: {name}, {threads} thread(s)");
            let dir = ctx.fresh(&format!("w1-{name}"))?;
            let mut timed = with_engine(ctx, name, &dir, true, |e| timed_appends(e, threads, 1, ctx.run()))?;
            rows.push(append_row(name, &group, vec![group.clone()], &mut timed));
            std::fs::remove_dir_all(&dir)?;
        }
        if ctx.args.has_engine("chronicle") {
            rows.push(w1_async_row(ctx, threads, &group)?);
        }
        eprintln!("W1: raw disk, {threads} event(s) per fdatasync");
        rows.extend(raw_rows(ctx, &group, vec![group.clone()], threads, true)?);
    }
    Ok(rows)
}

/// W2: durable appends of `batch_events` events, one thread.
pub fn w2(ctx: &Ctx) -> Res<Vec<Row>> {
    let batch = ctx.args.batch_events;
    let event_bytes = raw::raw_event_bytes("bench-000", ctx.args.data_bytes) as f64;
    let mut rows = Vec::new();
    let mut add = |name: &str, timed: &mut Timed| {
        let mut row = append_row(name, "", vec![], timed);
        row.cells.insert(1, mb_per_s(timed.events as f64 * event_bytes, timed.elapsed.as_secs_f64()));
        rows.push(row);
    };
    for name in ctx.engines() {
        eprintln!("W2: {name}");
        let dir = ctx.fresh(&format!("w2-{name}"))?;
        let mut timed = with_engine(ctx, name, &dir, true, |e| timed_appends(e, 1, batch, ctx.run()))?;
        add(name, &mut timed);
        std::fs::remove_dir_all(&dir)?;
    }
    eprintln!("W2: raw disk");
    for mode in [RawFile::Append, RawFile::Preallocated] {
        let run = raw::append_loop(&ctx.base.join("raw.log"), batch, &ctx.data, true, mode, ctx.run())?;
        let mut timed = Timed { events: run.events, elapsed: run.elapsed, latencies: run.latencies };
        add(if mode == RawFile::Append { "raw disk" } else { "raw disk (preallocated)" }, &mut timed);
    }
    Ok(rows)
}

/// W3: non-durable 1-event appends, one thread.
pub fn w3(ctx: &Ctx) -> Res<Vec<Row>> {
    let mut rows = Vec::new();
    for name in ctx.file_engines() {
        eprintln!("W3: {name}");
        let dir = ctx.fresh(&format!("w3-{name}"))?;
        let mut timed = with_engine(ctx, name, &dir, false, |e| timed_appends(e, 1, 1, ctx.run()))?;
        rows.push(append_row(name, "", vec![], &mut timed));
        std::fs::remove_dir_all(&dir)?;
    }
    if ctx.args.has_engine("chronicle") {
        rows.push(w3_coalesced_row(ctx)?);
    }
    eprintln!("W3: raw disk");
    rows.extend(raw_rows(ctx, "", vec![], 1, false)?);
    Ok(rows)
}

/// W3 with `Options::coalesce_writes(W3_COALESCE_WINDOW)`: appends acknowledged before
/// they are written, many per `write` call.
fn w3_coalesced_row(ctx: &Ctx) -> Res<Row> {
    eprintln!("W3: chronicle, coalesced writes");
    let dir = ctx.fresh("w3-chronicle-coalesced")?;
    let engine = engines::open_chronicle_coalesced(&dir, W3_COALESCE_WINDOW, &ctx.data)?;
    let timed = timed_appends(&*engine, 1, 1, ctx.run());
    engine.close()?;
    std::fs::remove_dir_all(&dir)?;
    let label = format!("chronicle (coalesce_writes {} ms)", W3_COALESCE_WINDOW.as_millis());
    Ok(append_row(&label, "", vec![], &mut timed?))
}

/// The window of W3's coalesced row.
const W3_COALESCE_WINDOW: Duration = Duration::from_millis(1);

/// Rows of the workloads that share the read data set.
#[derive(Default)]
pub struct DataRows {
    pub w4: Vec<Row>,
    pub w5: Vec<Row>,
    pub w6: Vec<Row>,
    pub w8: Vec<Row>,
}

/// Loads `streams × events_per_stream` events, streams interleaved (event v of every
/// stream, then event v + 1 of every stream), 1000 streams per transaction, non-durably;
/// then makes it durable. Returns the load time.
fn load(engine: &dyn Engine, streams: &[String], events_per_stream: usize) -> Res<Duration> {
    let start = Instant::now();
    for version in 0..events_per_stream as u64 {
        for chunk in streams.chunks(1000) {
            engine.load(version, chunk)?;
        }
    }
    engine.flush()?;
    Ok(start.elapsed())
}

fn copy_dir(from: &Path, to: &Path) -> Res<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            // A crash image of a store that had synced everything holds no dirty pages: a
            // process that dies leaves its synced data clean in the page cache. Unsynced, the
            // copy would make the open under test pay for writing the copy back (W6 measured
            // that before 2026-12-02 session 5, docs/performance.md).
            std::fs::File::open(&target)?.sync_all()?;
        }
    }
    Ok(())
}

/// W4, W5, W6 and W8 on one data set per engine (plus the chronicle-only big data set).
pub fn data_workloads(ctx: &Ctx) -> Res<DataRows> {
    let args = &ctx.args;
    let streams: Vec<String> = (0..args.streams).map(stream_name).collect();
    let expected_events = args.dataset_events() as u64;
    let mut out = DataRows::default();
    let group = format!("{} events", count(expected_events as f64));
    let wants_open = args.runs("w6");
    let baseline_hwm_kib = if wants_open { child_open("none", &ctx.base, "", false)?.hwm_kib } else { 0 };
    for name in ctx.engines() {
        let dir = ctx.fresh(&format!("data-{name}"))?;
        let crash_dir = ctx.base.join(format!("data-{name}-crash"));
        eprintln!("data set: loading {expected_events} events into {name}");
        let engine = engines::open(name, &dir, false, &ctx.data)?;
        let load_time = load(&*engine, &streams, args.events_per_stream)?;
        eprintln!("  loaded in {load_time:.2?} ({}/s)", count(expected_events as f64 / load_time.as_secs_f64()));
        // The server-backed engine has no files of its own here: no W6 or W8.
        let files = name != "postgres";
        if wants_open && files {
            // A crash image: everything written and synced, the store still open.
            copy_dir(&dir, &crash_dir)?;
        }
        engine.close()?;
        if files {
            let (apparent, allocated) = report::dir_bytes(&dir);
            out.w8.push(size_row(name, apparent, allocated, expected_events));
        }
        if args.runs("w5") {
            // What a user sees: the store just opened (its maps and caches cold, the page
            // cache warm), the stream reads the first thing it does; then the same reads
            // again on the now warm store.
            let engine = engines::open(name, &dir, false, &ctx.data)?;
            eprintln!("W5: {name}, after a reopen");
            out.w5.push(point_read_row(ctx, name, W5_AFTER_REOPEN, &*engine, &streams)?);
            eprintln!("W5: {name}, warm");
            out.w5.push(point_read_row(ctx, name, W5_WARM, &*engine, &streams)?);
            engine.close()?;
            // The engine's zero-copy visitor, if it has one (chronicle's `read_stream_with`),
            // on a store opened again: rows of their own beside the headline ones.
            let engine = engines::open(name, &dir, false, &ctx.data)?;
            let has_borrowed = engine.read_stream_borrowed(&streams[0]).is_some();
            engine.close()?;
            if has_borrowed {
                let engine = engines::open(name, &dir, false, &ctx.data)?;
                let borrowed_name = format!("{name} (read_stream_with)");
                for pass in [W5_AFTER_REOPEN, W5_WARM] {
                    eprintln!("W5: {borrowed_name}, {pass}");
                    out.w5.push(borrowed_point_read_row(ctx, &borrowed_name, pass, &*engine, &streams)?);
                }
                engine.close()?;
            }
        }
        if args.runs("w4") {
            // Opened again, so that the replay too starts from cold maps.
            let engine = engines::open(name, &dir, false, &ctx.data)?;
            eprintln!("W4: {name}");
            out.w4.push(replay_row(name, &group, &*engine, expected_events)?);
            out.w4.extend(borrowed_replay_row(name, &group, &*engine, expected_events)?);
            engine.close()?;
        }
        if wants_open && files {
            eprintln!("W6: {name}");
            out.w6.push(open_row(ctx, name, &group, &dir, &crash_dir, &streams[0], baseline_hwm_kib)?);
            std::fs::remove_dir_all(&crash_dir)?;
        }
        if !args.keep {
            std::fs::remove_dir_all(&dir)?;
        }
    }
    // Every engine's after-reopen row first, then every warm row.
    out.w5.sort_by_key(|row| row.group != W5_AFTER_REOPEN);
    // The raw log: the same events framed with a 32-byte header, read back with read().
    let raw_path = ctx.base.join("raw-data.log");
    let raw_bytes = raw::write_log(&raw_path, &streams, args.events_per_stream, &ctx.data)?;
    out.w8.push(Row::new(
        "raw disk",
        "",
        vec![format!("{:.1}", raw_bytes as f64 / expected_events as f64), "—".into()],
        Some(raw_bytes as f64 / expected_events as f64),
    ));
    if args.runs("w4") {
        eprintln!("W4: raw disk");
        let begin = Instant::now();
        let (events, _) = raw::replay(&raw_path)?;
        let elapsed = begin.elapsed().as_secs_f64();
        if events != expected_events {
            return Err(format!("raw replay read {events} events, expected {expected_events}").into());
        }
        let rate = events as f64 / elapsed;
        out.w4.push(Row::new("raw disk", &group, vec![group.clone(), count(rate), micros(elapsed * 1e6)], Some(rate)));
    }
    std::fs::remove_file(&raw_path)?;
    if args.big && args.has_engine("chronicle") && ["w4", "w5", "w6"].iter().any(|w| args.runs(w)) {
        big_chronicle(ctx, &mut out, baseline_hwm_kib)?;
    }
    Ok(out)
}

fn size_row(name: &str, apparent: u64, allocated: u64, events: u64) -> Row {
    let per_event = apparent as f64 / events as f64;
    Row::new(
        name,
        "",
        vec![format!("{per_event:.1}"), format!("{:.1}", allocated as f64 / events as f64)],
        Some(per_event),
    )
}

fn replay_row(name: &str, group: &str, engine: &dyn Engine, expected_events: u64) -> Res<Row> {
    let begin = Instant::now();
    let replayed = engine.replay()?;
    replay_figures(name, group, expected_events, replayed, begin.elapsed())
}

/// W4 through the engine's zero-copy visitor, if it has one (chronicle's `read_all_with`).
fn borrowed_replay_row(name: &str, group: &str, engine: &dyn Engine, expected_events: u64) -> Res<Option<Row>> {
    let begin = Instant::now();
    let Some(replayed) = engine.replay_borrowed() else { return Ok(None) };
    let elapsed = begin.elapsed();
    replay_figures(&format!("{name} (read_all_with)"), group, expected_events, replayed?, elapsed).map(Some)
}

fn replay_figures(name: &str, group: &str, expected_events: u64, replayed: (u64, u64), elapsed: Duration) -> Res<Row> {
    let (events, digest) = replayed;
    std::hint::black_box(digest);
    if events != expected_events {
        return Err(format!("{name} replay read {events} events, expected {expected_events}").into());
    }
    let seconds = elapsed.as_secs_f64();
    let rate = events as f64 / seconds;
    Ok(Row::new(name, group, vec![group.to_string(), count(rate), micros(seconds * 1e6)], Some(rate)))
}

/// W5 row group: the reads start right after the store is opened.
const W5_AFTER_REOPEN: &str = "after a reopen";
/// W5 row group: the same reads again, on the store the first pass warmed.
const W5_WARM: &str = "warm (second pass)";

/// W5: whole streams chosen at random (a fixed xorshift sequence, the same for every engine
/// and every pass). `group` (one of `W5_AFTER_REOPEN`, `W5_WARM`) is the row's first cell.
fn point_read_row(ctx: &Ctx, name: &str, group: &str, engine: &dyn Engine, streams: &[String]) -> Res<Row> {
    timed_stream_reads(ctx, name, group, streams, &|stream| engine.read_stream(stream))
}

/// W5 through the engine's zero-copy visitor ([`Engine::read_stream_borrowed`]).
fn borrowed_point_read_row(ctx: &Ctx, name: &str, group: &str, engine: &dyn Engine, streams: &[String]) -> Res<Row> {
    timed_stream_reads(ctx, name, group, streams, &|stream| {
        engine.read_stream_borrowed(stream).unwrap_or_else(|| Err("the engine has no borrowed stream read".into()))
    })
}

/// The W5 sequence of whole-stream reads, each done by `read`, timed into a row.
fn timed_stream_reads(
    ctx: &Ctx,
    name: &str,
    group: &str,
    streams: &[String],
    read: &dyn Fn(&str) -> Res<usize>,
) -> Res<Row> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut latencies = Latencies::with_capacity(ctx.args.stream_reads);
    let begin = Instant::now();
    for _ in 0..ctx.args.stream_reads {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let stream = &streams[(state % streams.len() as u64) as usize];
        let start = Instant::now();
        let events = read(stream)?;
        latencies.record(start.elapsed());
        if events != ctx.args.events_per_stream {
            return Err(
                format!("{name} read {events} events of {stream}, expected {}", ctx.args.events_per_stream).into()
            );
        }
    }
    let rate = latencies.len() as f64 / begin.elapsed().as_secs_f64();
    let cells = vec![
        group.to_string(),
        count(rate),
        micros(latencies.percentile_us(50.0)),
        micros(latencies.percentile_us(99.0)),
    ];
    Ok(Row::new(name, group, cells, Some(rate)))
}

/// What a child process reports after opening a store.
pub struct ChildOpen {
    pub open_us: f64,
    pub hwm_kib: u64,
}

const OPEN_TRIALS: usize = 3;

/// Opens `dir` with `engine` in a fresh process, answers one query, and reports the time
/// and the process's peak RSS. `crashed`: the child exits without closing, so a crash image
/// stays a crash image; the caller hands it a fresh copy per trial.
fn child_open(engine: &str, dir: &Path, probe_stream: &str, crashed: bool) -> Res<ChildOpen> {
    let exe = std::env::current_exe()?;
    let output = std::process::Command::new(exe)
        .args(["--child-open", engine])
        .arg(dir)
        .arg(probe_stream)
        .arg(if crashed { "crash" } else { "clean" })
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(
            format!("child open of {engine} failed: {stdout} {}", String::from_utf8_lossy(&output.stderr)).into()
        );
    }
    let field = |name: &str| -> Option<f64> {
        stdout.split_whitespace().skip_while(|w| *w != name).nth(1).and_then(|v| v.parse().ok())
    };
    match (field("open_us"), field("hwm_kib")) {
        (Some(open_us), Some(hwm)) => Ok(ChildOpen { open_us, hwm_kib: hwm as u64 }),
        _ => Err(format!("child open of {engine}: unexpected output {stdout:?}").into()),
    }
}

/// Runs in the child process: `--child-open ENGINE DIR STREAM clean|crash`.
pub fn child_main(rest: &[String]) -> Res<()> {
    let [engine, dir, stream, mode] = rest else {
        return Err("usage: --child-open ENGINE DIR STREAM clean|crash".into());
    };
    let begin = Instant::now();
    let opened = if engine == "none" {
        None
    } else {
        let opened = engines::open(engine, Path::new(dir), true, &Bytes::new())?;
        std::hint::black_box(opened.probe(stream)?);
        Some(opened)
    };
    let open_us = begin.elapsed().as_secs_f64() * 1e6;
    let (hwm_kib, rss_kib) = report::rss_kib();
    println!("open_us {open_us:.1} hwm_kib {hwm_kib} rss_kib {rss_kib}");
    if mode == "crash" {
        // Leave the image as a crash image: no clean close.
        std::process::exit(0);
    }
    if let Some(opened) = opened {
        opened.close()?;
    }
    Ok(())
}

/// Median open time and peak RSS over `OPEN_TRIALS` child processes.
fn open_trials(name: &str, dir: &Path, crash_master: Option<&Path>, stream: &str) -> Res<(f64, u64)> {
    let mut times = Vec::new();
    let mut hwm = 0;
    for trial in 0..OPEN_TRIALS {
        let opened = match crash_master {
            Some(master) => {
                let copy = master.with_file_name(format!("crash-trial-{trial}"));
                copy_dir(master, &copy)?;
                let opened = child_open(name, &copy, stream, true);
                std::fs::remove_dir_all(&copy)?;
                opened?
            }
            None => child_open(name, dir, stream, false)?,
        };
        times.push(opened.open_us);
        hwm = hwm.max(opened.hwm_kib);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], hwm))
}

fn open_row(ctx: &Ctx, name: &str, group: &str, dir: &Path, crash: &Path, stream: &str, baseline_kib: u64) -> Res<Row> {
    let _ = ctx;
    let (clean_us, clean_hwm) = open_trials(name, dir, None, stream)?;
    let (crash_us, crash_hwm) = open_trials(name, dir, Some(crash), stream)?;
    let mib = |kib: u64| format!("{:.1} MiB", kib.saturating_sub(baseline_kib) as f64 / 1024.0);
    let cells = vec![group.to_string(), micros(clean_us), micros(crash_us), mib(clean_hwm), mib(crash_hwm)];
    Ok(Row::new(name, group, cells, Some(clean_us)))
}

/// The chronicle-only big data set: W4 replay and W6 open at `big_events`.
fn big_chronicle(ctx: &Ctx, out: &mut DataRows, baseline_kib: u64) -> Res<()> {
    let args = &ctx.args;
    let streams: Vec<String> = (0..args.big_events.div_ceil(args.events_per_stream)).map(stream_name).collect();
    let expected_events = (streams.len() * args.events_per_stream) as u64;
    let group = format!("{} events", count(expected_events as f64));
    let dir = ctx.fresh("big-chronicle")?;
    let crash_dir = ctx.base.join("big-chronicle-crash");
    eprintln!("big data set: loading {expected_events} events into chronicle");
    let engine = engines::open("chronicle", &dir, false, &ctx.data)?;
    let load_time = load(&*engine, &streams, args.events_per_stream)?;
    eprintln!("  loaded in {load_time:.2?}");
    if args.runs("w6") {
        copy_dir(&dir, &crash_dir)?;
    }
    engine.close()?;
    if args.runs("w5") {
        // A stream of a big store spans many segments (28 at 10 M events): one index
        // lookup in each.
        eprintln!("W5: chronicle, big");
        let engine = engines::open("chronicle", &dir, false, &ctx.data)?;
        for pass in [W5_AFTER_REOPEN, W5_WARM] {
            out.w5.push(point_read_row(ctx, "chronicle", &format!("{pass}, {group}"), &*engine, &streams)?);
        }
        engine.close()?;
    }
    if args.runs("w4") {
        eprintln!("W4: chronicle, big");
        let engine = engines::open("chronicle", &dir, false, &ctx.data)?;
        out.w4.push(replay_row("chronicle", &group, &*engine, expected_events)?);
        out.w4.extend(borrowed_replay_row("chronicle", &group, &*engine, expected_events)?);
        engine.close()?;
    }
    if args.runs("w6") {
        eprintln!("W6: chronicle, big");
        out.w6.push(open_row(ctx, "chronicle", &group, &dir, &crash_dir, &streams[0], baseline_kib)?);
        std::fs::remove_dir_all(&crash_dir)?;
    }
    if !args.keep {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
