//! Proves that a store directory is exclusive: a second open from this process or from
//! another process gets `Error::Locked` at once, and the directory opens again once the
//! holder has closed, dropped every clone, or exited.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::RwLock;

use chronicle::{Error, ExpectedVersion, NewEvent, Store};

/// Set in the environment of the child process this test binary spawns of itself.
const CHILD_DIR_VAR: &str = "CHRONICLE_LOCK_TEST_CHILD_DIR";

/// The lock is an flock(2) lock on an open file description. A child process forked while
/// a store is open shares that description until it execs, so for that short window the
/// lock outlives `close` and a reopen gets `Locked`. Tests that release and retake a lock
/// therefore hold this guard for reading; the test that spawns processes holds it for writing.
static SPAWN_GUARD: RwLock<()> = RwLock::new(());

fn no_spawns() -> std::sync::RwLockReadGuard<'static, ()> {
    SPAWN_GUARD.read().unwrap_or_else(|poison| poison.into_inner())
}

fn assert_locked(dir: &Path) {
    match Store::open(dir) {
        Err(Error::Locked { dir: locked }) => assert_eq!(locked, dir),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn second_open_in_the_same_process_is_locked() {
    let _no_spawns = no_spawns();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::NoStream, [NewEvent::new("T", "")]).unwrap();
    assert_locked(dir.path());
    assert_locked(dir.path());
    // The failed opens did not disturb the holder.
    store.append("s", ExpectedVersion::Exact(0), [NewEvent::new("T", "")]).unwrap();
    assert_eq!(store.read_all(0).unwrap().count(), 2);
}

#[test]
fn close_releases_the_lock() {
    let _no_spawns = no_spawns();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.close().unwrap();
    let again = Store::open(dir.path()).unwrap();
    assert_locked(dir.path());
    drop(again);
    Store::open(dir.path()).unwrap();
}

#[test]
fn the_lock_is_held_until_the_last_clone_is_gone() {
    let _no_spawns = no_spawns();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clone = store.clone();
    drop(store);
    assert_locked(dir.path());
    let other = clone.clone();
    clone.close().unwrap();
    assert_locked(dir.path());
    assert!(matches!(other.append("s", ExpectedVersion::Any, [NewEvent::new("T", "")]), Err(Error::Closed)));
    drop(other);
    Store::open(dir.path()).unwrap();
}

#[test]
fn lock_file_left_behind_does_not_lock() {
    let _no_spawns = no_spawns();
    // The LOCK file stays in the directory after close; only a live holder locks.
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap().close().unwrap();
    assert!(dir.path().join("LOCK").exists());
    Store::open(dir.path()).unwrap();
}

/// Spawns this test binary to run only [`child_process_helper`], pointed at `dir`.
fn spawn_child(dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_helper", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_VAR, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout up to a line holding "child:" and returns what follows it.
fn child_says(child: &mut Child) -> String {
    let stdout = child.stdout.as_mut().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        assert_ne!(reader.read_line(&mut line).unwrap(), 0, "child ended without reporting");
        // libtest prints "test child_process_helper ... " on the same line first.
        if let Some((_, message)) = line.split_once("child:") {
            return message.trim().to_string();
        }
    }
}

#[test]
fn another_process_is_locked_out_and_locks_us_out() {
    let _spawning = SPAWN_GUARD.write().unwrap_or_else(|poison| poison.into_inner());
    let dir = tempfile::tempdir().unwrap();

    // We hold the store: the child's open fails with Locked.
    let store = Store::open(dir.path()).unwrap();
    let mut child = spawn_child(dir.path());
    assert_eq!(child_says(&mut child), "locked");
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    drop(store);

    // The child holds the store: our open fails with Locked until the child exits.
    let mut child = spawn_child(dir.path());
    assert_eq!(child_says(&mut child), "opened");
    assert_locked(dir.path());
    drop(child.stdin.take()); // the child closes the store and exits at end of input
    assert!(child.wait().unwrap().success());
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.stream_version("from-child").unwrap(), Some(0), "the child wrote through its store");
}

/// Not a test of its own: the child side of [`another_process_is_locked_out_and_locks_us_out`],
/// which runs it with `--ignored`. Without the environment variable it does nothing.
#[test]
#[ignore = "helper: run as a child process by another_process_is_locked_out_and_locks_us_out"]
fn child_process_helper() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else { return };
    let mut stdout = std::io::stdout();
    match Store::open(&dir) {
        Err(Error::Locked { .. }) => writeln!(stdout, "child: locked").unwrap(),
        Err(other) => writeln!(stdout, "child: error {other}").unwrap(),
        Ok(store) => {
            store.append("from-child", ExpectedVersion::NoStream, [NewEvent::new("Hello", "")]).unwrap();
            writeln!(stdout, "child: opened").unwrap();
            stdout.flush().unwrap();
            // Hold the store until the parent closes our stdin.
            let mut rest = String::new();
            while std::io::stdin().read_line(&mut rest).unwrap() > 0 {}
            store.close().unwrap();
        }
    }
    stdout.flush().unwrap();
}
