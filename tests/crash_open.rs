//! An open after a crash rewrites only what nothing proves durable: the groups after the
//! durable mark of the last group (the writer stamps each group's first record with how far
//! an fdatasync had succeeded). Every byte is still scanned and checked; the rewrite is what
//! no longer grows with the size of the active segment.

mod common;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use chronicle::storage::{FileSystem, LockError, LockGuard, OpenMode, Storage, StorageFile};
use chronicle::{Durability, ExpectedVersion, NewEvent, Options, Store};

use common::{copy_store_dir, file_len, read_all, records_of, segment_files};

/// The real file system, counting the bytes written into segment files.
#[derive(Debug, Default)]
struct CountingWrites {
    segment_bytes_written: Arc<AtomicU64>,
}

#[derive(Debug)]
struct CountedFile {
    inner: Arc<dyn StorageFile>,
    /// `None` for files other than segments.
    written: Option<Arc<AtomicU64>>,
}

impl Storage for CountingWrites {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        FileSystem.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        FileSystem.list_dir(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let inner = FileSystem.open(path, mode)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let is_segment = name.starts_with("segment-") && name.ends_with(".log");
        Ok(Arc::new(CountedFile { inner, written: is_segment.then(|| Arc::clone(&self.segment_bytes_written)) }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FileSystem.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        FileSystem.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        FileSystem.sync_dir(path)
    }
    fn lock(&self, path: &Path) -> Result<LockGuard, LockError> {
        FileSystem.lock(path)
    }
}

impl StorageFile for CountedFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if let Some(written) = &self.written {
            written.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
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
        self.inner.sync_data()
    }
    #[allow(unsafe_code)]
    unsafe fn map(&self, capacity: u64) -> io::Result<Bytes> {
        // SAFETY: forwarded; the caller keeps `StorageFile::map`'s contract.
        unsafe { self.inner.map(capacity) }
    }
}

fn append_one(store: &Store, i: u64) {
    let event = NewEvent::new("E", format!("event {i} of a crash-open test ......................"));
    store.append(&format!("s-{}", i % 7), ExpectedVersion::Any, [event]).unwrap();
}

/// Opens `dir` through [`CountingWrites`]; returns the store and the segment bytes the
/// open itself wrote.
fn open_counting(dir: &Path, options: Options) -> (Store, u64) {
    let storage = CountingWrites::default();
    let written = Arc::clone(&storage.segment_bytes_written);
    let store = Store::open_with_storage(dir, options, Arc::new(storage)).unwrap();
    (store, written.load(Ordering::Relaxed))
}

/// Every event `0..count` is there, in order, and the store takes more and reopens cleanly.
fn check_and_continue(store: Store, dir: &Path, options: Options, count: u64) {
    let events = read_all(&store);
    assert_eq!(events.len() as u64, count);
    assert!(events.iter().enumerate().all(|(i, e)| e.position == i as u64));
    append_one(&store, count);
    store.close().unwrap();
    let store = Store::open_with(dir, options).unwrap();
    assert_eq!(read_all(&store).len() as u64, count + 1);
    assert!(store.verify().unwrap().is_clean());
    store.close().unwrap();
}

/// What a kill -9 leaves after `count` appends of one event each under `options`
/// (`Durability::Sync`: every group synced), with no index file for the active segment.
fn synced_crash_image(options: &Options, count: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    for i in 0..count {
        append_one(&store, i);
    }
    let image = tempfile::tempdir().unwrap();
    copy_store_dir(dir.path(), image.path());
    store.close().unwrap();
    image
}

#[test]
fn a_crash_open_of_a_synced_store_rewrites_only_the_last_group() {
    let options = Options::default().durability(Durability::Sync);
    let image = synced_crash_image(&options, 400);
    let segment = segment_files(image.path()).pop().unwrap();
    assert!(!segment.with_extension("idx").exists());
    let records = records_of(&segment);
    assert_eq!(records.len(), 400);
    let last_group = records.last().unwrap().len;

    let (store, written) = open_counting(image.path(), options.clone());
    // Before this rule the open rewrote the whole segment (header and 400 records).
    assert_eq!(written, last_group, "only the last group is unproven");
    check_and_continue(store, image.path(), options, 400);
}

#[test]
fn a_crash_open_rewrites_every_group_after_the_last_sync() {
    let options = Options::default().durability(Durability::Buffered);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    for i in 0..100 {
        append_one(&store, i);
    }
    store.sync().unwrap();
    let segment_name = segment_files(dir.path()).pop().unwrap().file_name().unwrap().to_owned();
    let synced_len = file_len(&dir.path().join(&segment_name));
    for i in 100..250 {
        append_one(&store, i);
    }
    let image = tempfile::tempdir().unwrap();
    copy_store_dir(dir.path(), image.path());
    store.close().unwrap();
    let log_len = file_len(&image.path().join(&segment_name));
    assert!(log_len > synced_len);

    let (store, written) = open_counting(image.path(), options.clone());
    assert_eq!(written, log_len - synced_len, "exactly the bytes appended after the sync");
    check_and_continue(store, image.path(), options, 250);
}

#[test]
fn a_forged_durable_mark_spares_no_byte_of_the_last_group() {
    // A mark beyond its own record's offset cannot be true (no fdatasync before the record
    // covered the record): it is capped there, so the last group is rewritten whatever its
    // mark says. The checksum is recomputed, so the scan accepts the forged record.
    let options = Options::default().durability(Durability::Sync);
    let image = synced_crash_image(&options, 50);
    let segment = segment_files(image.path()).pop().unwrap();
    let last = *records_of(&segment).last().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let segment_id = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    let record = &mut bytes[last.offset as usize..(last.offset + last.len) as usize];
    // No correlation or causation id: the durable mark follows the 64-byte record header.
    let mark = u64::from_le_bytes(record[64..72].try_into().unwrap());
    assert!(mark > 0 && mark <= last.offset, "the record carries a true mark ({mark})");
    record[64..72].copy_from_slice(&u64::MAX.to_le_bytes());
    chronicle::internal::codecs::reseal_records(record, segment_id);
    std::fs::write(&segment, &bytes).unwrap();

    let (store, written) = open_counting(image.path(), options.clone());
    assert_eq!(written, last.len, "the last group is rewritten");
    check_and_continue(store, image.path(), options, 50);
}

#[test]
fn a_sync_a_quarter_segment_on_writes_the_active_index_so_a_crash_open_scans_only_after_it() {
    // 64 KiB segments: the active segment's index file is written once 16 KiB more of it is
    // durable. Under Buffered the groups carry no useful durable mark; the explicit sync is
    // what the index file records.
    let options = Options::default().segment_bytes(64 << 10).durability(Durability::Buffered);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    let mut count = 0;
    while segment_files(dir.path()).last().is_none_or(|s| file_len(s) < 20 << 10) {
        append_one(&store, count);
        count += 1;
    }
    assert_eq!(segment_files(dir.path()).len(), 1);
    let segment = segment_files(dir.path()).pop().unwrap();
    assert!(!segment.with_extension("idx").exists(), "nothing synced yet");
    store.sync().unwrap();
    assert!(segment.with_extension("idx").exists(), "the sync wrote the active segment's index file");
    let synced_len = file_len(&segment);
    for i in count..count + 10 {
        append_one(&store, i);
    }
    count += 10;
    let image = tempfile::tempdir().unwrap();
    copy_store_dir(dir.path(), image.path());
    store.close().unwrap();
    let log_len = file_len(&image.path().join(segment.file_name().unwrap()));

    let (store, written) = open_counting(image.path(), options.clone());
    assert_eq!(written, log_len - synced_len, "only what followed the sync");
    check_and_continue(store, image.path(), options, count);
}

#[test]
fn a_damaged_active_index_file_is_ignored_and_the_whole_segment_scanned() {
    let options = Options::default().segment_bytes(64 << 10).durability(Durability::Sync);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    let mut count = 0;
    while segment_files(dir.path()).last().is_none_or(|s| !s.with_extension("idx").exists()) {
        append_one(&store, count);
        count += 1;
        assert!(count < 2000, "no index file for the active segment");
    }
    assert_eq!(segment_files(dir.path()).len(), 1);
    let image = tempfile::tempdir().unwrap();
    copy_store_dir(dir.path(), image.path());
    store.close().unwrap();
    let index = segment_files(image.path()).pop().unwrap().with_extension("idx");
    let mut bytes = std::fs::read(&index).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&index, &bytes).unwrap();
    let store = Store::open_with(image.path(), options.clone()).unwrap();
    check_and_continue(store, image.path(), options, count);
}
