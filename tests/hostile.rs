//! Proves the store stays inside its directory in a hostile environment: stream ids shaped
//! like paths (`../x`, `/abs`, NUL, 300-byte names) never create files outside it, symlinks
//! planted where the store will create a file are never written through, and a second
//! process gets `Error::Locked` until the holder is killed with SIGKILL, after which the
//! directory opens at once.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::sync::{RwLock, RwLockReadGuard};

use chronicle::{Durability, Error, ExpectedVersion, NewEvent, Options, STREAM_ID_BYTES_MAX, Store};

/// A child forked while this process holds a store shares the lock's open file description
/// until it execs, so for that moment a close-then-reopen here would see `Locked`. Tests
/// that reopen hold this for reading; spawning a child holds it for writing.
static SPAWN_GUARD: RwLock<()> = RwLock::new(());

fn no_spawns() -> RwLockReadGuard<'static, ()> {
    SPAWN_GUARD.read().unwrap_or_else(|poison| poison.into_inner())
}

/// Every path under `root`, relative to it (directories end with `/`), without following
/// symlinks.
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                out.insert(format!("{relative}/"));
                walk(root, &path, out);
            } else {
                out.insert(relative);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

fn is_store_file(name: &str) -> bool {
    name == "LOCK"
        || name == "streams.chk"
        || name
            .strip_prefix("segment-")
            .and_then(|rest| rest.strip_suffix(".log").or_else(|| rest.strip_suffix(".idx")))
            .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn hostile_stream_ids() -> Vec<String> {
    vec![
        "../x".to_owned(),
        "../../escape".to_owned(),
        "/abs".to_owned(),
        "/tmp/chronicle-hostile-escape".to_owned(),
        "a/b/c".to_owned(),
        "..".to_owned(),
        ".".to_owned(),
        "a\0b".to_owned(),
        "\0".to_owned(),
        "x".repeat(300),
        "../".repeat(100),
        "é".repeat(150),
        "segment-0000000000000099.log".to_owned(),
        "LOCK".to_owned(),
        "C:\\windows\\x".to_owned(),
        "x".repeat(STREAM_ID_BYTES_MAX),
    ]
}

#[test]
fn path_shaped_stream_ids_never_create_files_outside_the_store() {
    let _no_spawns = no_spawns();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("store");
    let outside_absolute = [Path::new("/abs"), Path::new("/tmp/chronicle-hostile-escape")];
    let absolute_before: Vec<bool> = outside_absolute.iter().map(|p| p.exists()).collect();
    let store = Store::open_with(&dir, Options::default().segment_bytes(4096)).unwrap();
    let before = tree(parent.path());
    let ids = hostile_stream_ids();
    for (i, stream) in ids.iter().enumerate() {
        store
            .append(stream, ExpectedVersion::NoStream, [NewEvent::new("Hostile", vec![i as u8; 200])])
            .unwrap_or_else(|e| panic!("append to {stream:?}: {e}"));
    }
    let too_long = "y".repeat(STREAM_ID_BYTES_MAX + 1);
    let refused = store.append(&too_long, ExpectedVersion::Any, [NewEvent::new("T", "")]);
    assert!(matches!(refused, Err(Error::InvalidInput { .. })), "{refused:?}");
    assert!(matches!(
        store.append("", ExpectedVersion::Any, [NewEvent::new("T", "")]),
        Err(Error::InvalidInput { .. })
    ));
    store.close().unwrap();

    let store = Store::open(&dir).unwrap();
    let mut expected: Vec<String> = ids.clone();
    expected.sort();
    assert_eq!(store.streams().unwrap(), expected);
    for (i, stream) in ids.iter().enumerate() {
        let events: Vec<_> = store.read_stream(stream, 0).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(events.len(), 1, "{stream:?}");
        assert_eq!(events[0].stream_id, *stream);
        assert_eq!(events[0].data.as_ref(), &vec![i as u8; 200][..]);
    }
    store.close().unwrap();

    let after = tree(parent.path());
    let new: Vec<&String> = after.difference(&before).collect();
    assert!(
        new.iter().all(|p| p.strip_prefix("store/").is_some_and(is_store_file)),
        "files outside the store's own names appeared: {new:?}"
    );
    assert!(after.iter().all(|p| p == "store/" || p.starts_with("store/")), "{after:?}");
    assert!(after.len() > 4, "the appends rolled several segments: {after:?}");
    let absolute_after: Vec<bool> = outside_absolute.iter().map(|p| p.exists()).collect();
    assert_eq!(absolute_before, absolute_after, "a stream id created an absolute path");
}

// ---------------------------------------------------------------------------------------
// Symlinks
// ---------------------------------------------------------------------------------------

fn segment_ids(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let hex = name.strip_prefix("segment-")?.strip_suffix(".log")?;
            u64::from_str_radix(hex, 16).ok()
        })
        .collect();
    ids.sort();
    ids
}

/// A closed store with a few events in `parent/store`; returns its directory.
fn small_store(parent: &Path) -> PathBuf {
    let dir = parent.join("store");
    let store = Store::open_with(&dir, Options::default().segment_bytes(4096)).unwrap();
    for i in 0..20u8 {
        store.append("s", ExpectedVersion::Any, [NewEvent::new("T", vec![i; 300])]).unwrap();
    }
    store.close().unwrap();
    dir
}

fn read_stream_data(dir: &Path) -> Vec<Vec<u8>> {
    let store = Store::open(dir).unwrap();
    let data = store.read_stream("s", 0).unwrap().map(|e| e.unwrap().data.to_vec()).collect();
    store.close().unwrap();
    data
}

fn expected_data(extra: usize) -> Vec<Vec<u8>> {
    (0..20u8).map(|i| vec![i; 300]).chain((0..extra).map(|_| b"after".to_vec())).collect()
}

/// Plants `link` (a name in the store directory) pointing at `target`, opens the store,
/// seals (which creates the next segment), appends, and checks that `target` is as before.
fn check_link_not_written_through(link_name: impl Fn(&Path) -> String, target_exists: bool) {
    let _no_spawns = no_spawns();
    let parent = tempfile::tempdir().unwrap();
    let dir = small_store(parent.path());
    assert!(segment_ids(&dir).len() >= 2, "the fixture has sealed segments");
    let target = parent.path().join("outside-target");
    if target_exists {
        std::fs::write(&target, b"precious").unwrap();
    }
    let link = dir.join(link_name(&dir));
    std::os::unix::fs::symlink(&target, &link).unwrap();

    let store = Store::open_with(&dir, Options::default().segment_bytes(4096)).unwrap();
    // Either may fail (the store cannot create its file); neither may touch the target.
    let sealed = store.seal();
    let appended = store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "after")]);
    let closed = store.close();
    if target_exists {
        assert_eq!(std::fs::read(&target).unwrap(), b"precious", "written through {link:?}");
    } else {
        assert!(!target.exists(), "created {target:?} through {link:?}");
    }
    // The link itself may stay, or be replaced by the store's own file (rename replaces a
    // link, never follows it); only the target matters.

    // The store still holds everything it acknowledged.
    let extra = usize::from(appended.is_ok());
    assert_eq!(read_stream_data(&dir), expected_data(extra), "seal {sealed:?}, append {appended:?}, close {closed:?}");
    let _ = std::fs::remove_file(&link);
    let store = Store::open(&dir).unwrap();
    store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "after")]).unwrap();
    store.close().unwrap();
    assert_eq!(read_stream_data(&dir), expected_data(extra + 1));
}

fn next_segment_name(dir: &Path) -> String {
    let next = segment_ids(dir).last().unwrap() + 1;
    format!("segment-{next:016x}.log")
}

fn active_index_tmp_name(dir: &Path) -> String {
    let active = segment_ids(dir).last().copied().unwrap();
    format!("segment-{active:016x}.idx.tmp")
}

fn active_index_name(dir: &Path) -> String {
    let active = segment_ids(dir).last().copied().unwrap();
    format!("segment-{active:016x}.idx")
}

#[test]
fn symlink_at_the_next_segment_name_is_not_written_through() {
    check_link_not_written_through(next_segment_name, true);
}

#[test]
fn dangling_symlink_at_the_next_segment_name_does_not_create_its_target() {
    check_link_not_written_through(next_segment_name, false);
}

#[test]
fn symlink_at_the_index_temporary_name_is_not_written_through() {
    check_link_not_written_through(active_index_tmp_name, true);
    check_link_not_written_through(active_index_tmp_name, false);
}

#[test]
fn symlink_at_the_index_name_is_not_written_through() {
    // The checkpoint index exists already; the link replaces it.
    let replace_index = |dir: &Path| {
        let name = active_index_name(dir);
        std::fs::remove_file(dir.join(&name)).unwrap();
        name
    };
    check_link_not_written_through(replace_index, true);
    check_link_not_written_through(replace_index, false);
}

#[test]
fn dangling_symlink_at_the_lock_file_does_not_create_its_target() {
    let _no_spawns = no_spawns();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("store");
    std::fs::create_dir(&dir).unwrap();
    let target = parent.path().join("outside-lock-target");
    std::os::unix::fs::symlink(&target, dir.join("LOCK")).unwrap();
    let opened = Store::open(&dir).map(|_| ());
    assert!(!target.exists(), "opening created {target:?} through the LOCK symlink (open: {opened:?})");
    assert!(matches!(opened, Err(Error::Io { .. })), "a store opened over a LOCK symlink: {opened:?}");
}

// ---------------------------------------------------------------------------------------
// Locking across processes
// ---------------------------------------------------------------------------------------

const HOLDER_DIR_VAR: &str = "CHRONICLE_TEST_LOCK_HOLDER_DIR";
const READY_LINE: &str = "chronicle-lock-holder-ready";

/// Child process entry point: opens the store named by the environment, appends one
/// durable event, says so on stdout and holds the store until stdin closes or it is killed.
#[test]
#[ignore = "child process of another_process_gets_locked_until_the_holder_is_killed; needs its environment"]
fn lock_holder_child_process() {
    let Some(dir) = std::env::var_os(HOLDER_DIR_VAR) else {
        eprintln!("{HOLDER_DIR_VAR} not set: nothing to hold");
        return;
    };
    let store = Store::open_with(&dir, Options::default().durability(Durability::Sync)).unwrap();
    store.append("held", ExpectedVersion::NoStream, [NewEvent::new("Held", "by the child")]).unwrap();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{READY_LINE}").unwrap();
    stdout.flush().unwrap();
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
    drop(store);
}

#[test]
fn another_process_gets_locked_until_the_holder_is_killed() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("store");
    let spawning = SPAWN_GUARD.write().unwrap_or_else(|poison| poison.into_inner());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "lock_holder_child_process", "--nocapture", "--test-threads=1"])
        .env(HOLDER_DIR_VAR, &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    drop(spawning); // spawn returns once the child has exec'd
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.by_ref().map_while(Result::ok).any(|line| line.trim_end().ends_with(READY_LINE));
    assert!(ready, "the child never held the store");

    for _ in 0..3 {
        match Store::open(&dir) {
            Err(Error::Locked { dir: locked }) => assert_eq!(locked, dir),
            other => panic!("second process opened a held store: {other:?}"),
        }
    }

    child.kill().unwrap(); // SIGKILL: no destructor, no unlock by the child
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished: {status:?}");

    // Once the holder is dead the lock is gone at once: no retry, no stale-lock timeout.
    let store = Store::open(&dir).expect("the directory opens at once after the holder is killed");
    let held: Vec<_> = store.read_stream("held", 0).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(held.len(), 1, "the child's durable append survived its kill");
    assert_eq!(held[0].data.as_ref(), b"by the child");
    store.close().unwrap();
}
