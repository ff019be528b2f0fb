//! On-disk encoding, written by hand: little-endian, explicit offsets, golden-byte tests.
//! `segment-format.md` at the repository root is the normative description; this code and
//! that document change together.

pub(crate) mod bytes_reader;
pub(crate) mod record;
pub(crate) mod segment_header;

/// Version of the segment and index formats this build writes and reads. It also names the
/// checksum algorithm: format 1 uses CRC-32 (IEEE 802.3, as computed by `crc32fast`).
pub(crate) const FORMAT_VERSION: u32 = 1;

/// CRC-32 (IEEE) of `salt` (little-endian) followed by `bytes`. The salt binds a checksum to
/// one file, so bytes left over from another file can never pass as records of this one.
pub(crate) fn crc32_salted(salt: u64, bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    hasher.update(bytes);
    hasher.finalize()
}
