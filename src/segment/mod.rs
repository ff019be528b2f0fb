//! Segment files: a header, then records, appended by the writer thread and read through a
//! shared memory map. Readers hold `Arc<Segment>` handles, so a segment replaced by
//! compaction stays readable until its last reader drops it.

pub(crate) mod naming;
pub(crate) mod scan;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::format::record::{self, DecodedRecord};
use crate::format::segment_header::SegmentHeader;
use crate::index::file::Damage;
use crate::index::{MemIndex, SegmentIndex};
use crate::storage::{Storage, StorageFile};

/// One segment file, open for reading (and for appending if it is the active one).
pub(crate) struct Segment {
    pub(crate) header: SegmentHeader,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn StorageFile>,
    /// A view of the file; with the real file system a map of `capacity` bytes that sees
    /// later appends, otherwise a snapshot that is refreshed when too short.
    view: RwLock<Bytes>,
    capacity: u64,
    /// Bytes [0, committed_len) hold whole commit groups; readers never look past it.
    committed_len: AtomicU64,
    index: RwLock<Arc<SegmentIndex>>,
    /// Held while the index is rebuilt, so concurrent readers that find it damaged rebuild
    /// it once.
    rebuilding: Mutex<()>,
}

/// Written by hand: a derived `Debug` would print `view`, reading the whole map, whose
/// capacity runs past the end of the file (SIGBUS), and would dump every event's bytes.
impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("header", &self.header)
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .field("committed_len", &self.committed_len())
            .finish_non_exhaustive()
    }
}

impl Segment {
    /// Wraps an open segment file whose first `committed_len` bytes are valid.
    pub(crate) fn new(
        path: PathBuf,
        file: Arc<dyn StorageFile>,
        header: SegmentHeader,
        capacity: u64,
        committed_len: u64,
        index: SegmentIndex,
    ) -> Result<Self> {
        let view = file.map(capacity).map_err(|e| Error::io("mmap", &path, e))?;
        Ok(Segment {
            header,
            path,
            file,
            view: RwLock::new(view),
            capacity,
            committed_len: AtomicU64::new(committed_len),
            index: RwLock::new(Arc::new(index)),
            rebuilding: Mutex::new(()),
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.header.segment_id
    }

    pub(crate) fn committed_len(&self) -> u64 {
        self.committed_len.load(Ordering::Acquire)
    }

    /// Publishes newly written bytes to readers (writer thread only).
    pub(crate) fn publish(&self, committed_len: u64) {
        self.committed_len.store(committed_len, Ordering::Release);
    }

    pub(crate) fn index(&self) -> Arc<SegmentIndex> {
        Arc::clone(&self.index.read().unwrap_or_else(|poison| poison.into_inner()))
    }

    pub(crate) fn set_index(&self, index: SegmentIndex) {
        *self.index.write().unwrap_or_else(|poison| poison.into_inner()) = Arc::new(index);
    }

    /// Runs `query` on the segment's index. Index files are verified part by part as they
    /// are used, so a query can be the first to find damage: the index is then rebuilt from
    /// the segment (and its file rewritten) and the query runs again.
    ///
    /// # Errors
    /// [`Error::Corruption`] if the segment itself cannot be indexed (the index file's
    /// damage is logged and repaired, not reported).
    pub(crate) fn lookup<T>(
        &self,
        storage: &dyn Storage,
        mut query: impl FnMut(&SegmentIndex) -> std::result::Result<T, Damage>,
    ) -> Result<T> {
        let index = self.index();
        let damage = match query(&index) {
            Ok(answer) => return Ok(answer),
            Err(damage) => damage,
        };
        let index_path = naming::index_path_for(&self.path);
        tracing::warn!(path = %index_path.display(), damage, "damaged index file; rebuilding it from the segment");
        {
            let _rebuilding = self.rebuilding.lock().unwrap_or_else(|poison| poison.into_inner());
            // Another reader may have rebuilt it while this one waited.
            if Arc::ptr_eq(&index, &self.index()) {
                let mem = self.scan_committed()?;
                self.set_index(SegmentIndex::Active(RwLock::new(mem)));
                crate::writer::roll::write_index(storage, self, self.committed_len());
            }
        }
        query(&self.index()).map_err(|damage| Error::corruption(&index_path, 0, damage))
    }

    /// Indexes every committed record by scanning the segment (a sealed one: all of it must
    /// be whole commit groups).
    pub(crate) fn scan_committed(&self) -> Result<MemIndex> {
        let committed = self.committed_len();
        let bytes = self.committed_bytes(0, committed)?;
        scan::index_sealed(&bytes, &self.path, &self.header, self.header.base_position)
    }

    /// Makes the view cover every committed byte, so the segment stays readable after its
    /// file is removed (compaction). Memory maps already do; snapshot views are refreshed.
    pub(crate) fn retain_view(&self) -> Result<()> {
        let committed = self.committed_len();
        self.committed_bytes(committed, committed).map(|_| ())
    }

    /// Committed bytes `[offset, end)`, zero-copy from the map.
    fn committed_bytes(&self, offset: u64, end: u64) -> Result<Bytes> {
        let committed = self.committed_len();
        if offset > end || end > committed {
            return Err(Error::corruption(
                &self.path,
                offset,
                format!("range ends at {end}, past the committed length {committed}"),
            ));
        }
        let range = offset as usize..end as usize;
        {
            let view = self.view.read().unwrap_or_else(|poison| poison.into_inner());
            if view.len() >= range.end {
                return Ok(view.slice(range));
            }
        }
        let fresh = self.file.map(self.capacity.max(committed)).map_err(|e| Error::io("mmap", &self.path, e))?;
        if fresh.len() < range.end {
            return Err(Error::corruption(&self.path, offset, "file is shorter than its committed length"));
        }
        let slice = fresh.slice(range);
        *self.view.write().unwrap_or_else(|poison| poison.into_inner()) = fresh;
        Ok(slice)
    }

    /// A reader over the bytes committed now; it reads many records without touching the
    /// segment's locks or atomics.
    pub(crate) fn reader(self: &Arc<Self>) -> Result<SegmentReader> {
        let committed = self.committed_len();
        Ok(SegmentReader { bytes: self.committed_bytes(0, committed)?, segment: Arc::clone(self) })
    }
}

impl Segment {
    /// Creates an empty segment file (header written, file and directory synced) for appends.
    pub(crate) fn create(
        storage: &Arc<dyn Storage>,
        dir: &std::path::Path,
        segment_bytes: u64,
        segment_id: u64,
        base_position: u64,
    ) -> Result<Arc<Segment>> {
        let path = dir.join(naming::segment_file_name(segment_id));
        let file = storage
            .open(&path, crate::storage::OpenMode::CreateNew)
            .map_err(|e| Error::io("create segment", &path, e))?;
        let header = SegmentHeader {
            segment_id,
            base_position,
            compacted_end_position: 0,
            created_unix_ms: crate::clock::unix_micros_now() / 1000,
        };
        file.write_all_at(&header.encode(), 0).map_err(|e| Error::io("write segment header", &path, e))?;
        file.sync_data().map_err(|e| Error::io("fdatasync", &path, e))?;
        storage.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
        let segment = Segment::new(
            path,
            file,
            header,
            segment_bytes,
            crate::format::segment_header::SEGMENT_HEADER_BYTES as u64,
            SegmentIndex::Active(RwLock::new(crate::index::MemIndex::default())),
        )?;
        Ok(Arc::new(segment))
    }
}

/// A segment's committed bytes as of [`Segment::reader`].
#[derive(Debug)]
pub(crate) struct SegmentReader {
    bytes: Bytes,
    segment: Arc<Segment>,
}

impl SegmentReader {
    /// Bytes `range` of the record at `offset` as shared, zero-copy `Bytes` (an empty range
    /// takes no reference); `None` if the range is not inside the reader's bytes.
    pub(crate) fn share(&self, offset: u64, range: std::ops::Range<usize>) -> Option<Bytes> {
        let from = usize::try_from(offset).ok()?.checked_add(range.start)?;
        let to = from.checked_add(range.len())?;
        if range.start > range.end || to > self.bytes.len() {
            return None;
        }
        Some(if from == to { Bytes::new() } else { self.bytes.slice(from..to) })
    }

    /// The `len` bytes of the record at `offset` (already verified by
    /// [`SegmentReader::read_record`]); `None` if they are not inside the reader's bytes.
    pub(crate) fn record(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        self.bytes.get(start..start.checked_add(len)?)
    }

    /// Bytes readable through this reader.
    pub(crate) fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// Reads and verifies the record at `offset`, returning it decoded and its bytes
    /// (borrowed: slicing a field out with [`SegmentReader::share`] is the only reference
    /// count taken). `expected_len`, when known from the index, bounds the read. A failed
    /// check is `Error::Corruption` naming the file and offset.
    pub(crate) fn read_record(&self, offset: u64, expected_len: Option<u32>) -> Result<(DecodedRecord, &[u8])> {
        let path = &self.segment.path;
        let Some(rest) = usize::try_from(offset).ok().and_then(|at| self.bytes.get(at..)) else {
            return Err(Error::corruption(path, offset, "record offset is past the committed length"));
        };
        let window = match expected_len {
            Some(len) => rest.get(..len as usize).unwrap_or(rest),
            None => rest,
        };
        match record::decode(window, self.segment.id(), record::RECORD_BYTES_MAX) {
            Ok(decoded) => {
                if expected_len.is_some_and(|len| len as usize != decoded.record_bytes) {
                    return Err(Error::corruption(path, offset, "record length differs from the index"));
                }
                // decode checked that the record fits the window.
                let record = window.get(..decoded.record_bytes).unwrap_or_default();
                Ok((decoded, record))
            }
            Err(record::DecodeError::Incomplete) => {
                Err(Error::corruption(path, offset, "record runs past the committed length"))
            }
            Err(record::DecodeError::Invalid(reason)) => Err(Error::corruption(path, offset, reason)),
        }
    }
}
