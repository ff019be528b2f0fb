//! W5 of the comparison program on its own, in a process of its own: build the data set
//! once, then open it and read random whole streams as a user does after a restart (maps
//! and caches cold, page cache warm). For profiling (`perf record`, `valgrind
//! --tool=callgrind`) without the load in the profile; docs/performance.md, issue 15.
//!
//! ```text
//! cargo run --release -p chronicle-bench --example stream_reads -- build DIR 10000 100
//! cargo run --release -p chronicle-bench --example stream_reads -- read DIR 10000 2000 2
//! ```
//!
//! `build DIR STREAMS EVENTS [close|crash]`: STREAMS × EVENTS events of 100 bytes,
//! interleaved (event v of every stream, then v + 1), 1000 streams per `append_multi`, as
//! the comparison program loads them; closed cleanly, or (`crash`) synced and left without
//! a close, like W6's crash image (open it with `compare --child-open chronicle DIR
//! stream-000000 crash`). `read DIR STREAMS READS PASSES`: opens the store, then
//! PASSES times the same READS whole-stream reads (the comparison program's xorshift
//! sequence over `stream-000000`…), printing streams/s, p50 and p99 per pass, through
//! `read_stream` or, with a last argument `with`, `read_stream_with`. `replay DIR`:
//! opens the store and replays it once through the `read_all` iterator, then once through
//! `read_all_with` (W4 in a fresh process).

use std::error::Error;
use std::time::{Duration, Instant};

use chronicle::{Durability, ExpectedVersion, NewEvent, Options, Store, StreamAppend};

fn stream_name(index: usize) -> String {
    format!("stream-{index:06}")
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let options = Options::default().durability(Durability::Buffered);
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [_, "build", dir, streams, events, ending @ ..] if ending.len() <= 1 => {
            let crash = match ending {
                [] | ["close"] => false,
                ["crash"] => true,
                _ => return Err("the build ends with close (the default) or crash".into()),
            };
            let (streams, events): (usize, u64) = (streams.parse()?, events.parse()?);
            let names: Vec<String> = (0..streams).map(stream_name).collect();
            let data = bytes::Bytes::from(vec![0x5au8; 100]);
            let store = Store::open_with(dir, options)?;
            let started = Instant::now();
            for version in 0..events {
                let expected = version.checked_sub(1).map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                for chunk in names.chunks(1000) {
                    store.append_multi(chunk.iter().map(|name| {
                        StreamAppend::new(name.as_str(), expected, [NewEvent::new("OrderPlaced", data.clone())])
                    }))?;
                }
            }
            if crash {
                // A crash image: everything written and synced, no clean close (no index
                // file for the active segment, the stream-table checkpoint as of the last
                // periodic one), as W6's copy of an open store.
                store.sync()?;
                println!("built {} events, crashed", streams as u64 * events);
                std::process::exit(0);
            }
            store.close()?;
            println!("built {} events in {:.2} s", streams as u64 * events, started.elapsed().as_secs_f64());
        }
        [_, "read", dir, streams, reads, passes, how @ ..] if how.len() <= 1 => {
            let borrowed = match how {
                [] | ["owned"] => false,
                ["with"] => true,
                _ => {
                    return Err(
                        "a read goes through read_stream (owned, the default) or read_stream_with (with)".into()
                    );
                }
            };
            let (streams, reads, passes): (usize, usize, usize) = (streams.parse()?, reads.parse()?, passes.parse()?);
            let names: Vec<String> = (0..streams).map(stream_name).collect();
            let started = Instant::now();
            let store = Store::open_with(dir, options)?;
            println!("open {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
            for pass in 0..passes {
                let mut state = 0x9E37_79B9_7F4A_7C15u64;
                let mut latencies: Vec<Duration> = Vec::with_capacity(reads);
                let begin = Instant::now();
                let mut digest = 0u64;
                for _ in 0..reads {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let name = &names[(state % names.len() as u64) as usize];
                    let start = Instant::now();
                    let fold = |digest: u64, version: u64, position: u64, texts: usize, data: &[u8]| {
                        let digest = digest.wrapping_mul(31).wrapping_add(version ^ position);
                        digest.wrapping_add(texts as u64).wrapping_add(data.first().copied().unwrap_or(0) as u64)
                    };
                    if borrowed {
                        store.read_stream_with(name, 0, |e| {
                            digest =
                                fold(digest, e.version, e.position, e.stream_id.len() + e.event_type.len(), e.data);
                            std::ops::ControlFlow::Continue(())
                        })?;
                    } else {
                        for event in store.read_stream(name, 0)? {
                            let e = event?;
                            digest =
                                fold(digest, e.version, e.position, e.stream_id.len() + e.event_type.len(), &e.data);
                        }
                    }
                    latencies.push(start.elapsed());
                }
                let elapsed = begin.elapsed().as_secs_f64();
                latencies.sort_unstable();
                let at = |p: f64| latencies[((p * (reads - 1) as f64).round() as usize).min(reads - 1)];
                println!(
                    "pass {pass}: {:.1} k streams/s, p50 {:.1} µs, p99 {:.1} µs (digest {digest:x})",
                    reads as f64 / elapsed / 1e3,
                    at(0.5).as_secs_f64() * 1e6,
                    at(0.99).as_secs_f64() * 1e6
                );
            }
            store.close()?;
        }
        [_, "replay", dir] => {
            // W4 in a fresh process: the `read_all` iterator, then `read_all_with`.
            let started = Instant::now();
            let store = Store::open_with(dir, options)?;
            println!("open {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
            let begin = Instant::now();
            let (mut count, mut digest) = (0u64, 0u64);
            for event in store.read_all(0)? {
                let event = event?;
                digest = digest.wrapping_mul(31).wrapping_add(event.version ^ event.position);
                digest = digest.wrapping_add(event.data.first().copied().unwrap_or(0) as u64);
                count += 1;
            }
            let owned = begin.elapsed().as_secs_f64();
            let begin = Instant::now();
            store.read_all_with(0, |event| {
                digest = digest.wrapping_mul(31).wrapping_add(event.version ^ event.position);
                digest = digest.wrapping_add(event.data.first().copied().unwrap_or(0) as u64);
                count += 1;
                std::ops::ControlFlow::Continue(())
            })?;
            let borrowed = begin.elapsed().as_secs_f64();
            let per_pass = count / 2;
            println!(
                "read_all {:.2} M ev/s ({:.1} ms); read_all_with {:.2} M ev/s ({:.1} ms); {per_pass} events (digest {digest:x})",
                per_pass as f64 / owned / 1e6,
                owned * 1e3,
                per_pass as f64 / borrowed / 1e6,
                borrowed * 1e3
            );
            store.close()?;
        }
        _ => {
            return Err(
                "usage: stream_reads build DIR STREAMS EVENTS [close|crash] | read DIR STREAMS READS PASSES [owned|with] | replay DIR"
                    .into(),
            );
        }
    }
    Ok(())
}
