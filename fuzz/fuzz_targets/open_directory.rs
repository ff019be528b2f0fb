//! Fuzz target `open_directory`: the input becomes a store directory of segment, index and
//! leftover files (layout: `chronicle_testkit::codecs::directory_files`), which is opened with
//! `Store::open_with` and read every way. No panic, no unbounded allocation, no endless
//! iteration; errors are fine.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: chronicle_fuzz::AllocationGuard = chronicle_fuzz::AllocationGuard;

fuzz_target!(|data: &[u8]| {
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = root.path().join("store");
    chronicle_fuzz::check_verdict("open_directory", chronicle_testkit::codecs::open_directory_target(data, &dir));
});
