//! Fuzz target `record_decoder`: see `chronicle_testkit::codecs::record_decoder_target` for the input layout.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: chronicle_fuzz::AllocationGuard = chronicle_fuzz::AllocationGuard;

fuzz_target!(|data: &[u8]| {
    chronicle_fuzz::check_verdict("record_decoder", chronicle_testkit::codecs::record_decoder_target(data));
});
