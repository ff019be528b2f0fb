//! The order-processing example driven as a user would: one process per command on a data
//! directory that persists between them; exit codes, stdout and stderr checked.
#![cfg(feature = "typed")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Builds the example once (cargo does not give tests the path of an example binary) and
/// returns its path next to this test's own binary.
fn example() -> &'static Path {
    static EXAMPLE: OnceLock<PathBuf> = OnceLock::new();
    EXAMPLE.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", "order_processing", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --example order_processing failed");
        // target/debug/deps/<this test> -> target/debug/examples/order_processing
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target profile directory");
        let path = profile_dir.join("examples").join(format!("order_processing{}", std::env::consts::EXE_SUFFIX));
        assert!(path.exists(), "{} not built", path.display());
        path
    })
}

fn run(data: &Path, args: &[&str]) -> Output {
    Command::new(example()).arg("--data").arg(data).args(args).output().expect("run the example")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn ok(data: &Path, args: &[&str]) -> String {
    let output = run(data, args);
    assert_eq!(output.status.code(), Some(0), "{args:?}: stderr {}", text(&output.stderr));
    text(&output.stdout)
}

/// Status 1, one line on stderr, and nothing written (the log's length is unchanged).
#[track_caller]
fn refused(data: &Path, args: &[&str], reason: &str) {
    let before = ok(data, &["stats"]);
    let log_before = log_len(data);
    let output = run(data, args);
    assert_eq!(output.status.code(), Some(1), "{args:?}: {}", text(&output.stdout));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(reason), "{stderr:?} should say {reason:?}");
    assert!(output.stdout.is_empty());
    assert_eq!(log_len(data), log_before, "{args:?} wrote events");
    assert_eq!(ok(data, &["stats"]), before);
}

fn log_len(data: &Path) -> u64 {
    let store = chronicle::Store::open(data).expect("open the example's store");
    store.read_all(0).expect("read_all").count() as u64
}

#[test]
fn orders_follow_their_rules_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let placed = ok(data, &["place", "42", "ada", "pen:3:150", "ink:1:800"]);
    assert!(placed.contains("order 42: placed for ada"), "{placed}");
    let shown = ok(data, &["show", "42"]);
    for line in
        ["order 42: placed (customer ada)", "pen x3 @ 150 = 450", "total: 1250 cents", "version: 0", "full replay of 1"]
    {
        assert!(shown.contains(line), "{shown} lacks {line}");
    }
    refused(data, &["place", "42", "bob", "x:1:1"], "already exists");
    ok(data, &["add", "42", "cap:2:25"]);
    ok(data, &["place", "7", "bo", "mug:1:900"]);
    ok(data, &["place", "8", "cy", "tea:4:300"]);
    ok(data, &["ship", "42", "TRK-1"]);
    refused(data, &["add", "42", "x:1:1"], "shipped");
    refused(data, &["cancel", "42"], "shipped");
    ok(data, &["cancel", "7"]);
    refused(data, &["ship", "7", "T"], "cancelled");
    refused(data, &["add", "nope", "x:1:1"], "does not exist");
    refused(data, &["show", "nope"], "does not exist");
    let shown = ok(data, &["show", "42"]);
    assert!(
        shown.contains("shipped") && shown.contains("total: 1300 cents") && shown.contains("version: 2"),
        "{shown}"
    );
    let stats = ok(data, &["stats"]);
    assert_eq!(stats, "orders: 3\n  placed: 1\n  shipped: 1\n  cancelled: 1\n");
}

#[test]
fn malformed_arguments_exit_2_with_the_usage_line() {
    let dir = tempfile::tempdir().unwrap();
    let malformed: &[&[&str]] = &[
        &[],
        &["place", "1", "ada"],
        &["place", "1", "ada", "pen:x:1"],
        &["place", "1", "ada", "pen:1"],
        &["add", "1"],
        &["ship", "1"],
        &["frobnicate"],
        &["stats", "extra"],
    ];
    for args in malformed {
        let output = run(dir.path(), args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(text(&output.stderr).starts_with("usage: "), "{args:?}");
    }
    let output = Command::new(example()).arg("show").arg("1").output().unwrap();
    assert_eq!(output.status.code(), Some(2), "missing --data");
}

#[test]
fn an_order_with_more_than_100_events_loads_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(data, &["place", "big", "ada", "a:1:1"]);
    // One process per command, as a user would: 100 more events (about 1 s in all).
    for i in 1..=100u32 {
        let line = format!("line{i}:1:2");
        let added = ok(data, &["add", "big", &line]);
        assert!(added.contains(&format!("(version {i})")), "{added}");
    }
    let shown = ok(data, &["show", "big"]);
    assert!(shown.contains("total: 201 cents") && shown.contains("version: 100"), "{shown}");
    // The 100th event (version 99) took the snapshot; the 101st is replayed after it.
    assert!(shown.contains("loaded from: snapshot at version 99 + 1 event(s)"), "{shown}");
}

#[test]
fn watch_prints_events_committed_by_other_processes() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(data, &["place", "1", "ada", "pen:1:100"]);
    let mut watch = Command::new(example())
        .arg("--data")
        .arg(data)
        .arg("watch")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start watch");
    let stdout = watch.stdout.take().expect("watch stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait = std::time::Duration::from_secs(10);
    let first = lines.recv_timeout(wait).expect("watch prints the existing event");
    // Written while watch runs: the command waits for watch's poll to release the store.
    ok(data, &["ship", "1", "TRK-9"]);
    let second = lines.recv_timeout(wait).expect("watch prints the new event");
    watch.kill().expect("stop watch");
    let _ = watch.wait();
    assert_eq!(first, "@0 order-1 v0: placed for ada, 1 line(s)");
    assert_eq!(second, "@1 order-1 v1: shipped, tracking TRK-9");
}
