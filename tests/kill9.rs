//! `kill -9` at random moments on the real file system: a child process appends from
//! several threads with `Durability::Sync` and reports every acknowledgement on its stdout
//! (one flushed line each); the parent kills it (SIGKILL), reopens the directory and checks
//! that every acknowledged event is present byte for byte at its version and position, and
//! that the log holds whole batches and gap-free streams.
//!
//! 50 cycles by default; `CHRONICLE_KILL9_CYCLES=10000 cargo test --release --test kill9 --
//! --nocapture` runs the long version.

mod crash_support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chronicle::{AppendResult, Options, Store};
use crash_support::{Ack, Acked, Acks, Rng, Workload, check_store, plan};

const CHILD_DIR_VAR: &str = "CHRONICLE_KILL9_CHILD_DIR";
const CHILD_CYCLE_VAR: &str = "CHRONICLE_KILL9_CHILD_CYCLE";
const CHILD_TEST: &str = "child_appends_until_killed";
/// Batch numbers of cycle `c` are `c * BATCHES_PER_CYCLE + n`.
const BATCHES_PER_CYCLE: u32 = 100_000;
/// A fresh directory every this many cycles keeps each check's cost bounded.
const CYCLES_PER_DIRECTORY: u32 = 10;
/// The longest the parent lets a child run before killing it.
const RUN_MS_MAX: u64 = 250;

fn options() -> Options {
    // Small segments: kills also land in rolls and index writes.
    Options::default().segment_bytes(64 << 10)
}

fn format_ack(acked: &Acked) -> String {
    match acked {
        Acked::Append(ack) => {
            let mut line = format!("ack {}", ack.batch);
            for (stream, r) in ack.streams.iter().zip(&ack.results) {
                line += &format!(
                    " {stream} {} {} {} {}",
                    r.first_version, r.last_version, r.first_position, r.last_position
                );
            }
            line
        }
        Acked::Delete(stream) => format!("deleted {stream}"),
        Acked::Snapshot(stream, version) => format!("snapshot {stream} {version}"),
    }
}

fn parse_ack(line: &str) -> Option<Acked> {
    if let Some(stream) = line.strip_prefix("deleted ") {
        return Some(Acked::Delete(stream.to_owned()));
    }
    if let Some(rest) = line.strip_prefix("snapshot ") {
        let (stream, version) = rest.split_once(' ')?;
        return Some(Acked::Snapshot(stream.to_owned(), version.parse().ok()?));
    }
    let mut words = line.strip_prefix("ack ")?.split(' ');
    let batch = words.next()?.parse().ok()?;
    let rest: Vec<&str> = words.collect();
    if rest.is_empty() || !rest.len().is_multiple_of(5) {
        return None;
    }
    let mut ack = Ack { batch, streams: Vec::new(), results: Vec::new() };
    for part in rest.chunks(5) {
        let number = |i: usize| part[i].parse::<u64>().ok();
        ack.streams.push(part[0].to_owned());
        ack.results.push(AppendResult {
            first_version: number(1)?,
            last_version: number(2)?,
            first_position: number(3)?,
            last_position: number(4)?,
        });
    }
    Some(Acked::Append(ack))
}

/// The child: appends until killed, printing each acknowledgement as one flushed line.
/// Run only by `kill9_cycles` (with the directory in the environment).
#[test]
#[ignore = "child process of kill9_cycles, which runs it with --ignored"]
fn child_appends_until_killed() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR_VAR).expect("run by kill9_cycles"));
    let cycle: u32 = std::env::var(CHILD_CYCLE_VAR).expect("run by kill9_cycles").parse().unwrap();
    let store = Store::open_with(&dir, options()).expect("child: open");
    // Far more ops than a child lives for; batch numbers stay within the cycle's range.
    let threads = plan(4, (BATCHES_PER_CYCLE / 5) as usize, u64::from(cycle));
    let stdout = Mutex::new(std::io::stdout());
    let print = |ack: &Acked| {
        let mut out = stdout.lock().unwrap();
        writeln!(out, "{}", format_ack(ack)).unwrap();
        out.flush().unwrap();
    };
    let log = Workload::new(&store, cycle * BATCHES_PER_CYCLE, Some(&print)).run(&threads);
    assert!(log.violations.is_empty(), "{:#?}", log.violations);
}

/// Starts a child, kills it after `run_ms`, and returns the acknowledgements it printed.
fn run_child(dir: &Path, cycle: u32, run_ms: u64) -> Vec<Acked> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_VAR, dir)
        .env(CHILD_CYCLE_VAR, cycle.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).filter_map(|line| parse_ack(&line)).collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_millis(run_ms));
    // SIGKILL; the child may also have died on its own (the reopen check then tells).
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(!status.success(), "cycle {cycle}: the child finished its workload before it was killed");
    reader.join().unwrap()
}

#[test]
fn kill9_cycles() {
    let cycles: u32 = std::env::var("CHRONICLE_KILL9_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let mut rng = Rng::new(0x6b69_6c6c);
    let started = Instant::now();
    let mut total_acks = 0usize;
    let mut events_checked = 0usize;
    let mut directory: Option<tempfile::TempDir> = None;
    let mut acked = Acks::default();
    for cycle in 0..cycles {
        if cycle % CYCLES_PER_DIRECTORY == 0 {
            directory = Some(tempfile::tempdir().unwrap());
            acked = Acks::default();
        }
        let dir = directory.as_ref().unwrap().path();
        // Each child first spends some time starting up and opening the store; kills land
        // before, during and after that.
        let run_ms = rng.below(RUN_MS_MAX + 1);
        let acks = run_child(dir, cycle, run_ms);
        total_acks += acks.len();
        for ack in acks {
            acked.push(ack);
        }
        let store = Store::open_with(dir, options())
            .unwrap_or_else(|e| panic!("cycle {cycle} (killed after {run_ms} ms): reopen failed: {e}"));
        let recovered =
            check_store(&store, &acked).unwrap_or_else(|e| panic!("cycle {cycle} (killed after {run_ms} ms): {e}"));
        events_checked += recovered.events;
        store.close().unwrap();
    }
    assert!(
        total_acks >= cycles as usize,
        "only {total_acks} acknowledgements in {cycles} cycles: the children hardly ran"
    );
    eprintln!(
        "kill -9: {cycles} cycles, {total_acks} acknowledgements, {events_checked} recovered events checked, {:?}",
        started.elapsed()
    );
}
