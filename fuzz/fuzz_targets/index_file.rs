//! Fuzz target `index_file`: see `chronicle_testkit::codecs::index_file_target` for the input layout.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: chronicle_fuzz::AllocationGuard = chronicle_fuzz::AllocationGuard;

fuzz_target!(|data: &[u8]| {
    chronicle_fuzz::check_verdict("index_file", chronicle_testkit::codecs::index_file_target(data));
});
