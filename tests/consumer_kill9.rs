//! `kill -9` of a durable consumer at random moments on the real file system: a child
//! process follows the log with `subscribe_durable`, parks some events and acknowledges
//! the rest in small groups, printing (one flushed line each) every delivery, every
//! acknowledgement and park it is about to make and every one that returned. The parent
//! kills it (SIGKILL), reopens the store and checks that
//! - the checkpoint is at or past the last acknowledgement that returned, and is one the
//!   child asked for (it never jumps past an event that was not acknowledged);
//! - every park that returned is listed, and nothing is listed that the child did not park;
//! - the next child's first delivery is the first event after the checkpoint (it resumes
//!   at the first unacknowledged event), and each child's deliveries are gap-free.
//!
//! 40 cycles by default; `CHRONICLE_CONSUMER_KILL9_CYCLES=1000 cargo test --release --test
//! consumer_kill9 -- --nocapture` runs the long version.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chronicle::{ExpectedVersion, Filter, NewEvent, Options, Store};

const CHILD_DIR_VAR: &str = "CHRONICLE_CONSUMER_KILL9_CHILD_DIR";
const CHILD_SEED_VAR: &str = "CHRONICLE_CONSUMER_KILL9_CHILD_SEED";
const CHILD_TEST: &str = "child_consumes_until_killed";
const CONSUMER: &str = "billing";
/// The longest the parent lets a child run before killing it.
const RUN_MS_MAX: u64 = 300;
/// Events the parent appends before each cycle, so that every child has work.
const EVENTS_PER_CYCLE: u64 = 400;

fn options() -> Options {
    // Small segments: the log rolls while the consumer follows it.
    Options::default().segment_bytes(64 << 10)
}

/// Whether the child parks the event at `position` (about 1 in 37) instead of handling it.
fn parks(position: u64) -> bool {
    position % 37 == 5
}

/// A small xorshift generator: the child's ack group sizes, the parent's kill times.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// The child: consumes until killed. Lines: `got P`, `acking P`, `acked P`, `parking P`,
/// `parked P`.
#[test]
#[ignore = "child process of consumer_kill9_cycles, which runs it with --ignored"]
fn child_consumes_until_killed() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR_VAR).expect("run by consumer_kill9_cycles"));
    let seed: u64 = std::env::var(CHILD_SEED_VAR).expect("run by consumer_kill9_cycles").parse().unwrap();
    let store = Store::open_with(&dir, options()).expect("child: open");
    let mut consumer = store.subscribe_durable(CONSUMER, Filter::all()).expect("child: subscribe");
    let mut rng = Rng(seed | 1);
    let mut out = std::io::stdout();
    let mut say = |line: String| {
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    // libtest has printed "test child_consumes_until_killed ... " without a newline.
    say(String::new());
    let mut unacked = 0u64;
    let mut group = 1 + rng.below(8);
    loop {
        let Some(event) = consumer.recv_timeout(Duration::from_secs(10)).expect("child: receive") else {
            continue;
        };
        say(format!("got {}", event.position));
        if parks(event.position) {
            say(format!("parking {}", event.position));
            consumer.park(&event, "handler failed").expect("child: park");
            say(format!("parked {}", event.position));
        }
        unacked += 1;
        if unacked >= group {
            say(format!("acking {}", event.position));
            consumer.ack(event.position).expect("child: ack");
            say(format!("acked {}", event.position));
            unacked = 0;
            group = 1 + rng.below(8);
        }
    }
}

/// What one child printed before it was killed.
#[derive(Debug, Default)]
struct Report {
    got: Vec<u64>,
    acking: BTreeSet<u64>,
    acked: Option<u64>,
    parking: BTreeSet<u64>,
    parked: BTreeSet<u64>,
}

fn parse(lines: impl Iterator<Item = String>) -> Report {
    let mut report = Report::default();
    for line in lines {
        let Some((word, number)) = line.split_once(' ') else { continue };
        let Ok(position) = number.parse::<u64>() else { continue };
        match word {
            "got" => report.got.push(position),
            "acking" => {
                report.acking.insert(position);
            }
            "acked" => report.acked = Some(position),
            "parking" => {
                report.parking.insert(position);
            }
            "parked" => {
                report.parked.insert(position);
            }
            _ => {}
        }
    }
    report
}

/// Starts a child, kills it after `run_ms`, and returns what it printed.
fn run_child(dir: &Path, seed: u64, run_ms: u64) -> Report {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_VAR, dir)
        .env(CHILD_SEED_VAR, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || parse(BufReader::new(stdout).lines().map_while(Result::ok)));
    std::thread::sleep(Duration::from_millis(run_ms));
    // SIGKILL; a child that died on its own (an `expect` above) would show as a bad state.
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the consumer child exited by itself");
    reader.join().unwrap()
}

#[test]
fn consumer_kill9_cycles() {
    let cycles: u64 = std::env::var("CHRONICLE_CONSUMER_KILL9_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x636f_6e73_756d_6572);
    let started = Instant::now();
    let mut appended = 0u64;
    // The checkpoint and parked set as last verified; every park ever attempted.
    let mut checkpoint: Option<u64> = None;
    let mut ever_parking = BTreeSet::new();
    let mut must_be_parked = BTreeSet::new();
    let (mut deliveries, mut acks) = (0usize, 0usize);
    for cycle in 0..cycles {
        let store = Store::open_with(dir.path(), options()).unwrap();
        let events = (0..EVENTS_PER_CYCLE).map(|i| NewEvent::new("Charged", format!("cycle {cycle} event {i}")));
        store.append(&format!("account-{}", cycle % 7), ExpectedVersion::Any, events).unwrap();
        appended += EVENTS_PER_CYCLE;
        store.close().unwrap();

        let run_ms = rng.below(RUN_MS_MAX + 1);
        let report = run_child(dir.path(), rng.below(u64::MAX), run_ms);
        let context = format!("cycle {cycle} (killed after {run_ms} ms, checkpoint before {checkpoint:?})");
        deliveries += report.got.len();
        acks += usize::from(report.acked.is_some());

        // Resumed at the first unacknowledged event, and delivered without a gap.
        let resume_at = checkpoint.map_or(0, |c| c + 1);
        if let Some(&first) = report.got.first() {
            assert_eq!(first, resume_at, "{context}: the consumer resumed elsewhere");
        }
        for pair in report.got.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "{context}: a gap or a repeat in the deliveries");
        }

        let store = Store::open_with(dir.path(), options()).unwrap();
        let now = store.consumer_position(CONSUMER).unwrap();
        if let Some(acked) = report.acked {
            assert!(
                now.is_some_and(|p| p >= acked),
                "{context}: checkpoint {now:?} lost the acknowledgement of {acked}"
            );
        }
        if now != checkpoint {
            let p = now.expect("a checkpoint never disappears");
            assert!(report.acking.contains(&p), "{context}: checkpoint {p} is no acknowledgement the child made");
        }
        assert!(now.is_none_or(|p| p < appended), "{context}: checkpoint {now:?} past the log");
        checkpoint = now;

        ever_parking.extend(report.parking.iter().copied());
        must_be_parked.extend(report.parked.iter().copied());
        let listed: BTreeSet<u64> = store.parked_events(CONSUMER).unwrap().iter().map(|p| p.position).collect();
        assert!(must_be_parked.is_subset(&listed), "{context}: a park that returned is not listed");
        assert!(listed.is_subset(&ever_parking), "{context}: a listed event was never parked");
        assert!(listed.iter().all(|&p| parks(p)), "{context}: a listed event the child would not park");
        store.close().unwrap();
    }
    assert!(acks > 0, "no child acknowledged anything in {cycles} cycles: the children hardly ran");
    eprintln!(
        "consumer kill -9: {cycles} cycles, {deliveries} deliveries, checkpoint {checkpoint:?} of {appended} events, {} parked, {:?}",
        must_be_parked.len(),
        started.elapsed()
    );
}
