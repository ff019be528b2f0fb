//! The engine's spans and events on stderr: open (with what recovery found), roll, fsync
//! (trace level, with its duration), compaction (progress per run), snapshot; then the
//! counters of `Store::stats` and `Store::health`.
//!
//! ```sh
//! cargo run --example tracing                 # info and above
//! RUST_LOG=chronicle=trace cargo run --example tracing   # every fsync with its duration
//! ```

use chronicle::{ExpectedVersion, NewEvent, Options, Retention, Store};
use tracing_subscriber::EnvFilter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .init();
    let dir = tempfile::tempdir()?;
    let store = Store::open_with(dir.path(), Options::default().segment_bytes(64 << 10))?;
    store.set_stream_retention("metrics", Retention::MaxCount(10))?;
    for i in 0..2_000u32 {
        store.append("metrics", ExpectedVersion::Any, [NewEvent::new("Sampled", i.to_string().repeat(20))])?;
    }
    store.save_snapshot("metrics", 1_999, b"state")?;
    let report = store.compact()?;
    println!("compaction: {report:?}");
    let stats = store.stats();
    println!(
        "stats: end {} streams {} segments {} bytes {} fsyncs {} (p50 <= {} us, p99 <= {} us), {} commit groups",
        stats.end_position,
        stats.streams,
        stats.segments,
        stats.bytes,
        stats.fsyncs,
        stats.fsync_p50_micros,
        stats.fsync_p99_micros,
        stats.commit_groups
    );
    println!("health: {:?}", store.health());
    store.close()?;
    Ok(())
}
