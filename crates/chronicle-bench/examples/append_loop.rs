//! A bare append loop for profiling and A/B runs: THREADS threads append BATCH-event batches
//! (100-byte events) to their own streams for 3 seconds and the rate is printed.
//!
//! ```text
//! cargo run --release --example append_loop -- 64 1          # Sync, 64 threads, 1 event each
//! cargo run --release --example append_loop -- 1 1000        # Sync, 1000-event batches
//! cargo run --release --example append_loop -- 1 1 buffered  # no fsync (W3's shape)
//! cargo run --release --example append_loop -- 1 1 coalesced # Buffered + coalesce_writes(1 ms)
//! # a fixed number of appends instead of 3 seconds (for instruction counts under callgrind):
//! valgrind --tool=callgrind target/release/examples/append_loop 1 1 buffered 100000
//! perf record -g target/release/examples/append_loop 64 1   # where the time goes
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chronicle::{Durability, ExpectedVersion, NewEvent, Options, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let mode = args.next();
    let durability = match mode.as_deref() {
        Some("buffered" | "coalesced") => Durability::Buffered,
        _ => Durability::Sync,
    };
    // Per thread, instead of running for 3 seconds.
    let appends_max: Option<u64> = args.next().and_then(|a| a.parse().ok());
    let mut options = Options::default().durability(durability);
    if mode.as_deref() == Some("coalesced") {
        options = options.coalesce_writes(Duration::from_millis(1));
    }
    let dir = tempfile::tempdir()?;
    let store = Store::open_with(dir.path(), options)?;
    let data = bytes::Bytes::from(vec![7u8; 100]);
    let stop = AtomicBool::new(false);
    let appended = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let (store, data, stop, appended) = (&store, &data, &stop, &appended);
            scope.spawn(move || {
                let stream = format!("stream-{thread}");
                let mut appends = 0u64;
                while !stop.load(Ordering::Relaxed) && appends_max.is_none_or(|max| appends < max) {
                    appends += 1;
                    let events: Vec<_> = (0..batch).map(|_| NewEvent::new("OrderPlaced", data.clone())).collect();
                    if let Err(error) = store.append(&stream, ExpectedVersion::Any, events) {
                        eprintln!("append failed: {error}");
                        return;
                    }
                    appended.fetch_add(batch as u64, Ordering::Relaxed);
                }
            });
        }
        if appends_max.is_none() {
            std::thread::sleep(Duration::from_secs(3));
            stop.store(true, Ordering::Relaxed);
        }
    });
    let rate = appended.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!("{threads} threads x {batch} events ({durability:?}): {rate:.0} events/s");
    store.close()?;
    Ok(())
}
