//! # chronicle-bench — benchmarks of chronicle, kept out of the product's build
//!
//! - `cargo bench --bench compare` (`benches/compare/`): workloads W1–W8 side by side with
//!   SQLite, fjall, redb and the raw-disk ceiling; `-- --quick` for a short pass, `-- --big`
//!   for the full run (docs/performance.md).
//! - `cargo bench --bench micro` (`benches/micro.rs`): criterion micro-benchmarks of the
//!   record codec, the salted CRC, index lookups, the storage seam and batch appends.
//! - `examples/append_loop.rs` and `examples/storage_seam_paired.rs`: the A/B programs
//!   behind figures in docs/performance.md.
//!
//! The library itself is empty: this crate exists for its benches and examples.
