//! Quickstart: open a store, append to a few streams with optimistic concurrency, read the
//! events back. Run it twice to see the second run pick up where the first left off:
//!
//! ```text
//! cargo run --example quickstart              # uses ./quickstart-data
//! cargo run --example quickstart -- /tmp/my-store
//! ```

use chronicle::{Error, ExpectedVersion, NewEvent, Store, StreamAppend};

fn main() -> Result<(), Error> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "./quickstart-data".to_string());
    let store = Store::open(&dir)?;
    println!("opened store in {dir}");

    let earlier = store.read_all(0)?.count();
    if earlier == 0 {
        println!("found no events from earlier runs: this is the first run");
    } else {
        println!("found {earlier} events from earlier runs in {} streams", store.streams()?.len());
    }
    let run = store.stream_version("quickstart-runs")?.map_or(1, |v| v + 2);

    // Each order moves one step further per run. The expected version makes the append
    // fail instead of silently interleaving if someone else changed the order meanwhile.
    let steps = ["OrderPlaced", "ItemAdded", "OrderPaid", "OrderShipped", "OrderDelivered"];
    for order in ["order-1001", "order-1002", "order-1003"] {
        let (expected, step) = match store.stream_version(order)? {
            None => (ExpectedVersion::NoStream, 0),
            Some(last) => (ExpectedVersion::Exact(last), (last as usize + 1) % steps.len()),
        };
        let data = format!(r#"{{"order":"{order}","run":{run}}}"#);
        let event = NewEvent::new(steps[step], data).with_metadata(r#"{"source":"quickstart"}"#);
        let written = store.append(order, expected, [event])?;
        println!(
            "appended {} to {order} as version {} (global position {}), expecting {expected:?}",
            steps[step], written.first_version, written.first_position
        );
    }

    // A stale expected version is refused and nothing is written.
    match store.append("order-1001", ExpectedVersion::NoStream, [NewEvent::new("OrderPlaced", "{}")]) {
        Err(Error::WrongExpectedVersion { actual, .. }) => {
            println!("re-creating order-1001 was refused: it already exists at version {actual:?}")
        }
        other => println!("unexpected outcome of a stale append: {other:?}"),
    }

    // Several streams in one atomic append: all of it is written, or none.
    let results = store.append_multi([
        StreamAppend::new("inventory", ExpectedVersion::Any, [NewEvent::new("StockReserved", r#"{"sku":"A-1"}"#)]),
        StreamAppend::new("quickstart-runs", ExpectedVersion::Any, [NewEvent::new("RunFinished", format!("{run}"))]),
    ])?;
    println!(
        "appended to inventory and quickstart-runs atomically at positions {}..={}",
        results[0].first_position, results[1].last_position
    );

    println!("order-1001 now holds:");
    for event in store.read_stream("order-1001", 0)? {
        let event = event?;
        println!("  v{} {} {}", event.version, event.event_type, String::from_utf8_lossy(&event.data));
    }
    println!("the last 5 events of the whole store, newest first:");
    for event in store.read_all_backward(None)?.take(5) {
        let event = event?;
        println!("  #{} {} v{} {}", event.position, event.stream_id, event.version, event.event_type);
    }

    let total = store.read_all(0)?.count();
    store.close()?;
    println!("run {run} done: {total} events in total ({} from this run); run again to continue", total - earlier);
    Ok(())
}
