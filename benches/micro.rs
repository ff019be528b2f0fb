//! Criterion micro-benchmarks of chronicle's public API: appends with
//! `Durability::Buffered` (no fsync on the path), reading one stream, reading the whole
//! log, and CRC-32 over 4 KiB. Kept short: small samples and measurement times.
//!
//! ```text
//! cargo bench --bench micro
//! cargo bench --bench micro -- append     # one group
//! ```

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use chronicle::{Durability, ExpectedVersion, NewEvent, Options, Store};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const DATA_BYTES: usize = 100;
const EVENT_TYPE: &str = "OrderPlaced";

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
    for events in [1usize, 100] {
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
    let mut group = c.benchmark_group("read_stream");
    group.throughput(Throughput::Elements(100));
    group.bench_function("100_events_active_segment", |b| {
        b.iter(|| {
            store
                .read_stream(black_box("target"), 0)
                .expect("read")
                .map(|e| e.expect("event").data.len())
                .sum::<usize>()
        })
    });
    // The same stream once its segment is sealed (mapped index file).
    store.seal().expect("seal");
    group.bench_function("100_events_sealed_segment", |b| {
        b.iter(|| {
            store
                .read_stream(black_box("target"), 0)
                .expect("read")
                .map(|e| e.expect("event").data.len())
                .sum::<usize>()
        })
    });
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
    group.finish();
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
    targets = append, read_stream, read_all, crc
}
criterion_main!(benches);
