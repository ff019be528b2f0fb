//! `Store::verify`, `Store::backup` and `chronicle::restore`: damage is found and located,
//! backups taken under concurrent appends restore to exactly their position, and a backup
//! killed at any moment leaves no destination that looks whole and the source untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chronicle::{Durability, ExpectedVersion, NewEvent, Options, RecordedEvent, Store};

fn options() -> Options {
    Options::default().segment_bytes(64 << 10)
}

fn fill(store: &Store, events: u32) {
    for i in 0..events {
        let data = format!("event {i} {}", "x".repeat((i % 200) as usize));
        store.append(&format!("s-{}", i % 11), ExpectedVersion::Any, [NewEvent::new("T", data)]).unwrap();
    }
}

fn all(store: &Store) -> Vec<RecordedEvent> {
    store.read_all(0).unwrap().collect::<Result<_, _>>().unwrap()
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

fn snapshot_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .collect()
}

#[test]
fn a_clean_store_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store, 2000);
    store.save_snapshot("s-1", 3, b"state").unwrap();
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.records, 2000);
    assert!(report.segments > 3 && report.index_files >= report.segments - 1);
    assert_eq!(report.snapshots, 1);
    store.close().unwrap();
    // After a clean close the active segment's checkpoint index is checked too.
    let reader = Store::open_read_only(dir.path()).unwrap();
    let report = reader.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.index_files, report.segments);
}

#[test]
fn a_flipped_bit_in_a_sealed_segment_is_found_at_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store, 2000);
    store.close().unwrap();
    let segment = files_with(dir.path(), "log")[1].clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    std::fs::write(&segment, &bytes).unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    let report = reader.verify().unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!(problem.file, segment);
    assert!(problem.offset <= at as u64 && at as u64 - problem.offset < 400, "{problem}");
}

#[test]
fn damaged_index_and_snapshot_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store, 1000);
    store.save_snapshot("s-1", 3, b"state").unwrap();
    store.close().unwrap();
    let index = files_with(dir.path(), "idx")[0].clone();
    let mut bytes = std::fs::read(&index).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 1;
    std::fs::write(&index, &bytes).unwrap();
    let snapshot = files_with(dir.path(), "snap")[0].clone();
    let mut bytes = std::fs::read(&snapshot).unwrap();
    bytes[45] ^= 1;
    std::fs::write(&snapshot, &bytes).unwrap();
    let report = Store::open_read_only(dir.path()).unwrap().verify().unwrap();
    let files: Vec<&Path> = report.problems.iter().map(|p| p.file.as_path()).collect();
    assert_eq!(files, [index.as_path(), snapshot.as_path()], "{:?}", report.problems);
    assert_eq!(report.problems[0].offset, last as u64);
}

#[test]
fn backup_under_concurrent_appends_restores_exactly_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = Store::open_with(&live, options().durability(Durability::Buffered)).unwrap();
    fill(&store, 1500);
    store.save_snapshot("s-2", 5, b"snap").unwrap();
    let stop = AtomicBool::new(false);
    let reports = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                store
                    .append(&format!("c-{}", i % 5), ExpectedVersion::Any, [NewEvent::new("C", format!("{i}"))])
                    .unwrap();
                i += 1;
            }
            i
        });
        let compactor = scope.spawn(|| {
            store.delete_stream("s-3", ExpectedVersion::Any).unwrap();
            store.compact().unwrap();
        });
        let mut reports = Vec::new();
        for n in 0..3 {
            reports.push(store.backup(dir.path().join(format!("backup-{n}"))).unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
        compactor.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        assert!(writer.join().unwrap() > 0);
        reports
    });
    let source = all(&store);
    for (n, report) in reports.iter().enumerate() {
        assert!(report.files_linked > 0, "sealed segments are linked: {report:?}");
        let restored_dir = dir.path().join(format!("restored-{n}"));
        let restored = chronicle::restore(&report.path, &restored_dir).unwrap();
        assert_eq!(restored.end_position, report.end_position);
        let opened = Store::open(&restored_dir).unwrap();
        let events = all(&opened);
        // Exactly the source's events below the backup's position (compaction may have
        // removed the deleted stream's events from either, so compare what both hold).
        let expected: Vec<&RecordedEvent> = source.iter().filter(|e| e.position < report.end_position).collect();
        let got: Vec<&RecordedEvent> = events.iter().filter(|e| !e.stream_id.starts_with("s-3")).collect();
        let expected: Vec<&RecordedEvent> = expected.into_iter().filter(|e| !e.stream_id.starts_with("s-3")).collect();
        assert_eq!(got, expected, "backup {n}");
        assert!(events.iter().all(|e| e.position < report.end_position));
        assert_eq!(opened.load_snapshot("s-2").unwrap().unwrap().version, 5);
        assert!(opened.verify().unwrap().is_clean());
    }
    // A destination that exists is refused; so is a restore into a non-empty directory.
    assert!(matches!(store.backup(&reports[0].path), Err(chronicle::Error::InvalidInput { .. })));
    assert!(matches!(chronicle::restore(&reports[0].path, &live), Err(chronicle::Error::InvalidInput { .. })));
}

#[test]
fn backup_from_a_read_only_store_while_the_writer_runs() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = Store::open_with(&live, options()).unwrap();
    fill(&store, 800);
    let reader = Store::open_read_only(&live).unwrap();
    fill(&store, 300);
    let report = reader.backup(dir.path().join("b")).unwrap();
    assert_eq!(report.end_position, 1100);
    let restored = dir.path().join("r");
    std::fs::create_dir(&restored).unwrap();
    chronicle::restore(&report.path, &restored).unwrap();
    assert_eq!(all(&Store::open(&restored).unwrap()), all(&store)[..1100]);
}

const CHILD_SOURCE_VAR: &str = "CHRONICLE_BACKUP_CHILD_SOURCE";
const CHILD_DEST_VAR: &str = "CHRONICLE_BACKUP_CHILD_DEST";

#[test]
#[ignore = "child process of kill9_during_backup"]
fn child_backs_up() {
    let source = std::env::var(CHILD_SOURCE_VAR).expect("run by kill9_during_backup");
    let dest = std::env::var(CHILD_DEST_VAR).unwrap();
    let store = Store::open_read_only(source).unwrap();
    store.backup(dest).unwrap();
}

#[test]
fn kill9_during_backup_leaves_no_half_backup_and_the_source_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = Store::open_with(&live, options()).unwrap();
    fill(&store, 6000);
    store.save_snapshot("s-1", 2, b"state").unwrap();
    let expected = all(&store);
    store.close().unwrap();
    let before = snapshot_dir(&live);
    let started = Instant::now();
    let mut complete = 0;
    let mut cut = 0;
    for cycle in 0..12u64 {
        let dest = dir.path().join(format!("backup-{cycle}"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_backs_up", "--ignored", "--test-threads=1"])
            .env(CHILD_SOURCE_VAR, &live)
            .env(CHILD_DEST_VAR, &dest)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5 + cycle * 7));
        let _ = child.kill();
        child.wait().unwrap();
        if dest.exists() {
            complete += 1;
            let backup = Store::open_read_only(&dest).unwrap();
            assert!(backup.verify().unwrap().is_clean());
            assert_eq!(all(&backup), expected);
        } else {
            cut += 1;
        }
        assert!(started.elapsed() < Duration::from_secs(120));
    }
    assert_eq!(snapshot_dir(&live), before, "a backup changed its source");
    eprintln!("kill -9 during backup: {cut} cut short, {complete} complete");
}
