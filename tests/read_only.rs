//! `Store::open_read_only`: a reader that never writes, follows a writer in this process or
//! another one (a re-executed child of this test binary), through rolls, compactions,
//! kill -9 and restarts, and never returns a torn commit group.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chronicle::{Error, ExpectedVersion, NewEvent, Options, RecordedEvent, Retention, Store};

const CHILD_DIR_VAR: &str = "CHRONICLE_RO_CHILD_DIR";
const CHILD_FIRST_VAR: &str = "CHRONICLE_RO_CHILD_FIRST";
const CHILD_COUNT_VAR: &str = "CHRONICLE_RO_CHILD_COUNT";
const CHILD_TEST: &str = "child_writes_for_the_reader";
const WAIT_MAX: Duration = Duration::from_secs(60);

fn options() -> Options {
    // Small segments: the reader sees many rolls.
    Options::default().segment_bytes(16 << 10)
}

/// Every file in `dir` with its bytes.
fn snapshot_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .collect()
}

fn all(store: &Store) -> Vec<RecordedEvent> {
    store.read_all(0).unwrap().collect::<Result<_, _>>().unwrap()
}

#[test]
fn reads_a_closed_store_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open_with(dir.path(), options()).unwrap();
    for i in 0..300u32 {
        writer
            .append(&format!("s-{}", i % 7), ExpectedVersion::Any, [NewEvent::new("T", i.to_le_bytes().to_vec())])
            .unwrap();
    }
    writer.save_snapshot("s-1", 3, b"state").unwrap();
    writer.delete_stream("s-2", ExpectedVersion::Any).unwrap();
    let expected = all(&writer);
    writer.close().unwrap();
    std::fs::remove_file(dir.path().join("LOCK")).unwrap();
    // Damage an index file: a writer would rewrite it, a reader must rebuild it in memory.
    let idx = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "idx"))
        .unwrap();
    let mut bytes = std::fs::read(&idx).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&idx, &bytes).unwrap();
    let before = snapshot_dir(dir.path());

    let reader = Store::open_read_only(dir.path()).unwrap();
    assert!(reader.is_read_only());
    assert_eq!(all(&reader), expected);
    for s in 0..7 {
        let stream = format!("s-{s}");
        if s == 2 {
            assert!(matches!(reader.read_stream(&stream, 0), Err(Error::StreamDeleted { .. })));
            continue;
        }
        let versions: Vec<u64> = reader.read_stream(&stream, 0).unwrap().map(|e| e.unwrap().version).collect();
        assert_eq!(versions, (0..versions.len() as u64).collect::<Vec<_>>());
        assert!(!versions.is_empty());
    }
    assert_eq!(reader.load_snapshot("s-1").unwrap().unwrap().version, 3);
    assert_eq!(reader.streams().unwrap().len(), 6);
    let refused = |e: Result<(), Error>| assert!(matches!(e, Err(Error::ReadOnly { .. })), "{e:?}");
    refused(reader.append("s-1", ExpectedVersion::Any, [NewEvent::new("T", "")]).map(|_| ()));
    refused(
        reader
            .append_multi([chronicle::StreamAppend::new("x", ExpectedVersion::Any, [NewEvent::new("T", "")])])
            .map(|_| ()),
    );
    refused(reader.delete_stream("s-1", ExpectedVersion::Any));
    refused(reader.save_snapshot("s-1", 3, b"x"));
    refused(reader.set_stream_retention("s-1", Retention::MaxCount(1)));
    refused(reader.sync());
    refused(reader.seal());
    refused(reader.compact().map(|_| ()));
    reader.refresh().unwrap();
    reader.close().unwrap();
    assert_eq!(snapshot_dir(dir.path()), before, "the read-only store changed the directory");
    assert!(!dir.path().join("LOCK").exists());
}

#[test]
fn missing_directory_is_an_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    assert!(matches!(Store::open_read_only(&missing), Err(Error::Io { .. })));
    assert!(!missing.exists());
    let empty = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(all(&empty).len(), 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_torn_tail_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(dir.path()).unwrap();
    writer.append("s", ExpectedVersion::Any, [NewEvent::new("A", "1"), NewEvent::new("B", "2")]).unwrap();
    writer.close().unwrap();
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let whole = std::fs::read(&segment).unwrap();
    // A second commit group of two records, cut at every offset inside it.
    let writer = Store::open(dir.path()).unwrap();
    writer.append("s", ExpectedVersion::Any, [NewEvent::new("C", "3"), NewEvent::new("D", "4")]).unwrap();
    writer.close().unwrap();
    let longer = std::fs::read(&segment).unwrap();
    assert!(longer.len() > whole.len());
    for cut in (whole.len()..longer.len()).step_by(7) {
        std::fs::write(&segment, &longer[..cut]).unwrap();
        let reader = Store::open_read_only(dir.path()).unwrap();
        let types: Vec<String> = all(&reader).into_iter().map(|e| e.event_type).collect();
        assert_eq!(types, ["A", "B"], "cut at {cut}");
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), cut as u64);
        // The rest of the group arrives: the reader sees it whole.
        std::fs::write(&segment, &longer).unwrap();
        reader.refresh().unwrap();
        let types: Vec<String> = all(&reader).into_iter().map(|e| e.event_type).collect();
        assert_eq!(types, ["A", "B", "C", "D"], "cut at {cut}, then completed");
    }
}

#[test]
fn follows_a_writer_in_this_process_through_rolls_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open_with(dir.path(), options()).unwrap();
    writer.set_stream_retention("trim", Retention::MaxCount(2)).unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    let mut seen = 0u64;
    let mut held = None;
    for round in 0..30u32 {
        for i in 0..20u32 {
            let stream = if i % 4 == 0 { "trim".to_owned() } else { format!("keep-{}", i % 3) };
            writer.append(&stream, ExpectedVersion::Any, [NewEvent::new("T", format!("{round}-{i}"))]).unwrap();
        }
        if round % 5 == 4 {
            writer.compact().unwrap();
        }
        if round == 10 {
            // An iterator over segments that compaction will remove.
            held = Some(reader.read_all(0).unwrap());
        }
        reader.refresh().unwrap();
        let new: Vec<RecordedEvent> = reader.read_all(seen).unwrap().collect::<Result<_, _>>().unwrap();
        for e in &new {
            assert!(e.position >= seen);
            seen = e.position + 1;
        }
        assert_eq!(reader.stream_version("keep-1").unwrap(), writer.stream_version("keep-1").unwrap());
    }
    assert!(held.unwrap().all(|e| e.is_ok()), "an iterator over compacted-away segments failed");
    writer.compact().unwrap();
    reader.refresh().unwrap();
    assert_eq!(all(&reader), all(&writer));
    for stream in ["trim", "keep-0", "keep-1", "keep-2"] {
        let a: Vec<_> = reader.read_stream(stream, 0).unwrap().map(|e| e.unwrap()).collect();
        let b: Vec<_> = writer.read_stream(stream, 0).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(a, b, "{stream}");
    }
}

/// The child: appends batches `FIRST..FIRST+COUNT` (each to one of a few streams, with a
/// compaction every 50), printing `ack N` after each; then `done`, and sleeps until killed
/// if COUNT is 0 (endless).
#[test]
#[ignore = "child process of reads_while_another_process_writes"]
fn child_writes_for_the_reader() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR_VAR).expect("run by the parent test"));
    let first: u64 = std::env::var(CHILD_FIRST_VAR).unwrap().parse().unwrap();
    let count: u64 = std::env::var(CHILD_COUNT_VAR).unwrap().parse().unwrap();
    let store = Store::open_with(&dir, options()).expect("child: open");
    store.set_stream_retention("trim", Retention::MaxCount(3)).unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    let mut batch = first;
    while count == 0 || batch < first + count {
        let stream = if batch.is_multiple_of(5) { "trim".to_owned() } else { format!("s-{}", batch % 3) };
        let events = (0..1 + batch % 3).map(|j| NewEvent::new("T", format!("{batch}-{j}")));
        store.append(&stream, ExpectedVersion::Any, events).unwrap();
        writeln!(out, "ack {batch}").unwrap();
        out.flush().unwrap();
        if batch % 50 == 49 {
            store.compact().unwrap();
        }
        batch += 1;
        if count == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    store.close().unwrap();
    writeln!(out, "done").unwrap();
    out.flush().unwrap();
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns a writing child; its stdout lines arrive on the channel.
fn spawn_child(dir: &Path, first: u64, count: u64) -> (ChildGuard, mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_VAR, dir)
        .env(CHILD_FIRST_VAR, first.to_string())
        .env(CHILD_COUNT_VAR, count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    (ChildGuard(child), lines)
}

/// Skips the test harness's lines up to the child's `ready`.
fn wait_ready(lines: &mpsc::Receiver<String>) {
    // The harness prints `test NAME ... ` before the child's first line.
    while !lines.recv_timeout(WAIT_MAX).unwrap().ends_with("ready") {}
}

/// The events of batch `n` as the child writes them.
fn batch_data(n: u64) -> Vec<String> {
    (0..1 + n % 3).map(|j| format!("{n}-{j}")).collect()
}

/// Reads everything new since `from` and checks it: positions increase, every batch's
/// events are consecutive and whole (a torn group would show part of one).
fn read_new(reader: &Store, from: &mut u64, batches: &mut BTreeMap<u64, Vec<String>>) {
    reader.refresh().unwrap();
    let mut last = None;
    for event in reader.read_all(*from).unwrap() {
        let event = event.unwrap();
        assert!(last.is_none_or(|l| event.position > l));
        last = Some(event.position);
        *from = event.position + 1;
        let data = String::from_utf8(event.data.to_vec()).unwrap();
        let batch: u64 = data.split('-').next().unwrap().parse().unwrap();
        batches.entry(batch).or_default().push(data);
    }
    // Every batch seen is whole once the next one is seen (batches are one group each).
    if let Some((&newest, _)) = batches.iter().next_back() {
        for (&n, data) in batches.range(..newest) {
            if !n.is_multiple_of(5) {
                assert_eq!(data, &batch_data(n), "batch {n} torn or duplicated");
            }
        }
        if !newest.is_multiple_of(5) {
            assert_eq!(batches[&newest], batch_data(newest), "newest batch {newest} is torn");
        }
    }
}

/// Waits for `line` from a child, reading new events meanwhile; returns the acked batches.
fn follow_until(
    lines: &mpsc::Receiver<String>,
    until: impl Fn(&str) -> bool,
    reader: &Store,
    from: &mut u64,
    batches: &mut BTreeMap<u64, Vec<String>>,
) -> Vec<u64> {
    let deadline = Instant::now() + WAIT_MAX;
    let mut acked = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "timed out waiting for the child");
        match lines.recv_timeout(Duration::from_millis(5)) {
            Ok(line) => {
                if let Some(n) = line.strip_prefix("ack ") {
                    acked.push(n.parse().unwrap());
                }
                if until(&line) {
                    return acked;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return acked,
        }
        read_new(reader, from, batches);
    }
}

/// Polls until every batch in `acked` is visible, except batches of the `trim` stream
/// (every fifth): its retention keeps 3 events, so a reader that falls behind under load
/// may legitimately never see an old one.
fn wait_visible(reader: &Store, acked: &[u64], from: &mut u64, batches: &mut BTreeMap<u64, Vec<String>>) {
    let deadline = Instant::now() + WAIT_MAX;
    while !acked.iter().filter(|n| !n.is_multiple_of(5)).all(|n| batches.contains_key(n)) {
        assert!(Instant::now() < deadline, "acknowledged batches never became visible to the reader");
        std::thread::sleep(Duration::from_millis(5));
        read_new(reader, from, batches);
    }
}

#[test]
fn reads_while_another_process_writes_crashes_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut from = 0u64;
    let mut batches = BTreeMap::new();

    // 1. A writer that runs to its end, rolling and compacting while the reader follows.
    let (child, lines) = spawn_child(dir.path(), 0, 400);
    wait_ready(&lines);
    let reader = Store::open_read_only(dir.path()).unwrap();
    let acked = follow_until(&lines, |l| l == "done", &reader, &mut from, &mut batches);
    drop(child);
    assert_eq!(acked.len(), 400);
    wait_visible(&reader, &acked, &mut from, &mut batches);

    // 2. A writer killed with SIGKILL in the middle of its appends.
    let (mut child, lines) = spawn_child(dir.path(), 1000, 0);
    wait_ready(&lines);
    let acked = follow_until(&lines, |l| l == "ack 1150", &reader, &mut from, &mut batches);
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    wait_visible(&reader, &acked, &mut from, &mut batches);

    // 3. It restarts (recovery cuts any torn tail) and goes on; the reader keeps up.
    let (child, lines) = spawn_child(dir.path(), 2000, 120);
    let acked = follow_until(&lines, |l| l == "done", &reader, &mut from, &mut batches);
    drop(child);
    wait_visible(&reader, &acked, &mut from, &mut batches);

    // The reader's whole view equals what a writer opening the store now reads.
    reader.refresh().unwrap();
    let seen = all(&reader);
    let writer = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(seen, all(&writer));
    for stream in ["s-0", "s-1", "s-2", "trim"] {
        assert_eq!(reader.stream_version(stream).unwrap(), writer.stream_version(stream).unwrap(), "{stream}");
    }
}

#[test]
fn a_subscription_on_a_read_only_store_follows_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open_with(dir.path(), options()).unwrap();
    writer.append("order-1", ExpectedVersion::Any, [NewEvent::new("Placed", "1")]).unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    let mut orders = reader.subscribe(0, chronicle::Filter::category("order")).unwrap();
    assert_eq!(orders.recv_timeout(Duration::from_secs(10)).unwrap().unwrap().position, 0);
    // Nothing new: the wait ends at the caller's timeout, not earlier, not never.
    let started = Instant::now();
    assert!(orders.recv_timeout(Duration::from_millis(100)).unwrap().is_none());
    assert!(started.elapsed() >= Duration::from_millis(100));
    // Commits of the writer arrive within the refresh interval, in order, once each.
    for i in 1..=20u8 {
        writer.append("order-2", ExpectedVersion::Any, [NewEvent::new("Placed", vec![i])]).unwrap();
        writer.append("user-1", ExpectedVersion::Any, [NewEvent::new("Seen", vec![i])]).unwrap();
    }
    let mut data = Vec::new();
    while data.len() < 20 {
        let event = orders.recv_timeout(Duration::from_secs(10)).unwrap().expect("a followed commit");
        assert_eq!(event.stream_id, "order-2");
        data.push(event.data[0]);
    }
    assert_eq!(data, (1..=20).collect::<Vec<u8>>());
    // Event-type filters see the active segment's events as the reader indexed them.
    reader.refresh().unwrap();
    let seen = reader.read_all_filtered(0, chronicle::Filter::event_types(["Seen"])).unwrap();
    assert_eq!(seen.map(|e| e.unwrap().data[0]).collect::<Vec<u8>>(), (1..=20).collect::<Vec<u8>>());
    // A durable consumer writes its checkpoint: refused on a read-only store.
    assert!(matches!(reader.subscribe_durable("c", chronicle::Filter::all()), Err(Error::ReadOnly { .. })));
    // Closing the reader ends the subscription.
    let stop = orders.stop_handle();
    drop(stop);
    reader.close().unwrap();
    assert!(orders.next().is_none());
}
