//! Criterion benchmarks of the event-sourcing layer and the in-memory store:
//! - `store_backends`: appends and stream reads on disk (`Durability::Buffered`) and in
//!   memory (`Store::open_in_memory`), same workload;
//! - `typed_codec`: encoding and decoding one typed event with postcard and with JSON;
//! - `aggregate_load`: loading a 10,000-event aggregate with and without a snapshot.
//!
//! ```text
//! cargo bench -p chronicle-bench --bench typed
//! cargo bench -p chronicle-bench --bench typed -- aggregate_load   # one group
//! ```

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use chronicle::typed::{Aggregate, Codec, Event, Repository, Schema, SnapshotPolicy};
use chronicle::{Durability, ExpectedVersion, NewEvent, Options, Store};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};

const DATA_BYTES: usize = 100;

fn data() -> Bytes {
    Bytes::from((0..DATA_BYTES).map(|i| (i * 7) as u8).collect::<Vec<u8>>())
}

fn disk_store() -> (Option<tempfile::TempDir>, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_with(dir.path(), Options::default().durability(Durability::Buffered)).expect("open");
    (Some(dir), store)
}

fn memory_store() -> (Option<tempfile::TempDir>, Store) {
    (None, Store::open_in_memory().expect("open"))
}

fn store_backends(c: &mut Criterion) {
    let payload = data();
    let mut group = c.benchmark_group("store_backends");
    for (name, make) in [("disk_buffered", disk_store as fn() -> _), ("in_memory", memory_store)] {
        let (_dir, store) = make();
        for events in [1usize, 100] {
            group.throughput(Throughput::Elements(events as u64));
            group.bench_function(format!("{name}/append_{events}"), |b| {
                b.iter_batched(
                    || (0..events).map(|_| NewEvent::new("OrderPlaced", payload.clone())).collect::<Vec<_>>(),
                    |batch| store.append(black_box("bench"), ExpectedVersion::Any, batch).expect("append"),
                    BatchSize::SmallInput,
                )
            });
        }
        let (_dir, store) = make();
        store
            .append("target", ExpectedVersion::Any, (0..100).map(|_| NewEvent::new("T", payload.clone())))
            .expect("append");
        group.throughput(Throughput::Elements(100));
        group.bench_function(format!("{name}/read_stream_100"), |b| {
            b.iter(|| {
                store
                    .read_stream(black_box("target"), 0)
                    .expect("read")
                    .map(|e| e.expect("event").data.len())
                    .sum::<usize>()
            })
        });
        // Read-your-writes: one append then one read of the stream, as a repository does.
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{name}/append_then_read_last"), |b| {
            b.iter(|| {
                let written =
                    store.append("rw", ExpectedVersion::Any, [NewEvent::new("T", payload.clone())]).expect("append");
                store.read_stream("rw", written.last_version).expect("read").count()
            })
        });
    }
    group.finish();
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Line {
    item: String,
    quantity: u32,
    price_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum OrderEvent {
    OrderPlaced { customer: String, lines: Vec<Line> },
    ItemAdded { line: Line },
}

impl Event for OrderEvent {
    const EVENT_TYPES: &'static [(&'static str, u32)] = &[("OrderPlaced", 1), ("ItemAdded", 1)];
    fn event_type(&self) -> &'static str {
        match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::ItemAdded { .. } => "ItemAdded",
        }
    }
}

fn placed() -> OrderEvent {
    OrderEvent::OrderPlaced {
        customer: "customer-000123".into(),
        lines: (0..3).map(|i| Line { item: format!("item-{i:04}"), quantity: i + 1, price_cents: 1250 }).collect(),
    }
}

fn typed_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("typed_codec");
    group.throughput(Throughput::Elements(1));
    for codec in [Codec::Postcard, Codec::Json] {
        let schema = Schema::<OrderEvent>::new().codec(codec);
        let event = placed();
        group.bench_function(format!("{}/encode", codec.name()), |b| {
            b.iter(|| schema.encode(black_box(&event)).expect("encode"))
        });
        let new_event = schema.encode(&event).expect("encode");
        let recorded = chronicle::RecordedEvent::new("order-1", 0, 0, "OrderPlaced", new_event.data().clone());
        println!("typed_codec/{}: {} bytes per event (6-byte header included)", codec.name(), new_event.data().len());
        group.bench_function(format!("{}/decode", codec.name()), |b| {
            b.iter(|| schema.decode(black_box(&recorded)).expect("decode"))
        });
    }
    group.finish();
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Order {
    customer: String,
    lines: Vec<Line>,
    total_cents: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Aggregate for Order {
    type Event = OrderEvent;
    type Command = Line;
    type Error = Never;
    const AGGREGATE_TYPE: &'static str = "order";
    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::OrderPlaced { customer, lines } => {
                self.customer.clone_from(customer);
                self.lines.clone_from(lines);
            }
            OrderEvent::ItemAdded { line } => {
                self.total_cents += u64::from(line.quantity) * line.price_cents;
                // Keep the state small, as real aggregates do: only the last few lines.
                if self.lines.len() >= 16 {
                    self.lines.remove(0);
                }
                self.lines.push(line.clone());
            }
        }
    }
    fn handle(&self, line: Line) -> Result<Vec<OrderEvent>, Never> {
        Ok(vec![OrderEvent::ItemAdded { line }])
    }
}

fn aggregate_load(c: &mut Criterion) {
    const EVENTS: u64 = 10_000;
    let mut group = c.benchmark_group("aggregate_load");
    group.throughput(Throughput::Elements(EVENTS));
    let store = Store::open_in_memory().expect("open");
    let schema = Schema::<OrderEvent>::new();
    let line = Line { item: "item-0001".into(), quantity: 2, price_cents: 1250 };
    let mut events = vec![schema.encode(&placed()).expect("encode")];
    events.extend((1..EVENTS).map(|_| schema.encode(&OrderEvent::ItemAdded { line: line.clone() }).expect("encode")));
    for (stream, chunk) in [("order-full", &events), ("order-snap", &events)] {
        for batch in chunk.chunks(1000) {
            store.append(stream, ExpectedVersion::Any, batch.to_vec()).expect("append");
        }
    }
    store.seal().expect("seal");
    // A snapshot 50 events before the end (policy: every 100 events).
    let repository = Repository::<Order>::new(store.clone()).snapshot_policy(SnapshotPolicy::Never);
    let mut state = Order::default();
    for event in store.read_stream("order-snap", 0).expect("read").take((EVENTS - 50) as usize) {
        state.apply(&schema.decode(&event.expect("event")).expect("decode").expect("known"));
    }
    let mut snapshot = vec![0xCE, 1, 1, 0, 0, 0];
    snapshot.extend(postcard::to_allocvec(&state).expect("state"));
    store.save_snapshot("order-snap", EVENTS - 51, &snapshot).expect("snapshot");
    group.bench_function("full_replay_10k", |b| b.iter(|| repository.load(black_box("full")).expect("load")));
    group.bench_function("snapshot_plus_50_of_10k", |b| b.iter(|| repository.load(black_box("snap")).expect("load")));
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
    targets = store_backends, typed_codec, aggregate_load
}
criterion_main!(benches);
