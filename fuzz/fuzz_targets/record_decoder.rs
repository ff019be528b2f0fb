//! Fuzz target `record_decoder`: see `chronicle::fuzz_api::record_decoder_target` for the input layout.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: chronicle_fuzz::AllocationGuard = chronicle_fuzz::AllocationGuard;

fuzz_target!(|data: &[u8]| {
    chronicle_fuzz::check_verdict("record_decoder", chronicle::fuzz_api::record_decoder_target(data));
});
