//! Event ids the store assigns: UUIDv7 layout (48-bit Unix milliseconds, version 7,
//! variant 0b10, 74 pseudo-random bits), so ids sort roughly by time and do not collide
//! across stores.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

pub(crate) struct IdGenerator {
    state: u64,
}

impl IdGenerator {
    pub(crate) fn new() -> Self {
        // RandomState is seeded from the OS's randomness once per process and varies per
        // instance; mixing in the time and process id separates stores further.
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(crate::clock::unix_micros_now() as u128);
        hasher.write_u32(std::process::id());
        IdGenerator { state: hasher.finish() }
    }

    /// SplitMix64.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn next_id(&mut self, unix_ms: u64) -> u128 {
        let high = ((unix_ms & 0xffff_ffff_ffff) << 16) | 0x7000 | (self.next_u64() & 0x0fff);
        let low = (self.next_u64() & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        (u128::from(high) << 64) | u128::from(low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_versioned() {
        let mut ids = IdGenerator::new();
        let a = ids.next_id(1);
        let b = ids.next_id(1);
        assert_ne!(a, b);
        assert_eq!((a >> 76) & 0xf, 7);
        assert_eq!((a >> 62) & 0b11, 0b10);
        assert_eq!(a >> 80, 1);
    }
}
