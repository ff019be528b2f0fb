//! A global allocator for test binaries that records the largest single allocation, so a
//! test can prove that no byte on disk makes the store allocate what the bytes claim.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator plus a high-water mark of single allocation sizes.
pub struct LargestAllocation;

static LARGEST_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Largest single allocation (bytes) since the last [`reset`], in any thread.
pub fn largest_bytes() -> usize {
    LARGEST_BYTES.load(Ordering::Relaxed)
}

/// Forgets the high-water mark.
pub fn reset() {
    LARGEST_BYTES.store(0, Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only reads the size.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_BYTES.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
