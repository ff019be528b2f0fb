//! The disk's own limit: raw loops writing the same event bytes as the engines, each event
//! framed by a 32-byte header, with write() + fdatasync per batch (or no fsync for
//! non-durable runs); a raw read() + CRC loop for replay; and the machine's "disk" section
//! (fdatasync latency, sequential durable bandwidth).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::engines::{EVENT_TYPE, Res};
use crate::report::Latencies;

/// Bytes of the raw frame header: len u32 | crc u32 | position u64 | version u64 |
/// stream_len u16 | type_len u16 | data_len u32.
pub const RAW_HEADER_BYTES: usize = 32;

/// Bytes one event takes in the raw log.
pub fn raw_event_bytes(stream: &str, data_bytes: usize) -> usize {
    RAW_HEADER_BYTES + stream.len() + EVENT_TYPE.len() + data_bytes
}

/// Appends one framed event to `buf`.
pub fn push_event(buf: &mut Vec<u8>, position: u64, version: u64, stream: &str, data: &[u8]) {
    let start = buf.len();
    let len = raw_event_bytes(stream, data.len()) as u32;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&position.to_le_bytes());
    buf.extend_from_slice(&version.to_le_bytes());
    buf.extend_from_slice(&(stream.len() as u16).to_le_bytes());
    buf.extend_from_slice(&(EVENT_TYPE.len() as u16).to_le_bytes());
    buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
    buf.extend_from_slice(stream.as_bytes());
    buf.extend_from_slice(EVENT_TYPE.as_bytes());
    buf.extend_from_slice(data);
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Result of a timed raw append loop.
pub struct RawRun {
    pub events: u64,
    pub elapsed: Duration,
    /// One sample per write (+ fdatasync).
    pub latencies: Latencies,
}

/// How the raw loop treats its file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RawFile {
    /// A new file that grows with every write, as chronicle's segments do.
    Append,
    /// A file written and synced beforehand, overwritten in place (no size change per sync).
    Preallocated,
}

/// Writes `events_per_write` events per write() for `run`, with an fdatasync after each
/// write if `durable`.
pub fn append_loop(
    path: &Path,
    events_per_write: usize,
    data: &[u8],
    durable: bool,
    mode: RawFile,
    run: Duration,
) -> Res<RawRun> {
    let stream = "raw-stream-0";
    let mut buf = Vec::new();
    for i in 0..events_per_write as u64 {
        push_event(&mut buf, i, i, stream, data);
    }
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path)?;
    // The loop wraps around at the end; 64 MiB keeps the setup short.
    let prealloc_bytes: u64 = 64 << 20;
    if mode == RawFile::Preallocated {
        // Real bytes, not a hole: a sparse file would allocate blocks on every write.
        let chunk = vec![0u8; 8 << 20];
        let mut written = 0;
        while written < prealloc_bytes {
            file.write_all_at(&chunk, written)?;
            written += chunk.len() as u64;
        }
        file.sync_all()?;
    }
    let mut latencies = Latencies::with_capacity(1 << 16);
    let mut offset = 0u64;
    let mut events = 0u64;
    let start = Instant::now();
    while start.elapsed() < run {
        let begin = Instant::now();
        if mode == RawFile::Preallocated && offset + buf.len() as u64 > prealloc_bytes {
            offset = 0;
        }
        file.write_all_at(&buf, offset)?;
        if durable {
            file.sync_data()?;
        }
        latencies.record(begin.elapsed());
        offset += buf.len() as u64;
        events += events_per_write as u64;
    }
    let elapsed = start.elapsed();
    drop(file);
    std::fs::remove_file(path)?;
    Ok(RawRun { events, elapsed, latencies })
}

/// Writes `events` framed events (streams interleaved like the engines' data set) to
/// `path` without fsync; returns the bytes written.
pub fn write_log(path: &Path, streams: &[String], events_per_stream: usize, data: &[u8]) -> Res<u64> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut buf = Vec::with_capacity(4096);
    let mut position = 0u64;
    let mut bytes = 0u64;
    for version in 0..events_per_stream as u64 {
        for stream in streams {
            buf.clear();
            push_event(&mut buf, position, version, stream, data);
            out.write_all(&buf)?;
            bytes += buf.len() as u64;
            position += 1;
        }
    }
    out.flush()?;
    Ok(bytes)
}

/// Reads the raw log with read() in 1 MiB chunks, verifying every frame's CRC and touching
/// every field; returns (events, digest).
pub fn replay(path: &Path) -> Res<(u64, u64)> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0usize;
    let mut count = 0u64;
    let mut acc = 0u64;
    loop {
        let read = file.read(&mut buf[filled..])?;
        filled += read;
        let mut at = 0usize;
        while filled - at >= RAW_HEADER_BYTES {
            let len = u32::from_le_bytes(buf[at..at + 4].try_into()?) as usize;
            if len < RAW_HEADER_BYTES || len > buf.len() {
                return Err("raw log: bad frame length".into());
            }
            if filled - at < len {
                break;
            }
            let frame = &buf[at..at + len];
            let crc = u32::from_le_bytes(frame[4..8].try_into()?);
            if crc32fast::hash(&frame[8..]) != crc {
                return Err("raw log: checksum mismatch".into());
            }
            let position = u64::from_le_bytes(frame[8..16].try_into()?);
            let version = u64::from_le_bytes(frame[16..24].try_into()?);
            let stream_len = u16::from_le_bytes(frame[24..26].try_into()?) as usize;
            let type_len = u16::from_le_bytes(frame[26..28].try_into()?) as usize;
            let data_len = u32::from_le_bytes(frame[28..32].try_into()?) as usize;
            let data = &frame[RAW_HEADER_BYTES + stream_len + type_len..];
            acc = acc
                .wrapping_mul(31)
                .wrapping_add(position ^ version ^ (stream_len + type_len) as u64)
                .wrapping_add(data_len as u64 + data.first().copied().unwrap_or(0) as u64);
            count += 1;
            at += len;
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
        if read == 0 {
            if filled != 0 {
                return Err("raw log: torn last frame".into());
            }
            return Ok((count, acc));
        }
    }
}

/// The machine's disk: fdatasync latency (appending and in place) and sequential durable
/// write bandwidth.
pub struct DiskFigures {
    pub append_sync: Latencies,
    pub overwrite_sync: Latencies,
    pub bandwidth_bytes_per_s: f64,
    pub bandwidth_chunk_bytes: usize,
}

pub fn measure_disk(dir: &Path, syncs: usize, bandwidth_bytes: usize) -> Res<DiskFigures> {
    let page = vec![0xA5u8; 4096];
    // Appending 4 KiB + fdatasync: every sync also commits the new file size.
    let path = dir.join("disk-append.tmp");
    let file = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    let mut append_sync = Latencies::with_capacity(syncs);
    for i in 0..syncs as u64 {
        let begin = Instant::now();
        file.write_all_at(&page, i * 4096)?;
        file.sync_data()?;
        append_sync.record(begin.elapsed());
    }
    drop(file);
    // Overwriting 4 KiB in place + fdatasync: data only, no metadata.
    let file = OpenOptions::new().write(true).open(&path)?;
    let mut overwrite_sync = Latencies::with_capacity(syncs);
    for i in 0..syncs as u64 {
        let begin = Instant::now();
        file.write_all_at(&page, i * 4096)?;
        file.sync_data()?;
        overwrite_sync.record(begin.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    // Sequential durable bandwidth: 1 MiB writes, each followed by fdatasync.
    let chunk_bytes = 1 << 20;
    let chunk = vec![0x5Au8; chunk_bytes];
    let path = dir.join("disk-bandwidth.tmp");
    let mut file = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    let begin = Instant::now();
    let mut written = 0;
    while written < bandwidth_bytes {
        file.write_all(&chunk)?;
        file.sync_data()?;
        written += chunk_bytes;
    }
    let elapsed = begin.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(DiskFigures {
        append_sync,
        overwrite_sync,
        bandwidth_bytes_per_s: written as f64 / elapsed,
        bandwidth_chunk_bytes: chunk_bytes,
    })
}
