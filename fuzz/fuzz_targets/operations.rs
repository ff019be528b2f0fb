//! Fuzz target `operations`: the input becomes a durability mode, a variant (blocking or async
//! appends, coalesced `Buffered` writes or not) and a sequence of up to 64
//! operations (appends with every expected-version kind, append_multi, retries, reads,
//! deletions, snapshots, compaction, sync, seal, power loss, clean reopen, and faults at the
//! Nth I/O call followed by a power loss or a restart) run on the simulated storage against
//! an in-memory model (layout: `chronicle_testkit::operations`). Every answer and, after
//! every operation and every recovery, the store's whole visible content must be what the
//! model allows.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: chronicle_fuzz::AllocationGuard = chronicle_fuzz::AllocationGuard;

fuzz_target!(|data: &[u8]| {
    chronicle_fuzz::check_verdict("operations", chronicle_testkit::operations_target(data));
});
