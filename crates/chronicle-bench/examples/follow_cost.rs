//! A fixed-size follow run for instruction counts (issue 11): SUBSCRIBERS threads follow the
//! log with FILTER while one thread makes APPENDS 1-event `Buffered` appends of 100 bytes to
//! `cat{n % 100}-0`; each subscriber stops once it has received every matching event, so the
//! run's work does not depend on timing (only how many rounds the deliveries take does).
//!
//! ```text
//! # FILTER: all | cat7 (1 %) | rare (event type, 1 %)
//! valgrind --tool=callgrind --separate-threads=yes \
//!     target/release/examples/follow_cost 10 20000 all
//! callgrind_annotate --inclusive=yes callgrind.out.PID-THREAD
//! ```
//!
//! Per delivered event = (run with N appends − run with M appends) ÷ deliveries difference,
//! so that opening, spawning and closing cancel out.

use std::time::Instant;

use chronicle::{Durability, ExpectedVersion, Filter, NewEvent, Options, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let subscribers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let appends: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let filter_name = args.next().unwrap_or_else(|| "all".into());
    let (filter, expected) = match filter_name.as_str() {
        "cat7" => (Filter::category("cat7"), appends / 100 + u64::from(appends % 100 > 7)),
        "rare" => (Filter::event_types(["Rare"]), appends.div_ceil(100)),
        _ => (Filter::all(), appends),
    };
    let dir = tempfile::tempdir()?;
    let store = Store::open_with(dir.path(), Options::default().durability(Durability::Buffered))?;
    let followers: Vec<_> = (0..subscribers)
        .map(|_| {
            let subscription = store.subscribe(0, filter.clone())?;
            Ok(std::thread::Builder::new().name("follow-sub".into()).spawn(move || {
                let mut received = 0u64;
                for event in subscription.take(usize::try_from(expected).unwrap_or(usize::MAX)) {
                    std::hint::black_box(event?);
                    received += 1;
                }
                Ok::<u64, chronicle::Error>(received)
            })?)
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    let data = vec![7u8; 100];
    let started = Instant::now();
    for n in 0..appends {
        let event_type = if n.is_multiple_of(100) { "Rare" } else { "OrderPlaced" };
        store.append(&format!("cat{}-0", n % 100), ExpectedVersion::Any, [NewEvent::new(event_type, data.clone())])?;
    }
    let appended = started.elapsed();
    let mut delivered = 0u64;
    for follower in followers {
        delivered += follower.join().map_err(|_| "subscriber panicked")??;
    }
    println!(
        "{appends} appends in {:.3} s, {delivered} deliveries to {subscribers} subscribers ({filter_name}) in {:.3} s",
        appended.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    store.close()?;
    Ok(())
}
