//! Crash images around snapshots and compaction: a power loss never leaves a snapshot ahead
//! of the events it covers, never lets compaction's erasures outlive the (lost) events that
//! justified them, and an index file orphaned by an interrupted segment removal is never
//! taken for a later segment that reuses the id.

mod common;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chronicle::storage::{FileSystem, LockError, LockGuard, OpenMode, Storage, StorageFile};
use chronicle::{Durability, ExpectedVersion, NewEvent, Options, Retention, Store};

use common::{copy_store_dir, read_stream, segment_files};

/// The real file system, remembering for each file how many bytes its last `sync_data`
/// made durable, so a test can build the directory a power loss would leave behind.
#[derive(Debug, Default)]
struct DurableLengths {
    synced: Arc<Mutex<HashMap<PathBuf, u64>>>,
}

#[derive(Debug)]
struct TrackedFile {
    inner: Arc<dyn StorageFile>,
    path: PathBuf,
    synced: Arc<Mutex<HashMap<PathBuf, u64>>>,
}

impl Storage for DurableLengths {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        FileSystem.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        FileSystem.list_dir(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let inner = FileSystem.open(path, mode)?;
        Ok(Arc::new(TrackedFile { inner, path: path.to_path_buf(), synced: Arc::clone(&self.synced) }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FileSystem.rename(from, to)?;
        let mut synced = self.synced.lock().unwrap();
        match synced.remove(from) {
            Some(len) => synced.insert(to.to_path_buf(), len),
            None => synced.remove(to),
        };
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        FileSystem.remove_file(path)?;
        self.synced.lock().unwrap().remove(path);
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        FileSystem.sync_dir(path)
    }
    fn lock(&self, path: &Path) -> Result<LockGuard, LockError> {
        FileSystem.lock(path)
    }
}

impl StorageFile for TrackedFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()?;
        let len = self.inner.len()?;
        self.synced.lock().unwrap().insert(self.path.clone(), len);
        Ok(())
    }
    #[allow(unsafe_code)]
    unsafe fn map(&self, capacity: u64) -> io::Result<Bytes> {
        // SAFETY: forwarded; the caller keeps `StorageFile::map`'s contract.
        unsafe { self.inner.map(capacity) }
    }
}

impl DurableLengths {
    /// Copies `dir` to `image` as a power loss would leave it: every segment file this
    /// process synced is cut back to its synced length (segments it never synced were
    /// durable before it opened them). Directory entries are taken as durable: the engine
    /// syncs the directory after each creation, rename and removal.
    fn power_loss_image(&self, dir: &Path, image: &Path) {
        copy_store_dir(dir, image);
        let synced = self.synced.lock().unwrap();
        for segment in segment_files(dir) {
            if let Some(&len) = synced.get(&segment) {
                let copy = image.join(segment.file_name().unwrap());
                let file = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
                if file.metadata().unwrap().len() > len {
                    file.set_len(len).unwrap();
                }
            }
        }
    }
}

fn event(i: u64) -> NewEvent {
    NewEvent::new("T", format!("event-{i:04}-{}", "p".repeat(80)))
}

#[test]
fn a_snapshot_is_never_durable_before_the_events_it_covers() {
    let root = tempfile::tempdir().unwrap();
    let (dir, image) = (root.path().join("live"), root.path().join("image"));
    let storage = Arc::new(DurableLengths::default());
    let options = Options::default().durability(Durability::Buffered);
    let store = Store::open_with_storage(&dir, options, storage.clone()).unwrap();
    store.append("s", ExpectedVersion::NoStream, (0..5).map(event)).unwrap();
    store.sync().unwrap();
    store.append("s", ExpectedVersion::Exact(4), (5..10).map(event)).unwrap();
    store.save_snapshot("s", 9, b"state after version 9").unwrap();
    storage.power_loss_image(&dir, &image);
    drop(store);

    let store = Store::open(&image).unwrap();
    let version = store.stream_version("s").unwrap();
    let snapshot = store.load_snapshot("s").unwrap().unwrap();
    assert!(
        version.is_some_and(|v| v >= snapshot.version),
        "after a power loss the snapshot covers version {} but the stream ends at {version:?}",
        snapshot.version
    );
}

#[test]
fn automatic_compaction_never_erases_durable_events_for_lost_ones() {
    let root = tempfile::tempdir().unwrap();
    let (dir, image) = (root.path().join("live"), root.path().join("image"));
    let storage = Arc::new(DurableLengths::default());
    let options = Options::default().durability(Durability::Buffered).segment_bytes(4096).compaction_threshold(1);
    let store = Store::open_with_storage(&dir, options, storage.clone()).unwrap();
    for i in 0..60 {
        store.append("s", ExpectedVersion::Any, [event(i)]).unwrap();
    }
    store.seal().unwrap();
    // Version 60 is acknowledged but, in Buffered mode, not durable.
    store.append("s", ExpectedVersion::Exact(59), [event(60)]).unwrap();
    let sealed = segment_files(&dir).len() - 1;
    assert!(sealed >= 2);
    // The rule change nudges the compaction thread. Judged by the published state it would
    // discard versions 0..=59 (all sealed) for the undurable version 60; judged by durable
    // state it keeps 59, the last sealed event.
    store.set_stream_retention("s", Retention::MaxCount(1)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_stream(&store, "s").len() > 2 {
        assert!(Instant::now() < deadline, "automatic compaction did not run");
        std::thread::sleep(Duration::from_millis(20));
    }
    storage.power_loss_image(&dir, &image);
    drop(store);

    let store = Store::open(&image).unwrap();
    let left = read_stream(&store, "s");
    assert!(!left.is_empty(), "version 60 was lost with the power, and versions 0..=59 had been erased for it");
}

const SEGMENT_4: &str = "segment-0000000000000004";

#[test]
fn an_orphaned_index_file_is_not_taken_for_a_new_segment_with_its_id() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("live");
    let options = Options::default().segment_bytes(4096);
    let store = Store::open_with(&dir, options.clone()).unwrap();
    // Segment 1: k0..k4; segment 2: k5; segment 3 active and empty.
    store.append("k", ExpectedVersion::NoStream, (0..5).map(event)).unwrap();
    store.seal().unwrap();
    store.append("k", ExpectedVersion::Exact(4), [event(5)]).unwrap();
    store.seal().unwrap();
    // Compaction rewrites segment 1 as segment 4 (k2..k4).
    store.set_stream_retention("k", Retention::MaxCount(4)).unwrap();
    store.compact().unwrap();
    let orphan = std::fs::read(dir.join(format!("{SEGMENT_4}.idx"))).unwrap();
    // Compaction again, nothing appended since (no seal): segment 4 loses every record and
    // is merged away (into the segment that replaces it and segment 2).
    store.set_stream_retention("k", Retention::MaxCount(1)).unwrap();
    store.compact().unwrap();
    assert!(!dir.join(format!("{SEGMENT_4}.log")).exists());
    store.close().unwrap();
    // The crash image of an interrupted removal: the segment's unlink reached the disk, its
    // index file's did not.
    std::fs::write(dir.join(format!("{SEGMENT_4}.idx")), &orphan).unwrap();

    let store = Store::open_with(&dir, options.clone()).unwrap();
    // Append across several rolls: whatever id the next segments get, none may load the
    // orphaned index as its own.
    for next in 6u64..40 {
        store.append("k", ExpectedVersion::Exact(next - 1), [event(next)]).unwrap();
    }
    let expected = read_stream(&store, "k");
    // Power loss now (Sync durability: every acknowledged event is durable).
    let image = root.path().join("image");
    copy_store_dir(&dir, &image);
    drop(store);
    let store = Store::open_with(&image, options).unwrap();
    assert_eq!(read_stream(&store, "k"), expected);
}
