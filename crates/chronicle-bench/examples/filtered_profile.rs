//! The comparison program's filtered catch-up for a profiler: builds its data set once, then
//! reads the 1 % of it that one filter matches, once per process, so that callgrind or
//! `perf stat` sees that read and nothing else.
//!
//! ```text
//! filtered_profile build DIR EVENTS              # EVENTS in 1,000-event appends, as `--only follow`
//! filtered_profile read DIR category|type count|collect [PASSES]
//! valgrind --tool=callgrind --toggle-collect='*filtered_read*' target/release/examples/filtered_profile read DIR type count 2
//! ```
//!
//! The first pass after the open also verifies the index sections it uses (once per open);
//! the difference between the counts of 2 passes and 1 is the cost of one read on a warm store.
//!
//! The data set is the comparison program's: 10,000 streams `cat{s % 100}-{s}`, each written
//! by one append of 1,000 events, every 100th event of type `Rare` (the rest `OrderPlaced`),
//! 100 bytes of data each. `category` reads `Filter::category("cat42")`, `type` reads
//! `Filter::event_types(["Rare"])`; `count` checks and drops each event as it comes,
//! `collect` gathers them into a `Vec` first, as the comparison program does.

use std::error::Error;
use std::time::Instant;

use chronicle::{Durability, ExpectedVersion, Filter, NewEvent, Options, Store};

#[inline(never)]
fn filtered_read(store: &Store, filter: Filter, collect: bool) -> Result<usize, Box<dyn Error>> {
    let events = store.read_all_filtered(0, filter)?;
    if collect {
        return Ok(events.collect::<Result<Vec<_>, _>>()?.len());
    }
    let mut count = 0;
    for event in events {
        std::hint::black_box(event?);
        count += 1;
    }
    Ok(count)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["build", dir, events] => {
            let events: u64 = events.parse()?;
            let store = Store::open_with(dir, Options::default().durability(Durability::Buffered))?;
            let data = vec![7u8; 100];
            for batch in 0..events / 1000 {
                let s = batch % 10_000;
                let appended = (0..1000u64).map(|i| {
                    let event_type = if (batch * 1000 + i).is_multiple_of(100) { "Rare" } else { "OrderPlaced" };
                    NewEvent::new(event_type, data.clone())
                });
                store.append(&format!("cat{}-{s}", s % 100), ExpectedVersion::Any, appended)?;
            }
            store.close()?;
        }
        ["read", dir, which, how, passes @ ..] => {
            let passes: usize = passes.first().map_or(Ok(1), |p| p.parse())?;
            let filter = match *which {
                "category" => Filter::category("cat42"),
                "type" => Filter::event_types(["Rare"]),
                other => return Err(format!("unknown filter {other}: category or type").into()),
            };
            let store = Store::open(dir)?;
            for pass in 0..passes {
                let started = Instant::now();
                let count = filtered_read(&store, filter.clone(), *how == "collect")?;
                eprintln!("pass {pass}: {count} events in {:.2?}", started.elapsed());
            }
            store.close()?;
        }
        _ => {
            return Err(
                "usage: filtered_profile build DIR EVENTS | read DIR category|type count|collect [PASSES]".into()
            );
        }
    }
    Ok(())
}
