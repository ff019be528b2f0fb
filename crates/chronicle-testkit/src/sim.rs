//! An in-memory [`Storage`] that keeps written and durable bytes apart, injects I/O errors
//! and can lose power: the backend of the crash and error-injection tests and of the
//! `operations` fuzz target.
//!
//! The model, per file (an inode: renames and removals do not touch its bytes):
//! - `write_all_at` and `set_len` change the file's current bytes at once (every reader sees
//!   them) and are remembered as *unsynced* changes;
//! - `sync_data` makes the current bytes durable and forgets the unsynced changes.
//! - a *failed* `sync_data` loses the unsynced changes for good: they stay readable, but no
//!   later sync makes them durable (what Linux does after a writeback error, the
//!   "fsyncgate" lesson: retrying the fsync reports success without writing them).
//!
//! Per directory: creations, renames and removals change the entries at once and are
//! remembered as unsynced entry changes; `sync_dir` makes the current entries durable.
//! Directories themselves are durable as soon as `create_dir_all` returns.
//!
//! [`SimStorage::crash`] builds the storage as it could be after a power loss: each
//! directory holds its durable entries plus a prefix of its unsynced entry changes (file
//! systems journal metadata in order); each surviving file holds its durable bytes plus a
//! random subset of its unsynced changes, applied in order, and the last unsynced write, if
//! kept, may be torn: each 512-byte sector of it ([`SECTOR_BYTES`], aligned to the file
//! offset) survives or not, and the file may end up extended with zeros where sectors were
//! lost. Files created or renamed since their directory's last sync are thus gone (or back
//! at their old name), removals not yet synced are undone. Locks do not survive.
//! Seeds are chosen so that a few consecutive ones cover the extremes: a seed `≡ 0 (mod 4)`
//! keeps nothing unsynced, `≡ 1 (mod 4)` keeps every unsynced change whole, others pick at
//! random (a tiny deterministic PRNG: the same seed gives the same image).
//!
//! Error injection ([`SimStorage::fail_call`], [`SimStorage::fail_from`]) counts every call
//! of [`Storage`] and [`StorageFile`] methods on this storage and its files, from every
//! thread, numbered from 1 ([`SimStorage::calls`] is how many were made). A failing call
//! changes nothing, with two exceptions that real disks share: a failed `sync_data` loses
//! the unsynced changes (above), and a write failing with ENOSPC writes the first half of
//! its buffer first (a short write as the disk fills up).
//!
//! ```
//! use std::path::Path;
//! use std::sync::Arc;
//! use chronicle_testkit::SimStorage;
//! use chronicle::{ExpectedVersion, NewEvent, Options, Store};
//!
//! let sim = SimStorage::new();
//! let store = Store::open_with_storage("/db", Options::default(), Arc::new(sim.clone()))?;
//! store.append("s", ExpectedVersion::NoStream, [NewEvent::new("Created", "{}")])?;
//! // Power fails while the store is running: the acknowledged append survives.
//! let after_crash = sim.crash(7);
//! drop(store);
//! let store = Store::open_with_storage("/db", Options::default(), Arc::new(after_crash))?;
//! assert_eq!(store.stream_version("s")?, Some(0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use chronicle::storage::{LockError, LockGuard, OpenMode, Storage, StorageFile};

/// The granularity at which [`SimStorage::crash`] tears a write: a disk sector.
pub const SECTOR_BYTES: u64 = 512;

const EIO: i32 = 5;
const EBADF: i32 = 9;
const ENOSPC: i32 = 28;

/// The error an injected fault makes a call return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedError {
    /// EIO (raw OS error 5). Hits any call.
    Io,
    /// ENOSPC (raw OS error 28, [`io::ErrorKind::StorageFull`]). Hits only calls that may
    /// need space: writes, `set_len`, syncs, creating or renaming a file, taking a lock and
    /// creating directories. Reads, listing, removals and `map` still succeed on a full disk.
    NoSpace,
}

impl InjectedError {
    fn to_io(self) -> io::Error {
        match self {
            InjectedError::Io => io::Error::from_raw_os_error(EIO),
            InjectedError::NoSpace => io::Error::from_raw_os_error(ENOSPC),
        }
    }
}

/// An in-memory file system with separate written and durable bytes, error injection and
/// simulated power loss. Clones share the same files (use one clone for the store and keep
/// another to inject faults and crash); the module documentation describes the model.
///
/// ```
/// use std::path::Path;
/// use chronicle_testkit::{InjectedError, SimStorage};
/// use chronicle::storage::{OpenMode, Storage};
///
/// let sim = SimStorage::new();
/// sim.create_dir_all(Path::new("/d"))?;
/// let file = sim.open(Path::new("/d/f"), OpenMode::CreateNew)?;
/// file.write_all_at(b"durable", 0)?;
/// file.sync_data()?;
/// file.write_all_at(b" and not", 7)?;
/// assert_eq!(sim.calls(), 5);
///
/// // The file's creation was never made durable (no sync_dir): a crash loses the file.
/// assert!(sim.crash(0).read_file(Path::new("/d/f")).is_err());
/// sim.sync_dir(Path::new("/d"))?;
/// // Seed 0 keeps no unsynced write, seed 1 keeps all of them.
/// assert_eq!(sim.crash(0).read_file(Path::new("/d/f"))?, b"durable");
/// assert_eq!(sim.crash(1).read_file(Path::new("/d/f"))?, b"durable and not");
///
/// // The next call fails with ENOSPC, once.
/// sim.fail_call(sim.calls() + 1, InjectedError::NoSpace);
/// let error = file.write_all_at(b"!", 15).unwrap_err();
/// assert_eq!(error.kind(), std::io::ErrorKind::StorageFull);
/// file.write_all_at(b"!", 15)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    dirs: BTreeMap<PathBuf, Dir>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    calls: u64,
    faults: Vec<Fault>,
    /// Set when a [`SimStorage::stop_at`] fault fired; cleared by `clear_faults`.
    stopped: bool,
    locks: BTreeSet<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    error: InjectedError,
    first_call: u64,
    persistent: bool,
    /// The process is gone: the failing calls have no effect at all.
    stops_process: bool,
}

#[derive(Default, Clone)]
struct Dir {
    entries: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
    /// Entry changes since the last `sync_dir`, in order: (name, new inode or removal).
    unsynced: Vec<(String, Option<u64>)>,
}

#[derive(Default)]
struct Inode {
    /// What reads see.
    data: Vec<u8>,
    /// What survives a crash for sure. A sync applies the unsynced changes to it, so its
    /// cost is the bytes changed since the last sync, not the file's size.
    durable: Vec<u8>,
    /// Changes since the last `sync_data`, in order.
    unsynced: Vec<Op>,
    /// Open handles; an inode without handles and without directory entries is dropped.
    handles: usize,
}

enum Op {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl Op {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            Op::Write { offset, bytes } => write_at(data, *offset, bytes),
            Op::SetLen(len) => data.resize(*len as usize, 0),
        }
    }
}

/// What a call does, for fault eligibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    NeedsSpace,
    Other,
}

impl fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock_state();
        f.debug_struct("SimStorage").field("calls", &state.calls).field("files", &state.inodes.len()).finish()
    }
}

impl SimStorage {
    /// An empty file system: no directory, no file.
    ///
    /// ```
    /// let sim = chronicle_testkit::SimStorage::new();
    /// assert_eq!(sim.calls(), 0);
    /// ```
    pub fn new() -> Self {
        SimStorage::default()
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// How many I/O calls were made so far (the next call is number `calls() + 1`).
    ///
    /// ```
    /// use chronicle_testkit::SimStorage;
    /// use chronicle::storage::Storage;
    /// let sim = SimStorage::new();
    /// sim.create_dir_all(std::path::Path::new("/d"))?;
    /// assert_eq!(sim.calls(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn calls(&self) -> u64 {
        self.lock_state().calls
    }

    /// Makes call number `call` fail with `error`, once. For [`InjectedError::NoSpace`] the
    /// first call at or after `call` that needs space fails.
    ///
    /// ```
    /// use chronicle_testkit::{InjectedError, SimStorage};
    /// use chronicle::storage::Storage;
    /// let sim = SimStorage::new();
    /// sim.fail_call(1, InjectedError::Io);
    /// assert_eq!(sim.create_dir_all("/d".as_ref()).unwrap_err().raw_os_error(), Some(5));
    /// assert!(sim.create_dir_all("/d".as_ref()).is_ok());
    /// ```
    pub fn fail_call(&self, call: u64, error: InjectedError) {
        self.lock_state().faults.push(Fault { error, first_call: call, persistent: false, stops_process: false });
    }

    /// Makes call number `call` and every later one fail with `error` (for
    /// [`InjectedError::NoSpace`]: every one that needs space), until
    /// [`SimStorage::clear_faults`]. `fail_from(calls() + 1, InjectedError::Io)` is a power
    /// cut as the running process sees it: nothing it does reaches the storage any more.
    ///
    /// ```
    /// use chronicle_testkit::{InjectedError, SimStorage};
    /// use chronicle::storage::Storage;
    /// let sim = SimStorage::new();
    /// sim.fail_from(2, InjectedError::NoSpace);
    /// sim.create_dir_all("/d".as_ref())?;
    /// assert!(sim.create_dir_all("/e".as_ref()).is_err());
    /// assert!(sim.list_dir("/d".as_ref())?.is_empty()); // reads still work on a full disk
    /// sim.clear_faults();
    /// sim.create_dir_all("/e".as_ref())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fail_from(&self, call: u64, error: InjectedError) {
        self.lock_state().faults.push(Fault { error, first_call: call, persistent: true, stops_process: false });
    }

    /// The process dies just before call number `call`: that call and every later one fail
    /// with EIO and have no effect at all (unlike [`SimStorage::fail_from`], a failing sync
    /// loses nothing and no write is short), until [`SimStorage::clear_faults`]. Then
    /// reopen on this storage to model `kill -9` (the operating system keeps every write),
    /// or on a [`SimStorage::crash`] image to model a power cut.
    ///
    /// ```
    /// use chronicle_testkit::SimStorage;
    /// use chronicle::storage::{OpenMode, Storage};
    /// let sim = SimStorage::new();
    /// sim.create_dir_all("/d".as_ref())?;
    /// let file = sim.open("/d/f".as_ref(), OpenMode::CreateNew)?;
    /// file.write_all_at(b"written", 0)?;
    /// sim.stop_at(sim.calls() + 1);
    /// assert!(file.sync_data().is_err());
    /// sim.clear_faults(); // the process restarts
    /// file.sync_data()?;
    /// sim.sync_dir("/d".as_ref())?;
    /// assert_eq!(sim.crash(0).read_file("/d/f".as_ref())?, b"written");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop_at(&self, call: u64) {
        let fault = Fault { error: InjectedError::Io, first_call: call, persistent: true, stops_process: true };
        self.lock_state().faults.push(fault);
    }

    /// Removes every pending fault.
    ///
    /// ```
    /// use chronicle_testkit::{InjectedError, SimStorage};
    /// use chronicle::storage::Storage;
    /// let sim = SimStorage::new();
    /// sim.fail_from(1, InjectedError::Io);
    /// sim.clear_faults();
    /// sim.create_dir_all("/d".as_ref())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn clear_faults(&self) {
        let mut state = self.lock_state();
        state.faults.clear();
        state.stopped = false;
    }

    /// The storage as it could be after a power loss now (see the module documentation for
    /// what survives). The result is independent of `self`: no fault, no lock, no call
    /// counted, every change durable. The same seed gives the same image.
    ///
    /// ```
    /// use chronicle_testkit::SimStorage;
    /// use chronicle::storage::{OpenMode, Storage};
    /// let sim = SimStorage::new();
    /// sim.create_dir_all("/d".as_ref())?;
    /// let file = sim.open("/d/f".as_ref(), OpenMode::CreateNew)?;
    /// file.write_all_at(&[7; 2048], 0)?;
    /// sim.sync_dir("/d".as_ref())?;
    /// for seed in 0..20 {
    ///     let bytes = sim.crash(seed).read_file("/d/f".as_ref())?;
    ///     // Lost sectors read as zeros or are cut off; kept ones are whole.
    ///     assert!(bytes.len() % 512 == 0 && bytes.len() <= 2048);
    ///     assert!(bytes.chunks(512).all(|s| s == [7; 512] || s == [0; 512]));
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn crash(&self, seed: u64) -> SimStorage {
        let state = self.lock_state();
        let mut rng = SplitMix64::new(seed);
        let mode = match seed % 4 {
            0 => Keep::Nothing,
            1 => Keep::Everything,
            _ => Keep::Random,
        };
        let mut image = State { next_inode: state.next_inode, ..State::default() };
        for (path, dir) in &state.dirs {
            let mut entries = dir.durable.clone();
            let kept = match mode {
                Keep::Nothing => 0,
                Keep::Everything => dir.unsynced.len(),
                Keep::Random => rng.below(dir.unsynced.len() as u64 + 1) as usize,
            };
            for (name, change) in dir.unsynced.iter().take(kept) {
                match change {
                    Some(inode) => entries.insert(name.clone(), *inode),
                    None => entries.remove(name),
                };
            }
            image.dirs.insert(path.clone(), Dir { durable: entries.clone(), entries, unsynced: Vec::new() });
        }
        let surviving: BTreeSet<u64> = image.dirs.values().flat_map(|d| d.entries.values().copied()).collect();
        for number in surviving {
            let Some(inode) = state.inodes.get(&number) else { continue };
            let data = inode.crash_image(mode, &mut rng);
            image.inodes.insert(number, Inode { durable: data.clone(), data, unsynced: Vec::new(), handles: 0 });
        }
        SimStorage { state: Arc::new(Mutex::new(image)) }
    }

    /// The current bytes of the file at `path` (not counted as a call, never fails by
    /// injection).
    ///
    /// # Errors
    /// `NotFound` if there is no such file.
    ///
    /// ```
    /// use chronicle_testkit::SimStorage;
    /// use chronicle::storage::{OpenMode, Storage};
    /// let sim = SimStorage::new();
    /// sim.create_dir_all("/d".as_ref())?;
    /// sim.open("/d/f".as_ref(), OpenMode::CreateNew)?.write_all_at(b"abc", 0)?;
    /// assert_eq!(sim.read_file("/d/f".as_ref())?, b"abc");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.lock_state();
        let inode = state.lookup(path)?;
        Ok(state.inodes.get(&inode).map(|i| i.data.clone()).unwrap_or_default())
    }

    /// Replaces (or creates) the file at `path` with `bytes`, durably, entry included: for
    /// tests that plant or damage files (not counted as a call, never fails by injection).
    ///
    /// # Errors
    /// `NotFound` if the directory does not exist.
    ///
    /// ```
    /// use chronicle_testkit::SimStorage;
    /// let sim = SimStorage::new();
    /// assert!(sim.write_file("/d/f".as_ref(), b"x").is_err());
    /// use chronicle::storage::Storage;
    /// sim.create_dir_all("/d".as_ref())?;
    /// sim.write_file("/d/f".as_ref(), b"x")?;
    /// assert_eq!(sim.crash(0).read_file("/d/f".as_ref())?, b"x");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.lock_state();
        let (dir, name) = split(path)?;
        let existing = state.dirs.get(&dir).ok_or_else(not_found)?.entries.get(&name).copied();
        let number = match existing {
            Some(number) => number,
            None => state.create_inode(),
        };
        let inode = state.inodes.entry(number).or_default();
        inode.data = bytes.to_vec();
        inode.durable = bytes.to_vec();
        inode.unsynced.clear();
        let dir = state.dirs.get_mut(&dir).ok_or_else(not_found)?;
        dir.entries.insert(name.clone(), number);
        dir.durable.insert(name.clone(), number);
        dir.unsynced.retain(|(n, _)| *n != name);
        Ok(())
    }

    /// Counts a call and applies any fault due; locks the state for the call.
    fn begin(&self, call: Call) -> io::Result<MutexGuard<'_, State>> {
        let mut state = self.lock_state();
        state.calls += 1;
        let number = state.calls;
        let due = state.faults.iter().position(|fault| {
            number >= fault.first_call && (fault.error == InjectedError::Io || call == Call::NeedsSpace)
        });
        if let Some(index) = due {
            let fault = state.faults.get(index).copied().ok_or_else(|| io::Error::other("fault vanished"))?;
            if !fault.persistent {
                state.faults.remove(index);
            }
            state.stopped |= fault.stops_process;
            return Err(fault.error.to_io());
        }
        Ok(state)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Nothing,
    Everything,
    Random,
}

fn not_found() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

/// The directory and the file name of `path`.
fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no UTF-8 file name"))?;
    Ok((path.parent().map(Path::to_path_buf).unwrap_or_default(), name.to_owned()))
}

impl State {
    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (dir, name) = split(path)?;
        self.dirs.get(&dir).and_then(|d| d.entries.get(&name)).copied().ok_or_else(not_found)
    }

    fn create_inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.inodes.insert(self.next_inode, Inode::default());
        self.next_inode
    }

    /// Changes a directory entry (not yet durable).
    fn set_entry(&mut self, dir: &Path, name: &str, inode: Option<u64>) -> io::Result<()> {
        let dir = self.dirs.get_mut(dir).ok_or_else(not_found)?;
        match inode {
            Some(inode) => dir.entries.insert(name.to_owned(), inode),
            None => dir.entries.remove(name),
        };
        dir.unsynced.push((name.to_owned(), inode));
        Ok(())
    }

    /// Drops `inode` if nothing can reach it any more: no handle, no entry, durable or not.
    fn release_if_unused(&mut self, number: u64) {
        if self.inodes.get(&number).is_some_and(|i| i.handles > 0) {
            return;
        }
        let referenced = self.dirs.values().any(|dir| {
            dir.entries.values().any(|&n| n == number)
                || dir.durable.values().any(|&n| n == number)
                || dir.unsynced.iter().any(|(_, n)| *n == Some(number))
        });
        if !referenced {
            self.inodes.remove(&number);
        }
    }
}

impl Inode {
    fn apply(&mut self, op: Op) {
        op.apply(&mut self.data);
        self.unsynced.push(op);
    }

    fn sync(&mut self) {
        for op in self.unsynced.drain(..) {
            op.apply(&mut self.durable);
        }
    }

    fn crash_image(&self, mode: Keep, rng: &mut SplitMix64) -> Vec<u8> {
        let mut data = self.durable.clone();
        if mode == Keep::Nothing {
            return data;
        }
        let last = self.unsynced.len().saturating_sub(1);
        for (i, op) in self.unsynced.iter().enumerate() {
            if mode == Keep::Random && !rng.coin() {
                continue;
            }
            match op {
                Op::Write { offset, bytes } if mode == Keep::Random && i == last && rng.coin() => {
                    tear(&mut data, *offset, bytes, rng)
                }
                op => op.apply(&mut data),
            }
        }
        data
    }
}

/// Writes `bytes` at `offset`, extending `data` with zeros as needed.
fn write_at(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = offset as usize;
    let end = start + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    if let Some(target) = data.get_mut(start..end) {
        target.copy_from_slice(bytes);
    }
}

/// Applies the sectors of a write that survive a crash; the file length covers the last
/// surviving sector, or (at random) the whole write with zeros where sectors were lost.
fn tear(data: &mut Vec<u8>, offset: u64, bytes: &[u8], rng: &mut SplitMix64) {
    let end = offset + bytes.len() as u64;
    let mut at = offset;
    while at < end {
        let sector_end = ((at / SECTOR_BYTES + 1) * SECTOR_BYTES).min(end);
        if rng.coin() {
            let piece = bytes.get((at - offset) as usize..(sector_end - offset) as usize).unwrap_or_default();
            write_at(data, at, piece);
        }
        at = sector_end;
    }
    if rng.coin() && (data.len() as u64) < end {
        data.resize(end as usize, 0);
    }
}

/// SplitMix64: a tiny, good-enough, deterministic generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }

    /// A number in `0..bound` (`bound > 0`).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.begin(Call::NeedsSpace)?;
        for dir in path.ancestors() {
            state.dirs.entry(dir.to_path_buf()).or_default();
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.begin(Call::Other)?;
        Ok(state.dirs.get(path).ok_or_else(not_found)?.entries.keys().cloned().collect())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let call = if mode == OpenMode::CreateNew { Call::NeedsSpace } else { Call::Other };
        let mut state = self.begin(call)?;
        let number = if mode == OpenMode::CreateNew {
            let (dir, name) = split(path)?;
            let dir_state = state.dirs.get(&dir).ok_or_else(not_found)?;
            if dir_state.entries.contains_key(&name) || state.dirs.contains_key(path) {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            let number = state.create_inode();
            state.set_entry(&dir, &name, Some(number))?;
            number
        } else {
            state.lookup(path)?
        };
        if let Some(inode) = state.inodes.get_mut(&number) {
            inode.handles += 1;
        }
        Ok(Arc::new(SimFile {
            storage: self.clone(),
            inode: number,
            writable: mode != OpenMode::Read,
            path: path.to_path_buf(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.begin(Call::NeedsSpace)?;
        let number = state.lookup(from)?;
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        if !state.dirs.contains_key(&to_dir) {
            return Err(not_found());
        }
        if from == to {
            return Ok(());
        }
        let replaced = state.lookup(to).ok();
        state.set_entry(&to_dir, &to_name, Some(number))?;
        state.set_entry(&from_dir, &from_name, None)?;
        if let Some(replaced) = replaced {
            state.release_if_unused(replaced);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.begin(Call::Other)?;
        let number = state.lookup(path)?;
        let (dir, name) = split(path)?;
        state.set_entry(&dir, &name, None)?;
        state.release_if_unused(number);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.begin(Call::NeedsSpace)?;
        let dir = state.dirs.get_mut(path).ok_or_else(not_found)?;
        let dropped: Vec<u64> = dir.durable.values().copied().collect();
        dir.durable = dir.entries.clone();
        dir.unsynced.clear();
        for number in dropped {
            state.release_if_unused(number);
        }
        Ok(())
    }

    /// Faults are injected at the Nth call: the sequence of calls must not depend on how
    /// threads are scheduled.
    fn allows_background_io(&self) -> bool {
        false
    }

    fn lock(&self, path: &Path) -> Result<LockGuard, LockError> {
        let mut state = self.begin(Call::NeedsSpace).map_err(LockError::Io)?;
        if state.lookup(path).is_err() {
            let (dir, name) = split(path).map_err(LockError::Io)?;
            if !state.dirs.contains_key(&dir) {
                return Err(LockError::Io(not_found()));
            }
            let number = state.create_inode();
            state.set_entry(&dir, &name, Some(number)).map_err(LockError::Io)?;
        }
        if !state.locks.insert(path.to_path_buf()) {
            return Err(LockError::Held);
        }
        Ok(Box::new(SimLock { storage: self.clone(), path: path.to_path_buf() }))
    }
}

/// A held lock of a [`SimStorage`]; released on drop.
struct SimLock {
    storage: SimStorage,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.storage.lock_state().locks.remove(&self.path);
    }
}

/// An open file of a [`SimStorage`].
struct SimFile {
    storage: SimStorage,
    inode: u64,
    writable: bool,
    path: PathBuf,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile").field("path", &self.path).field("inode", &self.inode).finish()
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = self.storage.lock_state();
        if let Some(inode) = state.inodes.get_mut(&self.inode) {
            inode.handles = inode.handles.saturating_sub(1);
        }
        state.release_if_unused(self.inode);
    }
}

impl SimFile {
    /// Counts the call, applies faults, and runs `f` on this file's inode.
    fn with_inode<T>(&self, call: Call, write: bool, f: impl FnOnce(&mut Inode) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.storage.begin(call)?;
        if write && !self.writable {
            return Err(io::Error::from_raw_os_error(EBADF));
        }
        let inode = state.inodes.get_mut(&self.inode).ok_or_else(not_found)?;
        f(inode)
    }
}

impl StorageFile for SimFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let result = self.with_inode(Call::NeedsSpace, true, |inode| {
            inode.apply(Op::Write { offset, bytes: buf.to_vec() });
            Ok(())
        });
        if let Err(error) = &result
            && error.raw_os_error() == Some(ENOSPC)
            && self.writable
        {
            // A short write: the first half of the buffer made it before the disk was full.
            let mut state = self.storage.lock_state();
            let stopped = state.stopped;
            if let Some(inode) = state.inodes.get_mut(&self.inode).filter(|_| !stopped) {
                let half = buf.get(..buf.len() / 2).unwrap_or_default();
                if !half.is_empty() {
                    inode.apply(Op::Write { offset, bytes: half.to_vec() });
                }
            }
        }
        result
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with_inode(Call::Other, false, |inode| {
            let source = usize::try_from(offset)
                .ok()
                .and_then(|start| inode.data.get(start..start.checked_add(buf.len())?))
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(source);
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with_inode(Call::Other, false, |inode| Ok(inode.data.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with_inode(Call::NeedsSpace, true, |inode| {
            inode.apply(Op::SetLen(len));
            Ok(())
        })
    }

    /// One call, like a real preallocation's write: zeros inside the file, an extension
    /// past its end. Until synced, a crash keeps it, or not, like any other write.
    fn zero_fill(&self, offset: u64, len: u64) -> io::Result<()> {
        self.with_inode(Call::NeedsSpace, true, |inode| {
            let end = offset.saturating_add(len);
            let inside = (inode.data.len() as u64).clamp(offset, end);
            if inside > offset {
                inode.apply(Op::Write { offset, bytes: vec![0; (inside - offset) as usize] });
            }
            if end > inside {
                inode.apply(Op::SetLen(end));
            }
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        let result = self.with_inode(Call::NeedsSpace, false, |inode| {
            inode.sync();
            Ok(())
        });
        if result.is_err() {
            // The writeback failed: the unsynced changes stay readable but are lost for good.
            let mut state = self.storage.lock_state();
            let stopped = state.stopped;
            if let Some(inode) = state.inodes.get_mut(&self.inode).filter(|_| !stopped) {
                inode.unsynced.clear();
            }
        }
        result
    }

    // A copy, so nothing here relies on the caller's contract; the trait method is unsafe
    // for the real file system's sake.
    #[allow(unsafe_code)]
    unsafe fn map(&self, capacity: u64) -> io::Result<Bytes> {
        self.with_inode(Call::Other, false, |inode| {
            let len = usize::try_from(capacity).unwrap_or(usize::MAX).min(inode.data.len());
            Ok(Bytes::copy_from_slice(inode.data.get(..len).unwrap_or_default()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with_history() -> (SimStorage, Arc<dyn StorageFile>) {
        let sim = SimStorage::new();
        sim.create_dir_all(Path::new("/d")).unwrap();
        let file = sim.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
        sim.sync_dir(Path::new("/d")).unwrap();
        file.write_all_at(&[1; 1000], 0).unwrap();
        file.sync_data().unwrap();
        file.write_all_at(&[2; 100], 950).unwrap();
        file.set_len(1020).unwrap();
        file.write_all_at(&[3; 1500], 1020).unwrap();
        (sim, file)
    }

    #[test]
    fn crash_keeps_durable_bytes_and_some_unsynced_changes() {
        let (sim, _file) = file_with_history();
        assert_eq!(sim.crash(0).read_file(Path::new("/d/f")).unwrap(), vec![1; 1000]);
        let all = sim.crash(1).read_file(Path::new("/d/f")).unwrap();
        assert_eq!(all, sim.read_file(Path::new("/d/f")).unwrap());
        assert_eq!(all.len(), 2520);
    }

    #[test]
    fn crash_images_are_deterministic_and_varied() {
        let (sim, _file) = file_with_history();
        let images: BTreeSet<Vec<u8>> =
            (0..64).map(|seed| sim.crash(seed).read_file(Path::new("/d/f")).unwrap()).collect();
        assert!(images.len() > 4, "only {} distinct images", images.len());
        for seed in 0..64 {
            assert_eq!(
                sim.crash(seed).read_file(Path::new("/d/f")).unwrap(),
                sim.crash(seed).read_file(Path::new("/d/f")).unwrap()
            );
        }
        for image in &images {
            // Whatever survives is, byte by byte, the durable byte, a written byte or zero.
            for (i, &b) in image.iter().enumerate() {
                assert!(b == 0 || b == 1 || b == 2 || b == 3, "byte {i} is {b}");
            }
            assert!(image.get(..950).is_some_and(|p| p.iter().all(|&b| b == 1)));
        }
    }

    #[test]
    fn unsynced_rename_and_removal_are_undone() {
        let sim = SimStorage::new();
        let dir = Path::new("/d");
        sim.create_dir_all(dir).unwrap();
        sim.write_file(&dir.join("a"), b"a").unwrap();
        sim.write_file(&dir.join("b"), b"b").unwrap();
        sim.rename(&dir.join("a"), &dir.join("c")).unwrap();
        sim.remove_file(&dir.join("b")).unwrap();
        let mut lost = sim.crash(0).list_dir(dir).unwrap();
        lost.sort();
        assert_eq!(lost, ["a", "b"]);
        let mut kept = sim.crash(1).list_dir(dir).unwrap();
        kept.sort();
        assert_eq!(kept, ["c"]);
        assert_eq!(sim.crash(1).read_file(&dir.join("c")).unwrap(), b"a");
        sim.sync_dir(dir).unwrap();
        assert_eq!(sim.crash(0).list_dir(dir).unwrap(), ["c"]);
        assert_eq!(sim.lock_state().inodes.len(), 1, "the removed file is dropped once the removal is durable");
    }

    #[test]
    fn removed_file_stays_readable_through_open_handle() {
        let sim = SimStorage::new();
        sim.create_dir_all(Path::new("/d")).unwrap();
        let file = sim.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"xyz", 0).unwrap();
        sim.remove_file(Path::new("/d/f")).unwrap();
        sim.sync_dir(Path::new("/d")).unwrap();
        // SAFETY: a simulated file: the view is a copy.
        #[allow(unsafe_code)]
        let view = unsafe { file.map(10) }.unwrap();
        assert_eq!(&view[..], b"xyz");
        drop(file);
        assert!(sim.lock_state().inodes.is_empty());
    }

    #[test]
    fn locks_are_exclusive_and_released_on_drop_and_crash() {
        let sim = SimStorage::new();
        sim.create_dir_all(Path::new("/d")).unwrap();
        let guard = sim.lock(Path::new("/d/LOCK")).unwrap();
        assert!(matches!(sim.lock(Path::new("/d/LOCK")), Err(LockError::Held)));
        for seed in 0..4 {
            assert!(sim.crash(seed).lock(Path::new("/d/LOCK")).is_ok(), "seed {seed}");
        }
        drop(guard);
        assert!(sim.lock(Path::new("/d/LOCK")).is_ok());
    }

    #[test]
    fn faults_count_every_call_and_nospace_spares_reads() {
        let sim = SimStorage::new();
        sim.create_dir_all(Path::new("/d")).unwrap();
        let file = sim.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
        sim.fail_call(3, InjectedError::NoSpace);
        assert_eq!(file.len().unwrap(), 0); // call 3 is a read: the fault moves to the next write
        let error = file.write_all_at(b"abcd", 0).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(ENOSPC));
        assert_eq!(sim.read_file(Path::new("/d/f")).unwrap(), b"ab", "a write failing with ENOSPC is short");
        file.write_all_at(b"x", 0).unwrap();
        sim.fail_from(sim.calls() + 1, InjectedError::Io);
        assert_eq!(file.len().unwrap_err().raw_os_error(), Some(EIO));
        assert!(file.write_all_at(b"y", 0).is_err());
        assert_eq!(sim.read_file(Path::new("/d/f")).unwrap(), b"xb", "a write failing with EIO changes nothing");
        assert!(file.sync_data().is_err());
        assert_eq!(sim.calls(), 8);
    }

    #[test]
    fn failed_sync_loses_unsynced_writes_for_good() {
        let sim = SimStorage::new();
        sim.create_dir_all(Path::new("/d")).unwrap();
        let file = sim.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
        sim.sync_dir(Path::new("/d")).unwrap();
        file.write_all_at(b"lost", 0).unwrap();
        sim.fail_call(sim.calls() + 1, InjectedError::Io);
        assert!(file.sync_data().is_err());
        file.write_all_at(b"kept", 4).unwrap();
        file.sync_data().unwrap(); // the retry "succeeds"...
        assert_eq!(sim.read_file(Path::new("/d/f")).unwrap(), b"lostkept");
        for seed in 0..8 {
            // ...but the first write never reaches the disk.
            assert_eq!(sim.crash(seed).read_file(Path::new("/d/f")).unwrap(), b"\0\0\0\0kept", "seed {seed}");
        }
    }

    #[test]
    fn read_only_handles_refuse_writes() {
        let sim = SimStorage::new();
        sim.create_dir_all(Path::new("/d")).unwrap();
        sim.write_file(Path::new("/d/f"), b"x").unwrap();
        let file = sim.open(Path::new("/d/f"), OpenMode::Read).unwrap();
        assert!(file.write_all_at(b"y", 0).is_err());
        assert!(sim.open(Path::new("/d/f"), OpenMode::CreateNew).is_err());
        assert!(sim.open(Path::new("/d/g"), OpenMode::ReadWrite).is_err());
    }
}
