//! Fills a store for trying the `chronicle` command on something larger:
//! `cargo run --release --example fill -- DIR EVENTS` appends EVENTS events of ~100 bytes
//! to 1,000 streams in batches of 100 (Buffered durability, one sync at the end).

use chronicle::{Durability, ExpectedVersion, NewEvent, Options, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: fill DIR EVENTS")?;
    let events: u64 = args.next().ok_or("usage: fill DIR EVENTS")?.parse()?;
    let store = Store::open_with(&dir, Options::default().durability(Durability::Buffered))?;
    let started = std::time::Instant::now();
    let mut written = 0u64;
    while written < events {
        let n = (events - written).min(100);
        let stream =
            format!("{}-{}", ["order", "account", "cart", "user"][(written / 100 % 4) as usize], written / 100 % 1000);
        let batch =
            (0..n).map(|i| NewEvent::new("Filled", format!(r#"{{"n":{},"pad":"{}"}}"#, written + i, "x".repeat(70))));
        store.append(&stream, ExpectedVersion::Any, batch)?;
        written += n;
    }
    store.sync()?;
    store.close()?;
    println!("{events} events in {:?}", started.elapsed());
    Ok(())
}
