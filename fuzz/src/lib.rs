//! Shared pieces of the chronicle fuzz targets.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

/// Largest single allocation a fuzz input may cause. Every input is at most a few hundred KiB,
/// so anything near this is a length or count read from the input and trusted: a bug.
pub const ALLOCATION_BYTES_MAX: usize = 256 << 20;

/// The system allocator, aborting (a crash libFuzzer records with its input) on any single
/// allocation above [`ALLOCATION_BYTES_MAX`]. libFuzzer's own `-malloc_limit_mb` needs a
/// sanitizer's malloc hooks, which `--sanitizer none` does not have.
pub struct AllocationGuard;

fn check(size: usize) {
    if size > ALLOCATION_BYTES_MAX {
        let _ = std::io::stderr().write_all(b"chronicle-fuzz: single allocation above ALLOCATION_BYTES_MAX\n");
        std::process::abort();
    }
}

// SAFETY: forwards to the system allocator unchanged; only inspects the requested size.
unsafe impl GlobalAlloc for AllocationGuard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Crashes (so libFuzzer keeps the input) if a target reports a broken invariant.
pub fn check_verdict(target: &str, verdict: Result<bool, String>) {
    if let Err(violation) = verdict {
        panic!("{target}: invariant broken: {violation}");
    }
}
