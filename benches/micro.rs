//! Placeholder; filled in by the micro-benchmark commit.
fn main() {}
