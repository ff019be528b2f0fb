//! Fuzz target `segment_header`: see `chronicle_testkit::codecs::segment_header_target` for the input layout.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: chronicle_fuzz::AllocationGuard = chronicle_fuzz::AllocationGuard;

fuzz_target!(|data: &[u8]| {
    chronicle_fuzz::check_verdict("segment_header", chronicle_testkit::codecs::segment_header_target(data));
});
