//! On-disk encoding, written by hand: little-endian, explicit offsets, golden-byte tests.
//! `segment-format.md` at the repository root is the normative description; this code and
//! that document change together.

pub(crate) mod bytes_reader;
pub(crate) mod record;
pub(crate) mod segment_header;
pub(crate) mod snapshot_file;

/// Version of the segment format (header and records) this build writes; it reads this one
/// and every earlier one (what each changes: `SegmentHeader::log_may_end_before_file`). It
/// also names the checksum algorithm: formats 1 and 2 use CRC-32 (IEEE 802.3, as computed by
/// `crc32fast`); format 2 lets the active segment be preallocated (zero-filled past its log). Every other file has its own version: [`snapshot_file::SNAPSHOT_FORMAT_VERSION`],
/// `index::file::INDEX_FORMAT_VERSION`, `index::checkpoint::CHECKPOINT_FORMAT_VERSION` and
/// `retention::RETENTION_FORMAT_VERSION`, each changed only with its own file's layout.
pub(crate) const SEGMENT_FORMAT_VERSION: u32 = 2;

/// CRC-32 (IEEE) of `salt` (little-endian) followed by `bytes`. The salt binds a checksum to
/// one file, so bytes left over from another file can never pass as records of this one.
pub(crate) fn crc32_salted(salt: u64, bytes: &[u8]) -> u32 {
    SaltedCrc::new(salt).checksum(bytes)
}

/// The CRC-32 state with a salt already hashed in: a reader checks every record of a
/// segment from one of these, so each record's checksum is one pass over its own bytes
/// (no salt hashed again, no CPU-feature detection per record).
#[derive(Debug, Clone)]
pub(crate) struct SaltedCrc(crc32fast::Hasher);

impl SaltedCrc {
    pub(crate) fn new(salt: u64) -> Self {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&salt.to_le_bytes());
        SaltedCrc(hasher)
    }

    /// [`crc32_salted`] of this salt and `bytes`.
    pub(crate) fn checksum(&self, bytes: &[u8]) -> u32 {
        let mut hasher = self.0.clone();
        hasher.update(bytes);
        hasher.finalize()
    }
}
