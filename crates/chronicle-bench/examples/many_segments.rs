//! Open time, memory and descriptors of a store with many small segments (the figures in
//! docs/performance.md, "Many segments").
//!
//! ```text
//! cargo run --release --example many_segments -- build DIR 5000   # one event per segment
//! sh -c 'ulimit -n 128; exec /usr/bin/time -v target/release/examples/many_segments open DIR'
//! ```
//!
//! `open` reports the time `Store::open` took, the descriptors and the resident memory
//! (VmRSS, and the peak VmHWM, from /proc/self/status) after it, then the same after one
//! `read_all` over every event.

use std::error::Error;
use std::path::Path;
use std::time::Instant;

use chronicle::{Durability, ExpectedVersion, NewEvent, Options, SEGMENT_BYTES_MIN, Store};

const STREAMS: u64 = 50;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let options = Options::default().segment_size(SEGMENT_BYTES_MIN).durability(Durability::Buffered);
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [_, "build", dir, segments] => {
            let segments: u64 = segments.parse()?;
            let started = Instant::now();
            let store = Store::open_with(dir, options)?;
            for i in 0..segments {
                let event = NewEvent::new("Built", format!("event {i}"));
                store.append(&format!("s-{}", i % STREAMS), ExpectedVersion::Any, [event])?;
                store.seal()?;
            }
            store.close()?;
            println!("built {segments} segments in {:.2} s", started.elapsed().as_secs_f64());
        }
        [_, "open", dir] => {
            let started = Instant::now();
            let store = Store::open_with(dir, options)?;
            let open_ms = started.elapsed().as_secs_f64() * 1e3;
            println!("open: {open_ms:.1} ms; {}", resources(Path::new(dir))?);
            let started = Instant::now();
            let events = store.read_all(0)?.try_fold(0u64, |n, event| event.map(|_| n + 1))?;
            let read_ms = started.elapsed().as_secs_f64() * 1e3;
            println!("read_all: {events} events in {read_ms:.1} ms; {}", resources(Path::new(dir))?);
            store.close()?;
        }
        _ => return Err("usage: many_segments build DIR SEGMENTS | many_segments open DIR".into()),
    }
    Ok(())
}

/// Open descriptors, maps of store files, VmRSS and VmHWM.
fn resources(dir: &Path) -> Result<String, Box<dyn Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).map(|l| l[name.len()..].trim().to_owned()).unwrap_or_default()
    };
    let descriptors = std::fs::read_dir("/proc/self/fd")?.count();
    let dir = dir.canonicalize()?;
    let dir = dir.to_string_lossy();
    let maps = std::fs::read_to_string("/proc/self/maps")?.lines().filter(|l| l.contains(&*dir)).count();
    Ok(format!(
        "{descriptors} descriptors, {maps} maps of store files, VmRSS {}, VmHWM {}",
        field("VmRSS:"),
        field("VmHWM:")
    ))
}
