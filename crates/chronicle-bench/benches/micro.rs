//! Criterion micro-benchmarks: chronicle's public API (appends with `Durability::Buffered`,
//! reading one stream, reading the whole log), its internals through the hidden
//! `chronicle::internal::bench` (record encode and decode, CRC-32, index lookup and parse), and the
//! storage seam against `std::fs::File` and `memmap2` called directly. Kept short: small
//! samples and measurement times. docs/performance.md lists every group with figures.
//!
//! ```text
//! cargo bench --bench micro
//! cargo bench --bench micro -- storage_seam     # one group
//! cargo bench --bench micro -- --quick          # a rough pass
//! ```

use std::hint::black_box;
use std::time::Duration;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chronicle::internal::bench::{self as bench_api, EventRecord, Index, IndexEntries};
use chronicle::storage::{FileSystem, OpenMode, Storage, StorageFile};
use chronicle::{Durability, ExpectedVersion, NewEvent, Options, Store};
use criterion::{BatchSize, Bencher, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const DATA_BYTES: usize = 100;
const EVENT_TYPE: &str = "OrderPlaced";
/// Segment id salting the records and index files built here.
const SEGMENT_ID: u64 = 7;

fn data() -> Bytes {
    Bytes::from((0..DATA_BYTES).map(|i| (i * 7) as u8).collect::<Vec<u8>>())
}

fn buffered_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_with(dir.path(), Options::default().durability(Durability::Buffered)).expect("open");
    (dir, store)
}

fn append(c: &mut Criterion) {
    let (_dir, store) = buffered_store();
    let payload = data();
    let mut group = c.benchmark_group("append_buffered");
    for events in [1usize, 100, 1000] {
        group.throughput(Throughput::Elements(events as u64));
        group.bench_function(format!("{events}_events"), |b| {
            b.iter_batched(
                || (0..events).map(|_| NewEvent::new(EVENT_TYPE, payload.clone())).collect::<Vec<_>>(),
                |batch| store.append(black_box("bench-stream"), ExpectedVersion::Any, batch).expect("append"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn read_stream(c: &mut Criterion) {
    let (_dir, store) = buffered_store();
    let payload = data();
    // 100 events in the target stream, interleaved with other streams' events.
    for _ in 0..100 {
        for other in 0..10 {
            store
                .append(&format!("other-{other}"), ExpectedVersion::Any, [NewEvent::new(EVENT_TYPE, payload.clone())])
                .expect("append");
        }
        store.append("target", ExpectedVersion::Any, [NewEvent::new(EVENT_TYPE, payload.clone())]).expect("append");
    }
    let read_target = |store: &Store| {
        store.read_stream(black_box("target"), 0).expect("read").map(|e| e.expect("event").data.len()).sum::<usize>()
    };
    let mut group = c.benchmark_group("read_stream");
    group.throughput(Throughput::Elements(100));
    group.bench_function("100_events_active_segment", |b| b.iter(|| read_target(&store)));
    // The same stream once its segment is sealed (mapped index file).
    store.seal().expect("seal");
    group.bench_function("100_events_sealed_segment", |b| b.iter(|| read_target(&store)));
    group.finish();
}

fn read_all(c: &mut Criterion) {
    const EVENTS: usize = 100_000;
    let (_dir, store) = buffered_store();
    let payload = data();
    for chunk in 0..EVENTS / 1000 {
        let events = (0..1000).map(|_| NewEvent::new(EVENT_TYPE, payload.clone()));
        store.append(&format!("stream-{}", chunk % 100), ExpectedVersion::Any, events).expect("append");
    }
    store.seal().expect("seal");
    let mut group = c.benchmark_group("read_all");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("100k_events", |b| {
        b.iter(|| store.read_all(0).expect("read").map(|e| e.expect("event").data.len()).sum::<usize>())
    });
    group.finish();
}

fn crc(c: &mut Criterion) {
    let block: Vec<u8> = (0..4096).map(|i| (i * 31) as u8).collect();
    let mut group = c.benchmark_group("crc32fast");
    group.throughput(Throughput::Bytes(block.len() as u64));
    group.bench_function("4_KiB", |b| b.iter(|| crc32fast::hash(black_box(&block))));
    // What each record costs: the salt, then the record from byte 8 on.
    let record = encoded_record();
    group.throughput(Throughput::Bytes(record.len() as u64));
    group.bench_function("salted_one_record", |b| {
        b.iter(|| bench_api::crc32_salted(SEGMENT_ID, black_box(&record[8..])))
    });
    group.finish();
}

/// A typical event: 100 bytes of data, no metadata, no correlation or causation id.
fn event_record(data: &[u8]) -> EventRecord<'_> {
    EventRecord {
        position: 123_456,
        version: 42,
        timestamp_us: 1_700_000_000_000_000,
        id: 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        stream_id: "stream-000123",
        event_type: EVENT_TYPE,
        metadata: &[],
        data,
    }
}

fn encoded_record() -> Vec<u8> {
    let payload = data();
    let mut record = Vec::new();
    bench_api::encode_record(&mut record, SEGMENT_ID, &event_record(&payload));
    record
}

fn record(c: &mut Criterion) {
    let payload = data();
    let event = event_record(&payload);
    let encoded = encoded_record();
    assert_eq!(bench_api::decode_record(&encoded, SEGMENT_ID), Some(encoded.len()));
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    let mut buf = Vec::with_capacity(encoded.len());
    group.bench_function("encode_100_B_data", |b| {
        b.iter(|| {
            buf.clear();
            bench_api::encode_record(&mut buf, SEGMENT_ID, black_box(&event))
        })
    });
    group.bench_function("decode_with_crc_100_B_data", |b| {
        b.iter(|| bench_api::decode_record(black_box(&encoded), SEGMENT_ID))
    });
    group.finish();
}

const INDEX_STREAMS: usize = 10_000;
const INDEX_EVENTS_PER_STREAM: u64 = 10;
const INDEX_RECORD_BYTES: u32 = 188;
const SEGMENT_HEADER_BYTES: u32 = 64;

fn index_stream_name(stream: usize) -> String {
    format!("stream-{stream:06}")
}

/// An active index of one segment holding `INDEX_STREAMS` streams of
/// `INDEX_EVENTS_PER_STREAM` events each, written round-robin (streams interleaved as
/// concurrent writers leave them); returns it with the segment's covered length.
fn active_index() -> (Index, u64) {
    let mut index = Index::active();
    let mut position = 0u64;
    for version in 0..INDEX_EVENTS_PER_STREAM {
        for stream in 0..INDEX_STREAMS {
            let offset = SEGMENT_HEADER_BYTES + position as u32 * INDEX_RECORD_BYTES;
            index.push(&index_stream_name(stream), version, position, offset, INDEX_RECORD_BYTES);
            position += 1;
        }
    }
    (index, u64::from(SEGMENT_HEADER_BYTES) + position * u64::from(INDEX_RECORD_BYTES))
}

/// Writes `bytes` to a new file at `path` and maps it back, as sealing and open do.
fn write_and_map(path: &Path, bytes: &[u8]) -> Bytes {
    let file = FileSystem.open(path, OpenMode::CreateNew).expect("create index file");
    file.write_all_at(bytes, 0).expect("write index file");
    drop(file);
    let file = FileSystem.open(path, OpenMode::Read).expect("open index file");
    let len = file.len().expect("index file length");
    map_via_seam(&*file, len)
}

fn index(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (active, covered_bytes) = active_index();
    let file_bytes = active.encode_file(SEGMENT_ID, covered_bytes).expect("active index encodes");
    let mapped = write_and_map(&dir.path().join("segment.idx"), &file_bytes);
    let sealed = Index::parse_file(mapped.clone(), SEGMENT_ID).expect("index file parses");
    // Streams visited in a scattered order (7919 is prime, so this is a permutation).
    let names: Vec<String> = (0..INDEX_STREAMS).map(|i| index_stream_name(i * 7919 % INDEX_STREAMS)).collect();
    let mut group = c.benchmark_group("index_lookup");
    group.throughput(Throughput::Elements(INDEX_EVENTS_PER_STREAM));
    for (label, index) in [("active", &active), ("sealed_mmap", &sealed)] {
        let mut found = IndexEntries::default();
        let mut next = 0usize;
        group.bench_function(format!("{label}_10_entries_among_10k_streams"), |b| {
            b.iter(|| {
                found.clear();
                index.stream_entries(black_box(&names[next]), 0, u64::MAX, &mut found).expect("lookup");
                next = (next + 1) % names.len();
                found.len()
            })
        });
        found.clear();
        index.stream_entries(&names[0], 0, u64::MAX, &mut found).expect("lookup");
        assert_eq!(found.len() as u64, INDEX_EVENTS_PER_STREAM, "{label} index finds every entry");
    }
    group.finish();
    let mut group = c.benchmark_group("index_file");
    group.throughput(Throughput::Elements(INDEX_STREAMS as u64 * INDEX_EVENTS_PER_STREAM));
    group.bench_function("parse_100k_entries_10k_streams", |b| {
        b.iter(|| Index::parse_file(black_box(mapped.clone()), SEGMENT_ID).is_ok())
    });
    group.finish();
}

/// Size of the file the write benchmarks overwrite, cycling through it.
const SEAM_FILE_BYTES: u64 = 1 << 20;

/// The storage seam against the standard library on the same file: writes (with and without
/// fdatasync) through `Arc<dyn StorageFile>` from `FileSystem` as the engine holds them, and
/// through `std::fs::File`; mapping and reading a file through `StorageFile::map` and through
/// `memmap2` with the same options.
fn storage_seam(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    // The engine holds its storage as a trait object chosen at run time; black_box keeps the
    // compiler from seeing through it.
    let storage: Arc<dyn Storage> = black_box(Arc::new(FileSystem));
    let mut group = c.benchmark_group("storage_seam");

    // Writes overwrite a synced, fully written file, so every fdatasync flushes data only
    // (no size change to commit) and both sides see the same blocks.
    let path = dir.path().join("writes");
    std::fs::write(&path, vec![0u8; SEAM_FILE_BYTES as usize]).expect("write file");
    File::open(&path).and_then(|f| f.sync_all()).expect("sync file");
    let std_file = File::options().read(true).write(true).open(&path).expect("open with std");
    let seam_file: Arc<dyn StorageFile> = black_box(storage.open(&path, OpenMode::ReadWrite).expect("open via seam"));
    for (label, block_bytes) in [("4_KiB", 4096u64), ("64_KiB", 65536)] {
        let block = vec![0x5au8; block_bytes as usize];
        group.throughput(Throughput::Bytes(block_bytes));
        for sync in [true, false] {
            let name = if sync { format!("write_fdatasync_{label}") } else { format!("write_{label}") };
            group.bench_function(BenchmarkId::new(&name, "std_file"), |b| {
                bench_write(b, &block, sync, |buf, at| std_file.write_all_at(buf, at), || std_file.sync_data())
            });
            group.bench_function(BenchmarkId::new(&name, "seam"), |b| {
                bench_write(b, &block, sync, |buf, at| seam_file.write_all_at(buf, at), || seam_file.sync_data())
            });
        }
    }

    // Map a file already open and read every byte (CRC-32), then unmap: what open does per
    // index file and a reader per segment.
    for (label, file_bytes) in [("64_KiB", 65536u64), ("1_MiB", 1 << 20)] {
        let path = dir.path().join(format!("map-{label}"));
        std::fs::write(&path, (0..file_bytes).map(|i| (i * 13) as u8).collect::<Vec<u8>>()).expect("write file");
        let std_file = File::open(&path).expect("open with std");
        let seam_file: Arc<dyn StorageFile> = black_box(storage.open(&path, OpenMode::Read).expect("open via seam"));
        let name = format!("map_read_{label}");
        group.throughput(Throughput::Bytes(file_bytes));
        group.bench_function(BenchmarkId::new(&name, "memmap2"), |b| {
            b.iter(|| crc32fast::hash(&map_directly(&std_file, file_bytes)))
        });
        group.bench_function(BenchmarkId::new(&name, "seam"), |b| {
            b.iter(|| crc32fast::hash(&map_via_seam(&*seam_file, file_bytes)))
        });
    }
    group.finish();
}

/// Times one write of `block` per iteration (plus `sync_data` if `sync`), cycling through the
/// first [`SEAM_FILE_BYTES`] of the file. Generic, so neither side pays an extra indirection.
fn bench_write<W, S>(b: &mut Bencher<'_>, block: &[u8], sync: bool, write_all_at: W, sync_data: S)
where
    W: Fn(&[u8], u64) -> io::Result<()>,
    S: Fn() -> io::Result<()>,
{
    let mut offset = 0u64;
    b.iter(|| {
        write_all_at(black_box(block), offset).expect("write");
        if sync {
            sync_data().expect("fdatasync");
        }
        offset = (offset + block.len() as u64) % SEAM_FILE_BYTES;
    })
}

/// `memmap2` called as `StorageFile::map` of `FileSystem` calls it.
#[allow(unsafe_code)]
fn map_directly(file: &File, len: u64) -> memmap2::Mmap {
    // SAFETY: a private temporary file that nothing writes or truncates while it is mapped.
    unsafe { memmap2::MmapOptions::new().len(len as usize).map(file) }.expect("map with memmap2")
}

/// `StorageFile::map` of the seam.
#[allow(unsafe_code)]
fn map_via_seam(file: &dyn StorageFile, len: u64) -> Bytes {
    // SAFETY: a private temporary file, mapped no longer than its length, that nothing writes
    // or truncates while it is mapped.
    unsafe { file.map(len) }.expect("map via seam")
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = append, read_stream, read_all, crc, record, index, storage_seam
}
criterion_main!(benches);
