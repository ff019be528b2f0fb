//! W4 for a profiler: opens a store and replays it once through one API, so that callgrind
//! or `perf stat` sees one replay and nothing else.
//!
//! `replay_profile DIR owned` replays through the `read_all` iterator (every field of each
//! owned `RecordedEvent` read, as the comparison program's W4 does), `replay_profile DIR view`
//! through `read_all_with`. Build the store with
//! `stream_reads build DIR 10000 100` (W4's 1 M events, 10 000 streams interleaved).
//!
//! The replay runs in `replay_owned` / `replay_view` (never inlined), so that
//! `valgrind --tool=callgrind --toggle-collect='*replay_owned*'` counts the replay only,
//! without the open:
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='*replay_view*' target/release/examples/replay_profile DIR view
//! ```

use std::error::Error;
use std::ops::ControlFlow;
use std::time::Instant;

use chronicle::{Durability, Options, Store};

/// Folds every field of an event into `acc`, as the comparison program's W4 digest does.
fn digest(acc: u64, version: u64, position: u64, id: u128, texts: usize, metadata: &[u8], data: &[u8]) -> u64 {
    let first = data.first().copied().unwrap_or(0) as u64;
    acc.wrapping_mul(31)
        .wrapping_add(version ^ position ^ (id as u64) ^ texts as u64)
        .wrapping_add(metadata.len() as u64 + data.len() as u64 + first)
}

#[inline(never)]
fn replay_owned(store: &Store) -> Result<(u64, u64), Box<dyn Error>> {
    let (mut count, mut acc) = (0, 0);
    for event in store.read_all(0)? {
        let e = event?;
        let texts = e.stream_id.len() + e.event_type.len();
        acc = digest(acc, e.version, e.position, e.id, texts, &e.metadata, &e.data);
        count += 1;
    }
    Ok((count, acc))
}

#[inline(never)]
fn replay_view(store: &Store) -> Result<(u64, u64), Box<dyn Error>> {
    let (mut count, mut acc) = (0, 0);
    store.read_all_with(0, |e| {
        let texts = e.stream_id.len() + e.event_type.len();
        acc = digest(acc, e.version, e.position, e.id, texts, e.metadata, e.data);
        count += 1;
        ControlFlow::Continue(())
    })?;
    Ok((count, acc))
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, api] = args.as_slice() else {
        return Err("usage: replay_profile DIR owned|view".into());
    };
    let store = Store::open_with(dir, Options::default().durability(Durability::Buffered))?;
    let begin = Instant::now();
    let (count, acc) = match api.as_str() {
        "owned" => replay_owned(&store)?,
        "view" => replay_view(&store)?,
        _ => return Err("the API is owned or view".into()),
    };
    let seconds = begin.elapsed().as_secs_f64();
    println!(
        "{api}: {count} events in {:.1} ms, {:.2} M ev/s (digest {acc:x})",
        seconds * 1e3,
        count as f64 / seconds / 1e6
    );
    store.close()?;
    Ok(())
}
