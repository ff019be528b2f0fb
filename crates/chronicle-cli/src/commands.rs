//! The commands other than `serve`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use chronicle::{Error, RecordedEvent, Store};
use indicatif::{ProgressBar, ProgressStyle};

use crate::event_json::{self, TABLE_HEADER};
use crate::filter::{Filter, Source, category, read_matching};
use crate::{Failure, Format, Select};

type Outcome = Result<u8, Failure>;

/// Opens `dir` read-only, with the path in the error.
pub(crate) fn open(dir: &Path) -> Result<Store, Failure> {
    Store::open_read_only(dir).map_err(|e| Failure::new(format!("cannot open store {}: {e}", dir.display())))
}

fn out() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

/// Writes a line; a closed stdout (`| head`) ends the command quietly.
fn emit(line: &str) -> Result<(), Failure> {
    let mut out = out();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure { message: String::new(), code: 0 }),
        Err(e) => Err(e.into()),
    }
}

fn print_event(e: &RecordedEvent, format: Format) -> Result<(), Failure> {
    match format {
        Format::Json => emit(&event_json::event(e).to_string()),
        Format::Table => emit(&event_json::table_row(e)),
    }
}

fn first_event(store: &Store) -> chronicle::Result<Option<RecordedEvent>> {
    store.read_all(0)?.next().transpose()
}

fn last_event(store: &Store) -> chronicle::Result<Option<RecordedEvent>> {
    store.read_all_backward(None)?.next().transpose()
}

pub(crate) fn info(dir: &Path) -> Outcome {
    let store = open(dir)?;
    let segments = store.segment_files()?;
    let stats = store.stats();
    let mut events = 0u64;
    store.read_all_with(0, |_| {
        events += 1;
        std::ops::ControlFlow::Continue(())
    })?;
    use chronicle::format_versions as v;
    emit(&format!("store            {}", dir.display()))?;
    emit(&format!(
        "format versions  segment {} index {} stream-checkpoint {} snapshot {} retention {}",
        v::SEGMENT,
        v::INDEX,
        v::STREAM_CHECKPOINT,
        v::SNAPSHOT,
        v::RETENTION
    ))?;
    emit(&format!("segments         {}", segments.len()))?;
    emit(&format!("streams          {} ({} live)", stats.streams, store.streams()?.len()))?;
    emit(&format!("events           {events}"))?;
    emit(&format!("end position     {}", stats.end_position))?;
    emit(&format!("bytes            {}", stats.bytes))?;
    let describe = |e: Option<RecordedEvent>| {
        e.map_or("-".to_owned(), |e| {
            format!(
                "{} {}@{} {} {}",
                e.position,
                e.stream_id,
                e.version,
                e.event_type,
                event_json::rfc3339(e.timestamp)
            )
        })
    };
    emit(&format!("oldest event     {}", describe(first_event(&store)?)))?;
    emit(&format!("newest event     {}", describe(last_event(&store)?)))?;
    for s in &segments {
        let name = s.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let kind = match (s.active, s.compacted_end_position) {
            (true, _) => "active".to_owned(),
            (false, Some(end)) => format!("compacted, replaces up to {end}"),
            (false, None) => "sealed".to_owned(),
        };
        emit(&format!("  {name}  base {:>10}  {:>10} bytes  {kind}", s.base_position, s.bytes))?;
    }
    Ok(0)
}

pub(crate) fn verify(dir: &Path) -> Outcome {
    let store = match Store::open_read_only(dir) {
        Ok(store) => store,
        Err(Error::Corruption { file, offset, reason }) => {
            emit(&format!("{} {offset} {reason}", file.display()))?;
            eprintln!("chronicle: {} is damaged: the store cannot be opened", dir.display());
            return Ok(1);
        }
        Err(error) => return Err(Failure::new(format!("cannot open store {}: {error}", dir.display()))),
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}") {
            bar.set_style(style);
        }
        bar
    });
    let report = store.verify_with_progress(|done, total| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for problem in &report.problems {
        emit(&problem.to_string())?;
    }
    if report.problems_omitted > 0 {
        emit(&format!("... and {} more problems", report.problems_omitted))?;
    }
    let summary = format!(
        "{}: {} segments, {} records, {} bytes, {} index files, {} snapshots checked",
        if report.is_clean() { "clean" } else { "DAMAGED" },
        report.segments,
        report.records,
        report.bytes,
        report.index_files,
        report.snapshots
    );
    eprintln!("{summary}");
    Ok(if report.is_clean() { 0 } else { 1 })
}

fn filter_of(select: &Select) -> Filter {
    Filter { stream: select.stream.clone(), event_type: select.event_type.clone(), ..Filter::default() }
}

/// Largest `--limit` honoured at once for `tail` (it keeps that many events in memory).
const TAIL_LIMIT_MAX: u64 = 100_000;

pub(crate) fn dump(dir: &Path, select: &Select) -> Outcome {
    let store = open(dir)?;
    let filter = filter_of(select);
    let mut remaining = select.limit.unwrap_or(u64::MAX);
    let mut from = select.from_position.unwrap_or(0);
    if select.format == Format::Table {
        emit(TABLE_HEADER)?;
    }
    // In bounded steps: nothing held beyond one step's events.
    while remaining > 0 {
        let step = remaining.min(1000) as usize;
        let (events, next) = read_matching(&store, &filter, from, step, 100_000)?;
        if events.is_empty() && next == from {
            break;
        }
        for e in &events {
            print_event(e, select.format)?;
        }
        remaining -= events.len() as u64;
        if next == from {
            break;
        }
        from = next;
    }
    Ok(0)
}

pub(crate) fn tail(dir: &Path, follow: bool, select: &Select) -> Outcome {
    let store = open(dir)?;
    let filter = filter_of(select);
    let limit = select.limit.unwrap_or(10).min(TAIL_LIMIT_MAX) as usize;
    let floor = select.from_position.unwrap_or(0);
    let end = store.stats().end_position;
    let mut last: Vec<RecordedEvent> = Vec::new();
    if limit > 0 {
        for event in store.read_all_backward(None)? {
            let event = event?;
            if event.position < floor {
                break;
            }
            if filter.matches(&event) {
                last.push(event);
                if last.len() >= limit {
                    break;
                }
            }
        }
    }
    if select.format == Format::Table {
        emit(TABLE_HEADER)?;
    }
    for e in last.iter().rev() {
        print_event(e, select.format)?;
    }
    if !follow {
        return Ok(0);
    }
    let mut source = Source::new(store, filter, end.max(floor));
    exit_on_ctrl_c();
    loop {
        let events = source.poll(1000)?;
        if events.is_empty() {
            std::thread::sleep(source.interval);
            continue;
        }
        for e in &events {
            print_event(e, select.format)?;
        }
    }
}

/// On Ctrl-C (SIGINT), ends the process with status 0 once the line being printed is
/// complete: a thread waits for the signal, then takes the stdout lock (held by `emit` for
/// a whole line) and exits while holding it.
fn exit_on_ctrl_c() {
    let waiter = std::thread::Builder::new().name("ctrl-c".into()).spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        if let Ok(runtime) = runtime
            && runtime.block_on(tokio::signal::ctrl_c()).is_ok()
        {
            let _out = out();
            std::process::exit(0);
        }
    });
    if let Err(error) = waiter {
        eprintln!("chronicle: warning: Ctrl-C will not end tail --follow cleanly: {error}");
    }
}

pub(crate) fn stats(dir: &Path) -> Outcome {
    let store = open(dir)?;
    let stats = store.stats();
    let mut events = 0u64;
    let mut categories: BTreeMap<String, u64> = BTreeMap::new();
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    // Bounded maps: a store with more distinct categories or types than this shows the rest
    // as one line.
    const KEYS_MAX: usize = 10_000;
    let bump = |map: &mut BTreeMap<String, u64>, key: &str| {
        if let Some(count) = map.get_mut(key) {
            *count += 1;
        } else if map.len() < KEYS_MAX {
            map.insert(key.to_owned(), 1);
        } else {
            *map.entry("(other)".to_owned()).or_default() += 1;
        }
    };
    store.read_all_with(0, |e| {
        events += 1;
        bump(&mut categories, category(e.stream_id));
        bump(&mut types, e.event_type);
        std::ops::ControlFlow::Continue(())
    })?;
    emit(&format!("events           {events}"))?;
    emit(&format!("streams          {} ({} live)", stats.streams, store.streams()?.len()))?;
    emit(&format!("segments         {}", stats.segments))?;
    emit(&format!("bytes            {}", stats.bytes))?;
    emit(&format!("end position     {}", stats.end_position))?;
    emit("per category")?;
    for (name, count) in &categories {
        emit(&format!("  {name:<30} {count:>12}"))?;
    }
    emit("per event type")?;
    for (name, count) in &types {
        emit(&format!("  {name:<30} {count:>12}"))?;
    }
    Ok(0)
}

pub(crate) fn compact(dir: &Path) -> Outcome {
    if !dir.is_dir() {
        return Err(Failure::new(format!("cannot compact {}: no such store directory", dir.display())));
    }
    let store = match Store::open(dir) {
        Ok(store) => store,
        Err(Error::Locked { .. }) => {
            return Err(Failure::new(format!(
                "refusing to compact {}: another process holds the store open for writing; compaction needs \
                 the writer (stop it, or call Store::compact in it)",
                dir.display()
            )));
        }
        Err(error) => return Err(Failure::new(format!("cannot open store {}: {error}", dir.display()))),
    };
    let spinner = std::io::stderr().is_terminal().then(|| {
        let spinner = ProgressBar::new_spinner();
        spinner.set_message("compacting");
        spinner.enable_steady_tick(Duration::from_millis(100));
        spinner
    });
    let report = store.compact();
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let report = report?;
    store.close()?;
    emit(&format!(
        "compacted {}: {} segments rewritten, {} events removed, {} -> {} bytes, {} snapshots removed, in {:?}",
        dir.display(),
        report.segments_rewritten,
        report.events_removed,
        report.bytes_before,
        report.bytes_after,
        report.snapshots_removed,
        report.duration
    ))?;
    Ok(0)
}

pub(crate) fn backup(dir: &Path, dest: &Path) -> Outcome {
    let store = open(dir)?;
    let started = std::time::Instant::now();
    let report = store.backup(dest).map_err(|e| Failure::new(format!("backup of {} failed: {e}", dir.display())))?;
    emit(&format!(
        "backup {} written at position {}: {} segments, {} files linked, {} copied ({} bytes), {} snapshots, \
         verified, in {:?}",
        report.path.display(),
        report.end_position,
        report.segments,
        report.files_linked,
        report.files_copied,
        report.bytes_copied,
        report.snapshots,
        started.elapsed()
    ))?;
    Ok(0)
}

pub(crate) fn restore(backup: &Path, dir: &Path) -> Outcome {
    let report = chronicle::restore(backup, dir).map_err(|e| match e {
        Error::InvalidInput { message } => Failure::new(format!("refusing to restore: {message}")),
        other => Failure::new(format!("restore of {} failed: {other}", backup.display())),
    })?;
    emit(&format!(
        "restored {} into {}: {} files, {} bytes, events up to position {}",
        backup.display(),
        report.path.display(),
        report.files,
        report.bytes,
        report.end_position
    ))?;
    Ok(0)
}
