//! Compaction: rewrites sealed segments without the events that deletion and retention made
//! discardable, on its own thread, while appends and reads go on.
//!
//! Swap protocol (also in `segment-format.md`): for each run of consecutive sealed segments
//! S1..Sk (a run discards something and its survivors fit in one segment), (1) write the
//! surviving records, re-checksummed for a new segment id N, to `segment-N.log.tmp`, whose
//! header says it replaces positions [S1.base, Sk.end); (2) fsync it; (3) rename it to
//! `segment-N.log` and fsync the directory; (4) swap N for the run in the segment list
//! (readers holding old segments keep their maps); (5) remove the old files and fsync the
//! directory. A crash before (3) leaves a `.tmp` file that open removes; after (3) and before
//! (5) old and new exist and open removes each old one, because N has a larger id and covers
//! its base position. Every surviving event keeps its position, version and bytes.

mod plan;
mod rewrite;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::error::{Error, Result};
use crate::shared::Shared;

/// How often automatic compaction re-checks discardable bytes without a nudge (documented
/// on `Options::compaction_threshold`). A tuning constant, not API: hidden from the docs,
/// exported only so that code written against earlier versions compiles.
#[doc(hidden)]
pub const AUTO_COMPACTION_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// What one compaction did.
///
/// ```
/// use chronicle::{ExpectedVersion, NewEvent, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("gdpr-7", ExpectedVersion::Any, [NewEvent::new("Registered", "alice@example.com")])?;
/// store.delete_stream("gdpr-7", ExpectedVersion::Any)?;
/// let report = store.compact()?;
/// assert_eq!(report.events_removed, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionReport {
    /// Sealed segments rewritten (or removed, when nothing in them survived).
    pub segments_rewritten: usize,
    /// Events discarded.
    pub events_removed: u64,
    /// Bytes of discarded records.
    pub bytes_removed: u64,
    /// Bytes in segment files before compaction.
    pub bytes_before: u64,
    /// Bytes in segment files after compaction.
    pub bytes_after: u64,
    /// Snapshot files of deleted streams removed.
    pub snapshots_removed: usize,
    /// Wall time the compaction took.
    pub duration: Duration,
}

pub(crate) enum CompactorRequest {
    /// Run a compaction now and answer.
    Compact { reply: Sender<Result<CompactionReport>> },
    /// Something changed: check the automatic threshold.
    Nudge,
}

/// Starts the compaction thread; it stops when every sender is dropped.
pub(crate) fn spawn(shared: Arc<Shared>, requests: Receiver<CompactorRequest>) -> Result<JoinHandle<()>> {
    let dir = shared.dir.clone();
    std::thread::Builder::new()
        .name("chronicle-compactor".into())
        .spawn(move || run_thread(&shared, &requests))
        .map_err(|e| Error::io("spawn compaction thread", &dir, e))
}

fn run_thread(shared: &Shared, requests: &Receiver<CompactorRequest>) {
    let threshold = shared.options.compaction_threshold_bytes;
    loop {
        let request = match threshold {
            Some(_) => requests.recv_timeout(AUTO_COMPACTION_CHECK_INTERVAL),
            None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match request {
            Ok(CompactorRequest::Compact { reply }) => {
                let _ = reply.send(compact(shared));
            }
            Ok(CompactorRequest::Nudge) | Err(RecvTimeoutError::Timeout) => {
                let Some(threshold) = threshold else { continue };
                let discardable = match plan::plan(shared) {
                    Ok(plans) => plans.iter().map(|p| p.discard_bytes).sum(),
                    Err(error) => {
                        tracing::error!(%error, "cannot plan a compaction");
                        0
                    }
                };
                if discardable >= threshold {
                    match compact(shared) {
                        Ok(report) => tracing::info!(?report, "automatic compaction finished"),
                        Err(Error::Closed) => tracing::info!("automatic compaction stopped: the store is closing"),
                        Err(error) => tracing::error!(%error, "automatic compaction failed"),
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn segment_bytes(shared: &Shared) -> u64 {
    shared.segments().iter().map(|s| s.committed_len()).sum()
}

/// One compaction of every sealed segment.
pub(crate) fn compact(shared: &Shared) -> Result<CompactionReport> {
    let started = Instant::now();
    let _span = tracing::info_span!("compaction", dir = %shared.dir.display()).entered();
    let metrics = &shared.metrics;
    metrics.compaction_running.store(true, std::sync::atomic::Ordering::Relaxed);
    let result = compact_runs(shared, started);
    metrics.compaction_running.store(false, std::sync::atomic::Ordering::Relaxed);
    if result.is_ok() {
        metrics.compactions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    result
}

fn compact_runs(shared: &Shared, started: Instant) -> Result<CompactionReport> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut report = CompactionReport { bytes_before: segment_bytes(shared), ..CompactionReport::default() };
    let runs = plan::runs(plan::plan(shared)?, shared.options.segment_bytes);
    shared.metrics.compaction_runs_total.store(runs.len() as u64, Relaxed);
    shared.metrics.compaction_runs_done.store(0, Relaxed);
    for (done, run) in runs.into_iter().enumerate() {
        tracing::info!(run = done + 1, segments = run.len(), "compacting a run of sealed segments");
        let events_removed = rewrite::apply(shared, &run)?;
        shared.metrics.compaction_runs_done.store(done as u64 + 1, Relaxed);
        report.segments_rewritten += run.len();
        report.events_removed += events_removed;
        report.bytes_removed += run.iter().map(|p| p.discard_bytes).sum::<u64>();
    }
    for stream in shared.deleted_streams().iter() {
        report.snapshots_removed += shared.snapshots.remove_stream(stream)?;
    }
    report.bytes_after = segment_bytes(shared);
    report.duration = started.elapsed();
    tracing::info!(?report, "compaction finished");
    Ok(report)
}
