//! Segment files: a header, then records, appended by the writer thread and read through a
//! shared memory map. Readers hold `Arc<Segment>` handles, so a segment replaced by
//! compaction stays readable until its last reader drops it.
//!
//! Only the active segment keeps a file descriptor (the writer appends through it). A sealed
//! segment is read through maps alone, of its file and its index file, opened, mapped and
//! closed again when first needed; at most `Options::mapped_segments` sealed segments stay
//! mapped ([`cache`]). Descriptors and maps thus stay bounded whatever the store's size.

pub(crate) mod cache;
pub(crate) mod prepare;
pub(crate) mod scan;
mod seal;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::Bytes;

use self::cache::{MapCache, Residency};
use crate::error::{Error, Result};
use crate::format::SaltedCrc;
use crate::format::record::{self, DecodedRecord};
use crate::format::segment_header::SegmentHeader;
use crate::index::file::Damage;
use crate::index::{MemIndex, SegmentIndex};
use crate::layout;
use crate::storage::{OpenMode, Storage, StorageFile};
use crate::sync;

/// One segment file, readable (and appendable while it is the active one).
pub(crate) struct Segment {
    pub(crate) header: SegmentHeader,
    pub(crate) path: PathBuf,
    /// The open file while the segment is active (the writer appends through it, and a
    /// storage whose views are snapshots refreshes them from it); `None` once sealed: a
    /// sealed segment holds no descriptor.
    file: RwLock<Option<Arc<dyn StorageFile>>>,
    /// A view of the file; with the real file system a map that sees later appends,
    /// otherwise a snapshot that is refreshed when too short. `None` while a sealed
    /// segment is not mapped (the cache unmapped it, or nothing has read it yet).
    view: RwLock<Option<Bytes>>,
    /// Bytes the active segment's view maps (its file grows into them).
    capacity: u64,
    /// Bytes [0, committed_len) hold whole commit groups; readers never look past it.
    committed_len: AtomicU64,
    /// `None` while a sealed segment's index file is not mapped; loaded again on use.
    index: RwLock<Option<Arc<SegmentIndex>>>,
    /// Held while the index is rebuilt, so concurrent readers that find it damaged rebuild
    /// it once.
    rebuilding: Mutex<()>,
    cache: Arc<MapCache>,
    residency: Residency,
    /// This segment, for the cache's list.
    me: Weak<Segment>,
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
    /// Wraps a segment whose first `committed_len` bytes are valid. With `file` it is the
    /// active segment, mapped now with `capacity` bytes of room to grow into; without, it
    /// is sealed and mapped when first read. Without `index` (sealed only), its index file
    /// is mapped when first used.
    pub(crate) fn new(
        cache: &Arc<MapCache>,
        path: PathBuf,
        file: Option<Arc<dyn StorageFile>>,
        header: SegmentHeader,
        capacity: u64,
        committed_len: u64,
        index: Option<SegmentIndex>,
    ) -> Result<Arc<Self>> {
        let view = match &file {
            // SAFETY: the active segment's view (contract of `StorageFile::map`): readers
            // read only below the committed length, which never exceeds the file's length
            // (1); recovery cut any torn tail before this map exists and nothing truncates a
            // segment afterwards, compaction removing whole files only (2); the writer
            // appends past the committed length and never rewrites a byte below it (3).
            #[allow(unsafe_code)]
            Some(file) => Some(
                unsafe { file.map(active_view_len(&**file, capacity, committed_len)) }
                    .map_err(|e| Error::io("mmap", &path, e))?,
            ),
            None => None,
        };
        let sealed_index = matches!(index, Some(SegmentIndex::Sealed(_)));
        let segment = Arc::new_cyclic(|me| Segment {
            header,
            path,
            file: RwLock::new(file),
            view: RwLock::new(view),
            capacity,
            committed_len: AtomicU64::new(committed_len),
            index: RwLock::new(index.map(Arc::new)),
            rebuilding: Mutex::new(()),
            cache: Arc::clone(cache),
            residency: Residency::default(),
            me: me.clone(),
        });
        if sealed_index && !segment.is_active() {
            segment.cache.admit(&segment);
        }
        Ok(segment)
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

    fn is_active(&self) -> bool {
        sync::read(&self.file).is_some()
    }

    /// The file the writer appends through; `None` once sealed.
    pub(crate) fn append_file(&self) -> Option<Arc<dyn StorageFile>> {
        sync::read(&self.file).clone()
    }

    /// Seals the segment (its last bytes are synced and its index written): its descriptor
    /// is closed once the writer drops its own handle, and from now on its maps count
    /// against the cache's bound.
    pub(crate) fn seal(&self) {
        *sync::write(&self.file) = None;
        self.cache.admit(self);
    }

    /// The index if it is in memory or mapped now (`None`: a sealed segment's index file is
    /// not mapped; [`Segment::lookup`] maps it again).
    pub(crate) fn loaded_index(&self) -> Option<Arc<SegmentIndex>> {
        sync::read(&self.index).clone()
    }

    /// Replaces the index; a mapped index of a sealed segment counts against the cache's bound.
    pub(crate) fn set_index(&self, index: SegmentIndex) {
        let mapped = matches!(index, SegmentIndex::Sealed(_));
        *sync::write(&self.index) = Some(Arc::new(index));
        if mapped && !self.is_active() {
            self.cache.admit(self);
        }
    }

    /// The index, mapping a sealed segment's index file again if the cache unmapped it;
    /// the damage if the file is missing or invalid (the caller rebuilds it).
    fn index(&self) -> std::result::Result<Arc<SegmentIndex>, Damage> {
        if let Some(index) = self.loaded_index() {
            MapCache::touch(&self.residency);
            return Ok(index);
        }
        let loaded = {
            let mut slot = sync::write(&self.index);
            if let Some(index) = &*slot {
                return Ok(Arc::clone(index));
            }
            let path = layout::index_path_for(&self.path);
            let mapped = match crate::index::file::load(&*self.cache.storage, &path, self.id()) {
                Ok(Ok(mapped)) if mapped.covered_bytes == self.committed_len() => mapped,
                Ok(Ok(_)) => return Err("index file does not cover the segment"),
                Ok(Err(damage)) => return Err(damage),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot map the index file again");
                    return Err("index file cannot be opened");
                }
            };
            let index = Arc::new(SegmentIndex::Sealed(mapped));
            *slot = Some(Arc::clone(&index));
            index
        };
        self.cache.admit(self);
        Ok(loaded)
    }

    /// Unmaps a sealed segment (the cache chose it): the segment's own references go, a
    /// reader's stay valid until it drops them. An index held only in memory stays.
    fn unmap(&self) {
        let mut view = sync::write(&self.view);
        let mut index = sync::write(&self.index);
        if self.residency.is_pinned() || self.is_active() {
            return;
        }
        *view = None;
        if matches!(index.as_deref(), Some(SegmentIndex::Sealed(_))) {
            *index = None;
        }
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
        let (seen, damage) = match self.index() {
            Ok(index) => match query(&index) {
                Ok(answer) => return Ok(answer),
                Err(damage) => (Some(index), damage),
            },
            Err(damage) => (None, damage),
        };
        let index_path = layout::index_path_for(&self.path);
        tracing::warn!(path = %index_path.display(), damage, "damaged index file; rebuilding it from the segment");
        {
            let _rebuilding = sync::lock(&self.rebuilding);
            // Another reader may have rebuilt it while this one waited.
            let current = self.loaded_index();
            let rebuilt = match (&seen, &current) {
                (Some(seen), Some(current)) => !Arc::ptr_eq(seen, current),
                (None, current) => current.is_some(),
                (Some(_), None) => false,
            };
            if !rebuilt {
                let mem = self.scan_committed()?;
                self.set_index(SegmentIndex::Active(RwLock::new(mem)));
                self.write_index_file(storage, self.committed_len());
            }
        }
        let index = self.index().map_err(|damage| Error::corruption(&index_path, 0, damage))?;
        query(&index).map_err(|damage| Error::corruption(&index_path, 0, damage))
    }

    /// Indexes every committed record by scanning the segment (a sealed one: all of it must
    /// be whole commit groups).
    pub(crate) fn scan_committed(&self) -> Result<MemIndex> {
        let committed = self.committed_len();
        let bytes = self.committed_bytes(0, committed)?;
        scan::index_sealed(&bytes, &self.path, &self.header, self.header.base_position)
    }

    /// Makes the segment readable after its files are removed (compaction replaced it):
    /// maps its file and index now and keeps them until the last reader drops the segment.
    pub(crate) fn retire(&self, storage: &dyn Storage) -> Result<()> {
        let committed = self.committed_len();
        self.committed_bytes(committed, committed)?;
        self.lookup(storage, |_| Ok(()))?;
        // Under both locks, so the cache cannot unmap between the loads and the pin.
        let view = sync::write(&self.view);
        let index = sync::write(&self.index);
        self.residency.pin();
        let whole = view.as_ref().is_some_and(|view| view.len() as u64 >= committed) && index.is_some();
        drop((view, index));
        if whole {
            return Ok(());
        }
        // Unmapped between the loads and the pin: load again, now that nothing unmaps it.
        self.committed_bytes(committed, committed)?;
        self.lookup(storage, |_| Ok(()))
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
            let view = sync::read(&self.view);
            if let Some(view) = &*view
                && view.len() >= range.end
            {
                MapCache::touch(&self.residency);
                return Ok(view.slice(range));
            }
        }
        let (fresh, sealed) = {
            let mut view = sync::write(&self.view);
            // Another reader may have mapped it while this one waited.
            if let Some(view) = &*view
                && view.len() >= range.end
            {
                return Ok(view.slice(range));
            }
            let (fresh, sealed) = self.map_again(committed)?;
            if fresh.len() < range.end {
                return Err(Error::corruption(&self.path, offset, "file is shorter than its committed length"));
            }
            *view = Some(fresh.clone());
            (fresh, sealed)
        };
        if sealed {
            self.cache.admit(self);
        }
        Ok(fresh.slice(range))
    }

    /// A new view: through the active segment's open file, or, for a sealed segment, by
    /// opening the file, mapping it and closing it again. Also says whether it is sealed.
    fn map_again(&self, committed: u64) -> Result<(Bytes, bool)> {
        let map_error = |e| Error::io("mmap", &self.path, e);
        if let Some(file) = self.append_file() {
            // SAFETY: as for the active segment's first view in `Segment::new`.
            #[allow(unsafe_code)]
            let view = unsafe { file.map(active_view_len(&*file, self.capacity, committed)) }.map_err(map_error)?;
            return Ok((view, false));
        }
        let file = self
            .cache
            .storage
            .open(&self.path, OpenMode::Read)
            .map_err(|e| Error::io("open segment", &self.path, e))?;
        // SAFETY: a sealed segment's view covers its committed length, the whole file (1); a
        // sealed segment is never truncated (compaction removes whole files; unlinking
        // keeps the map valid) (2) and never written again (3). `file` closes on return.
        #[allow(unsafe_code)]
        let view = unsafe { file.map(committed) }.map_err(map_error)?;
        Ok((view, true))
    }

    /// A reader over the bytes committed now; it reads many records without touching the
    /// segment's locks or atomics.
    pub(crate) fn reader(self: &Arc<Self>) -> Result<SegmentReader> {
        let committed = self.committed_len();
        let crc = SaltedCrc::new(self.id());
        Ok(SegmentReader { bytes: self.committed_bytes(0, committed)?, segment: Arc::clone(self), crc })
    }
}

impl Segment {
    /// Creates an empty segment file (header written, file and directory synced) for appends,
    /// growing as it is written (no next segment was prepared, [`prepare`]).
    pub(crate) fn create(
        cache: &Arc<MapCache>,
        dir: &std::path::Path,
        segment_bytes: u64,
        segment_id: u64,
        base_position: u64,
    ) -> Result<Arc<Segment>> {
        let storage = &cache.storage;
        let path = dir.join(layout::segment_file_name(segment_id));
        let file = storage.open(&path, OpenMode::CreateNew).map_err(|e| Error::io("create segment", &path, e))?;
        let header = SegmentHeader::current(segment_id, base_position, 0);
        write_durable_header(&*file, &header, &path)?;
        storage.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
        Segment::new_active(cache, path, file, header, segment_bytes)
    }

    /// The new active segment at `path`, whose header is durable and whose directory entry
    /// has been synced: empty, with an in-memory index.
    fn new_active(
        cache: &Arc<MapCache>,
        path: std::path::PathBuf,
        file: Arc<dyn StorageFile>,
        header: SegmentHeader,
        segment_bytes: u64,
    ) -> Result<Arc<Segment>> {
        Segment::new(
            cache,
            path,
            Some(file),
            header,
            segment_bytes,
            crate::format::segment_header::SEGMENT_HEADER_BYTES as u64,
            Some(SegmentIndex::Active(RwLock::new(crate::index::MemIndex::default()))),
        )
    }
}

/// Writes `header` at offset 0 of `file` (at `path`, for errors) and fdatasyncs it: a
/// segment never takes records before its header is durable (§3.4).
fn write_durable_header(file: &dyn StorageFile, header: &SegmentHeader, path: &std::path::Path) -> Result<()> {
    file.write_all_at(&header.encode(), 0).map_err(|e| Error::io("write segment header", path, e))?;
    file.sync_data().map_err(|e| Error::io("fdatasync", path, e))
}

/// How many bytes of an active segment to map: all its room to grow if the map sees later
/// writes, else the committed bytes only (a copy of a preallocated file's zeros would
/// otherwise pass for its records later, as the copy is as long as the file).
fn active_view_len(file: &dyn StorageFile, capacity: u64, committed: u64) -> u64 {
    if file.map_is_live() { capacity.max(committed) } else { committed }
}

/// A segment's committed bytes as of [`Segment::reader`].
#[derive(Debug)]
pub(crate) struct SegmentReader {
    bytes: Bytes,
    segment: Arc<Segment>,
    /// The checksum state salted with this segment's id, prepared once for all its records.
    crc: SaltedCrc,
}

impl SegmentReader {
    /// Bytes `range` of the record at `offset` as shared, zero-copy `Bytes` (an empty range
    /// takes no reference); `None` if the range is not inside the reader's bytes.
    #[inline]
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

    /// The committed bytes themselves (the whole file up to the committed length).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The checksum state of this segment's records, for [`record::decode_salted`].
    pub(crate) fn crc(&self) -> &SaltedCrc {
        &self.crc
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
        match record::decode_salted(window, &self.crc, record::RECORD_BYTES_MAX) {
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
