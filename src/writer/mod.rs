//! The group-commit writer thread. It owns the active segment: it takes every pending
//! request, checks expected versions in order, assigns versions and positions, encodes the
//! whole group into one buffer, writes it with one write, makes it durable with one
//! fdatasync (as the durability mode asks), publishes it to readers, then answers callers.
//! Batch size thus follows disk latency: while one fsync runs, the next group queues.
//!
//! `front` is the callers' side (the queue, inline commits), `thread` the thread's loop, `answer`
//! the slots callers wait on, `check` the expected-version checks, `roll` sealing a
//! segment, `validate` the checks a caller makes before sending anything.

mod answer;
mod check;
mod condition;
mod front;
mod future;
mod ids;
mod thread;

pub(crate) use self::answer::AnswerSlot;
pub use self::condition::AppendCondition;
pub(crate) use self::front::{AppendAnswer, WriterFront, append, submit};
pub use self::future::AppendFuture;
pub(crate) use self::thread::spawn;
pub(crate) mod roll;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use self::answer::{ReplyTo, Waiters};
use self::check::Check;
use self::ids::IdGenerator;
use crate::clock::unix_micros_now;
use crate::error::{Error, Result};
use crate::event::AppendResult;
use crate::format::record::{self, RecordFields, RecordKind};
use crate::index::checkpoint;
use crate::index::streams::StreamState;
use crate::index::{IndexEntry, SegmentIndex};
use crate::options::{COALESCED_BYTES_MAX, Durability, GROUP_BYTES_MAX};
use crate::segment::Segment;
use crate::segment::prepare::NextSegment;
use crate::shared::Shared;
use crate::storage::StorageFile;
use crate::sync;
use crate::validate::WritePart;

/// A message to the writer thread.
pub(crate) enum Request {
    /// Append these parts atomically.
    Append { parts: Vec<WritePart>, condition: Option<Box<AppendCondition>>, reply: ReplyTo },
    /// Make everything written so far durable.
    Sync { reply: Sender<Result<()>> },
    /// Seal the active segment (if it holds any record) and start a new one.
    Seal { reply: Sender<Result<()>> },
    /// Flush, sync, checkpoint the index and stop.
    Shutdown { reply: Sender<Result<()>> },
}

enum Reply {
    Append(ReplyTo, Vec<AppendResult>),
    Done(Sender<Result<()>>),
}

/// One record of the group, for the active segment's index once the group is written.
struct GroupEntry {
    stream: Arc<str>,
    entry: IndexEntry,
    tombstone: bool,
    /// Where the record's event type lies in the group's buffer (start, length).
    event_type_at: (usize, usize),
}

/// The group being assembled: encoded bytes plus everything to publish once they are
/// written.
#[derive(Default)]
struct Group {
    buf: Vec<u8>,
    last_record_start: Option<usize>,
    entries: Vec<GroupEntry>,
    overlay: HashMap<Arc<str>, StreamState>,
    replies: Vec<Reply>,
    needs_sync: bool,
    next_position: u64,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    active: Arc<Segment>,
    /// The active segment's file, which appends and fdatasyncs go through.
    active_file: Arc<dyn StorageFile>,
    write_offset: u64,
    /// Bytes of the active segment known durable (fsynced); stamped on the first record of
    /// each group as its durable mark.
    durable_len: u64,
    unsynced: bool,
    poison: Option<Arc<Error>>,
    ids: IdGenerator,
    group: Group,
    /// Shut down: every later request is refused with [`Error::Closed`].
    closed: bool,
    /// Where queued callers wait for their answers.
    waiters: Arc<Waiters>,
    /// Answers were delivered that their waiters have not been woken for yet.
    answered: bool,
    /// Requests in the last group the writer thread committed.
    last_group_requests: usize,
    /// Segments sealed since the last stream-table checkpoint.
    rolls_since_checkpoint: u32,
    /// `Options::coalesce_writes`: appends are answered when encoded and written within
    /// this window (or sooner: by size, by any other call).
    coalesce_window: Option<Duration>,
    /// When the oldest answered-but-unwritten append of the group was encoded.
    coalesced_since: Option<Instant>,
    /// Whether the group holds answered-but-unwritten appends: read without the lock by
    /// callers that must write them first ([`WriterFront::write_coalesced`]).
    coalesced: Arc<AtomicBool>,
    /// The next segment's file, zero-filled ahead of the roll that needs it.
    next_segment: NextSegment,
    /// The active segment's file holds written zeros (or records) up to here: groups below it
    /// overwrite allocated space ([`Writer::zero_fill_ahead`]).
    zeroed_to: u64,
    /// How many bytes the next zero-filling extension adds (doubling, bounded).
    zero_ahead_bytes: u64,
    /// Bytes of the active segment its index file on disk covers, as far as this writer
    /// knows ([`Writer::checkpoint_active_index`]).
    indexed_len: u64,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, active: Arc<Segment>, active_file: Arc<dyn StorageFile>) -> Self {
        let write_offset = active.committed_len();
        let next_position = shared.next_position();
        let coalesce_window =
            shared.options.coalesce_window.filter(|_| shared.options.durability == Durability::Buffered);
        let mut writer = Writer {
            shared,
            active,
            active_file,
            write_offset,
            // Recovery fsynced the active segment, so all of it is durable.
            durable_len: write_offset,
            unsynced: false,
            poison: None,
            ids: IdGenerator::new(),
            group: Group { next_position, ..Group::default() },
            closed: false,
            waiters: Arc::new(Waiters::default()),
            answered: false,
            last_group_requests: 0,
            rolls_since_checkpoint: 0,
            coalesce_window,
            coalesced_since: None,
            coalesced: Arc::new(AtomicBool::new(false)),
            next_segment: NextSegment::default(),
            zeroed_to: 0,
            zero_ahead_bytes: 0,
            // Unknown: the first durable group a quarter segment in writes it.
            indexed_len: 0,
        };
        writer.zeroed_to = writer.active_file_len();
        writer
    }

    /// The flag [`Writer::coalesced`] for the callers' side.
    pub(super) fn coalesced_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.coalesced)
    }

    /// When the coalesced appends must be written by (the writer thread's timer).
    pub(super) fn coalesced_deadline(&self) -> Option<Instant> {
        Some(self.coalesced_since? + self.coalesce_window?)
    }

    /// Writes the coalesced appends if their window has passed (the writer thread's timer).
    pub(super) fn write_coalesced_if_due(&mut self) {
        if self.coalesced_deadline().is_some_and(|deadline| Instant::now() >= deadline) {
            self.flush();
        }
    }

    /// Writes the coalesced appends now, for a call that must see them (a read).
    ///
    /// # Errors
    /// [`Error::Poisoned`] if writing them failed: they are lost.
    pub(super) fn write_coalesced(&mut self) -> Result<()> {
        if self.coalesced_since.is_none() {
            return Ok(());
        }
        self.flush();
        self.poisoned().map_or(Ok(()), Err)
    }

    /// Commits the group unless it only holds coalesced appends that may wait longer
    /// (no caller waits for this group, it is below [`COALESCED_BYTES_MAX`] and within
    /// its window).
    fn flush_unless_coalescing(&mut self) {
        let may_wait = self.coalesce_window.is_some()
            && self.group.replies.is_empty()
            && !self.group.needs_sync
            && self.group.buf.len() < COALESCED_BYTES_MAX
            && self.coalesced_deadline().is_some_and(|deadline| Instant::now() < deadline);
        if !may_wait {
            self.flush();
        }
    }

    /// Takes every queued request into groups and commits them, until the queue is empty.
    /// Returns `true` once a shutdown request has been served (the writer is then closed).
    fn drain(&mut self, queue: &Receiver<Request>) -> bool {
        let mut gathered = 0usize;
        let mut requests = 0usize;
        let mut gather_deadline: Option<Instant> = None;
        loop {
            let request = match queue.try_recv() {
                Ok(request) => request,
                Err(_) if self.worth_gathering(requests) => {
                    let deadline = *gather_deadline.get_or_insert_with(|| Instant::now() + GATHER_WAIT_MAX);
                    if Instant::now() < deadline {
                        std::thread::yield_now();
                        continue;
                    }
                    break;
                }
                Err(_) => break,
            };
            if let Request::Shutdown { reply } = request {
                self.flush();
                let result = self.shutdown();
                self.wake_answered();
                let _ = reply.send(result);
                return true;
            }
            gathered += self.add_to_group(request);
            requests += 1;
            if gathered >= GROUP_BYTES_MAX {
                self.flush();
                gathered = 0;
            }
            self.wake_answered();
        }
        self.flush_unless_coalescing();
        self.wake_answered();
        self.last_group_requests = requests;
        false
    }

    /// Whether to wait a little for more requests before committing a group of `requests`:
    /// only when the group will be fsynced (an fsync costs the same for one append or
    /// many) and the previous group was larger — its callers, just woken, are still
    /// sending their next appends, and committing without them would split one group's
    /// worth of appends over two fsyncs.
    fn worth_gathering(&self, requests: usize) -> bool {
        self.shared.options.durability == Durability::Sync && requests > 0 && requests < self.last_group_requests
    }

    /// Wakes the callers whose answers were delivered (one wake-up for all of them).
    fn wake_answered(&mut self) {
        if std::mem::take(&mut self.answered) {
            self.waiters.notify_all();
        }
    }

    /// Appends on the caller's thread: one group of one request, committed at once — or,
    /// when coalescing, added to the coalesced appends. Returns `true` if these were none
    /// before: the writer thread must then be woken to time their window.
    fn append_inline(
        &mut self,
        parts: Vec<WritePart>,
        condition: Option<Box<AppendCondition>>,
        reply: ReplyTo,
    ) -> bool {
        if self.closed {
            let _ = reply.send(Err(Error::Closed));
            return false;
        }
        let coalesced_before = self.coalesced_since.is_some();
        self.handle_append(parts, condition, reply);
        self.flush_unless_coalescing();
        // Only this caller was answered, and it takes its answer without waiting.
        self.answered = false;
        !coalesced_before && self.coalesced_since.is_some()
    }

    /// Drops the group being assembled without writing it, answering its callers
    /// [`Error::Closed`] (their [`ReplyTo`]s do on drop): for a writer thread that stopped
    /// without finishing its group (it panicked), so that no future waits for it.
    fn abandon_group(&mut self) {
        let abandoned = self.group.replies.drain(..).any(|reply| matches!(reply, Reply::Append(..)));
        self.answered |= abandoned;
        self.wake_answered();
    }

    /// The periodic fsync of `Durability::Periodic`.
    fn periodic_sync(&mut self) {
        if self.unsynced && self.poison.is_none() && !self.closed {
            let _ = self.sync_active();
        }
    }

    fn poisoned(&self) -> Option<Error> {
        self.poison.as_ref().map(|cause| Error::Poisoned { cause: Arc::clone(cause) })
    }

    /// Adds one request to the group; returns the bytes it added.
    fn add_to_group(&mut self, request: Request) -> usize {
        match request {
            Request::Append { parts, condition, reply } => self.handle_append(parts, condition, reply),
            Request::Sync { reply } => {
                self.group.needs_sync = true;
                self.group.replies.push(Reply::Done(reply));
                0
            }
            Request::Seal { reply } => {
                self.flush();
                let result = match self.poisoned() {
                    Some(error) => Err(error),
                    None if self.write_offset > crate::format::segment_header::SEGMENT_HEADER_BYTES as u64 => {
                        self.roll()
                    }
                    None => Ok(()),
                };
                let _ = reply.send(result);
                0
            }
            Request::Shutdown { reply } => {
                let _ = reply.send(Err(Error::Closed));
                0
            }
        }
    }

    fn handle_append(
        &mut self,
        parts: Vec<WritePart>,
        condition: Option<Box<AppendCondition>>,
        reply: ReplyTo,
    ) -> usize {
        if let Some(error) = self.poisoned() {
            self.answered |= reply.send(Err(error));
            return 0;
        }
        if parts.iter().any(|p| self.may_repeat_recent(p) && self.group.overlay.contains_key(&p.stream)) {
            // The stream's most recent events are in this group, which readers (and the
            // retry check) cannot see yet: commit the group first.
            self.flush();
            if let Some(error) = self.poisoned() {
                self.answered |= reply.send(Err(error));
                return 0;
            }
        }
        let mut checks = self.check_parts(&parts);
        if checks.iter().any(|c| matches!(c, Check::Fail(_) | Check::Idempotent(_)))
            && parts.iter().any(|p| self.group.overlay.contains_key(&p.stream))
        {
            // The conflict involves events of this very group, which readers cannot see yet:
            // commit the group first, then decide on published state.
            self.flush();
            if let Some(error) = self.poisoned() {
                self.answered |= reply.send(Err(error));
                return 0;
            }
            checks = self.check_parts(&parts);
        }
        if let Some(index) = checks.iter().position(|c| matches!(c, Check::Fail(_))) {
            if let Some(Check::Fail(error)) = checks.into_iter().nth(index) {
                self.answered |= reply.send(Err(error));
            }
            return 0;
        }
        if checks.iter().all(|c| matches!(c, Check::Idempotent(_))) {
            let results =
                checks.into_iter().filter_map(|c| if let Check::Idempotent(r) = c { Some(r) } else { None }).collect();
            self.answered |= reply.send(Ok(results));
            return 0;
        }
        if checks.iter().any(|c| matches!(c, Check::Idempotent(_))) {
            // Part of an all-or-nothing append is already present and part is not: that is
            // not a retry of this append.
            if let Some((part, _)) = parts.iter().zip(&checks).find(|(_, c)| matches!(c, Check::Idempotent(_))) {
                let actual = self.current_state(&part.stream).last_version;
                let stream = part.stream.to_string();
                self.answered |=
                    reply.send(Err(Error::WrongExpectedVersion { stream, expected: part.expected, actual }));
            }
            return 0;
        }
        if let Some(condition) = &condition
            && let Err(error) = self.check_condition(condition)
        {
            self.answered |= reply.send(Err(error));
            return 0;
        }
        let total: usize = parts.iter().map(|p| p.encoded_bytes).sum::<usize>() + record::DURABLE_MARK_BYTES;
        if self.write_offset + (self.group.buf.len() + total) as u64 > self.shared.options.segment_bytes {
            self.flush();
            if let Err(error) = self.poisoned().map_or_else(|| self.roll(), Err) {
                self.answered |= reply.send(Err(error));
                return 0;
            }
        }
        let timestamp_us = unix_micros_now();
        let mut results = Vec::with_capacity(parts.len());
        for (part, check) in parts.iter().zip(checks) {
            let Check::Proceed(last_version) = check else { continue };
            results.push(self.encode_part(part, last_version, timestamp_us));
        }
        if self.coalesce_window.is_some() {
            // Coalescing: the versions and positions are final now; the bytes follow.
            if self.coalesced_since.is_none() {
                self.coalesced_since = Some(Instant::now());
                self.coalesced.store(true, Ordering::Release);
            }
            self.answered |= reply.send(Ok(results));
        } else {
            self.group.replies.push(Reply::Append(reply, results));
        }
        total
    }

    fn encode_part(&mut self, part: &WritePart, last_version: Option<u64>, timestamp_us: u64) -> AppendResult {
        let segment_id = self.active.id();
        let first_version = last_version.map_or(0, |v| v + 1);
        let first_position = self.group.next_position;
        let mut version = first_version;
        let unix_ms = timestamp_us / 1000;
        // A tombstone part has no events: it is one tombstone record.
        let records = std::iter::once((RecordKind::Tombstone, None))
            .take(usize::from(part.tombstone))
            .chain(part.events.iter().map(|e| (RecordKind::Event, Some(e))));
        for (kind, event) in records {
            let start = self.group.buf.len();
            let position = self.group.next_position;
            let id = match event.and_then(|e| e.id) {
                Some(id) => id,
                None if kind == RecordKind::Event => self.ids.next_id(unix_ms),
                None => 0,
            };
            let durable_mark = (start == 0).then_some(self.durable_len);
            let fields = RecordFields {
                kind,
                durable_mark,
                position,
                version,
                timestamp_us,
                id,
                correlation_id: event.and_then(|e| e.correlation_id),
                causation_id: event.and_then(|e| e.causation_id),
                stream_id: &part.stream,
                event_type: event.map_or("", |e| &e.event_type),
                metadata: event.map_or(&[][..], |e| &e.metadata),
                data: event.map_or(&[][..], |e| &e.data),
            };
            let event_type_at = (start + record::event_type_offset(&fields), fields.event_type.len());
            let record_bytes = record::encode(&mut self.group.buf, segment_id, &fields);
            let entry = IndexEntry {
                version,
                position,
                offset: (self.write_offset + start as u64) as u32,
                record_bytes: record_bytes as u32,
            };
            self.group.entries.push(GroupEntry {
                stream: Arc::clone(&part.stream),
                entry,
                tombstone: kind == RecordKind::Tombstone,
                event_type_at,
            });
            self.group.last_record_start = Some(start);
            self.group.next_position += 1;
            if kind == RecordKind::Event {
                version += 1;
            }
        }
        let state =
            self.group.overlay.entry(Arc::clone(&part.stream)).or_insert(StreamState { last_version, deleted: false });
        if part.tombstone {
            state.deleted = true;
        } else {
            state.last_version = Some(version - 1);
        }
        let last_position = self.group.next_position - 1;
        let (first_version, last_version) =
            if part.tombstone { (first_version, first_version) } else { (first_version, version - 1) };
        AppendResult { first_version, last_version, first_position, last_position }
    }

    /// Writes, syncs and publishes the group, then answers its callers.
    fn flush(&mut self) {
        if self.coalesced_since.take().is_some() {
            self.coalesced.store(false, Ordering::Release);
        }
        let mut group = std::mem::take(&mut self.group);
        let result = self.commit(&mut group);
        // After a failure nothing of the group was published and the store refuses writes.
        if result.is_err() {
            group.next_position = self.shared.next_position();
        }
        // Reuse every buffer's allocation for the next group.
        group.buf.clear();
        group.entries.clear();
        group.overlay.clear();
        group.last_record_start = None;
        group.needs_sync = false;
        for reply in group.replies.drain(..) {
            match reply {
                Reply::Append(sender, results) => {
                    self.answered |= sender.send(result.clone().map(|()| results));
                }
                Reply::Done(sender) => {
                    let _ = sender.send(result.clone());
                }
            }
        }
        self.group = group;
        self.prepare_ahead();
    }

    fn commit(&mut self, group: &mut Group) -> Result<()> {
        if let Some(error) = self.poisoned() {
            return Err(error);
        }
        if let Some(start) = group.last_record_start
            && let Some(record) = group.buf.get_mut(start..)
        {
            record::mark_commit(record, self.active.id());
        }
        // Write-side halves of checks the read side repeats: a group fits its segment (the
        // roll in `handle_append` sees to it; recovery rejects records past a segment's end),
        // its records have positions from the published end on (recovery's scan requires
        // increasing positions), and it ends in a COMMIT record (recovery keeps whole groups).
        debug_assert!(self.write_offset + group.buf.len() as u64 <= self.shared.options.segment_bytes);
        debug_assert!(group.next_position >= self.shared.next_position());
        debug_assert_eq!(group.buf.is_empty(), group.last_record_start.is_none());
        if !group.buf.is_empty() {
            self.zero_fill_ahead(group.buf.len() as u64);
            if let Err(source) = self.active_file.write_all_at(&group.buf, self.write_offset) {
                return Err(self.poison_with(Error::io("write", &self.active.path, source)));
            }
            self.write_offset += group.buf.len() as u64;
            self.unsynced = true;
        }
        let wants_sync = group.needs_sync || self.shared.options.durability == Durability::Sync;
        if wants_sync && self.unsynced {
            self.sync_active()?;
        }
        if group.buf.is_empty() {
            self.checkpoint_active_index();
            return Ok(());
        }
        // Publish in the order readers rely on: index entries, then the segment's committed
        // length and the global position, then the stream table (a reader that sees a new
        // stream version finds its entries and bytes).
        self.shared.metrics.record_group(group.entries.len());
        if let Some(index) = self.active.loaded_index()
            && let SegmentIndex::Active(mem) = &*index
        {
            let mut mem = sync::write(mem);
            for GroupEntry { stream, entry, tombstone, event_type_at: (at, len) } in group.entries.drain(..) {
                mem.push(&stream, entry, tombstone);
                if !tombstone {
                    let event_type = group.buf.get(at..at + len).and_then(|t| std::str::from_utf8(t).ok());
                    mem.push_event_type(event_type.unwrap_or_default(), entry);
                }
            }
        }
        self.active.publish(self.write_offset);
        self.shared.publish_position(group.next_position);
        self.shared.publish_streams(group.overlay.drain());
        // Subscriptions hook in here: the whole group is visible, wake whoever follows.
        self.shared.notify_followers();
        self.checkpoint_active_index();
        Ok(())
    }

    fn sync_active(&mut self) -> Result<()> {
        let started = Instant::now();
        let synced = self.active_file.sync_data();
        let took = started.elapsed();
        self.shared.metrics.record_fsync(took);
        tracing::trace!(path = %self.active.path.display(), micros = took.as_micros() as u64, "fdatasync");
        if let Err(source) = synced {
            return Err(self.poison_with(Error::io("fdatasync", &self.active.path, source)));
        }
        self.unsynced = false;
        self.durable_len = self.write_offset;
        Ok(())
    }

    /// Records the first failure; every later write is refused with it as the cause.
    fn poison_with(&mut self, error: Error) -> Error {
        tracing::error!(%error, "write path failed; the store refuses writes until reopened");
        let cause = Arc::clone(self.poison.get_or_insert_with(|| Arc::new(error)));
        self.shared.metrics.set_poisoned(&cause);
        self.shared.mark_poisoned(&cause);
        Error::Poisoned { cause }
    }

    /// Final sync, the active segment's index file and the stream checkpoint; the writer is closed afterwards, whatever the outcome.
    fn shutdown(&mut self) -> Result<()> {
        self.flush();
        self.closed = true;
        self.next_segment.discard(&*self.shared.storage, &self.shared.dir);
        if let Some(error) = self.poisoned() {
            return Err(error);
        }
        if self.unsynced {
            self.sync_active()?;
        }
        self.trim_at_close();
        self.active.write_index_file(&*self.shared.storage, self.write_offset);
        self.write_stream_checkpoint();
        Ok(())
    }

    /// Writes the stream-table checkpoint the next open starts from (failures are logged:
    /// without it the next open merges every index file's streams instead).
    fn write_stream_checkpoint(&mut self) {
        self.rolls_since_checkpoint = 0;
        let keys: Vec<_> = self
            .shared
            .segments()
            .iter()
            .map(|segment| crate::index::checkpoint::SegmentKey::of(&segment.header, segment.committed_len()))
            .collect();
        let bytes = checkpoint::encode(&keys, &self.shared.streams());
        if let Err(error) = checkpoint::write(&*self.shared.storage, &self.shared.dir, &bytes) {
            tracing::warn!(%error, "could not write the stream-table checkpoint; the next open rebuilds the table");
        }
    }
}

/// The longest the writer waits for the callers of its previous group to send their next
/// appends (see [`Writer::worth_gathering`]): a fraction of an fsync.
const GATHER_WAIT_MAX: Duration = Duration::from_micros(100);
