//! On-disk encoding, written by hand: little-endian, explicit offsets, golden-byte tests.
//! `segment-format.md` at the repository root is the normative description; this code and
//! that document change together.

pub(crate) mod bytes_reader;
pub(crate) mod record;
pub(crate) mod segment_header;
pub(crate) mod snapshot_file;

/// Version of the segment format (header and records) this build writes and reads. It also
/// names the checksum algorithm: format 1 uses CRC-32 (IEEE 802.3, as computed by
/// `crc32fast`). Every other file has its own version: [`snapshot_file::SNAPSHOT_FORMAT_VERSION`],
/// `index::file::INDEX_FORMAT_VERSION`, `index::checkpoint::CHECKPOINT_FORMAT_VERSION` and
/// `retention::RETENTION_FORMAT_VERSION`, each changed only with its own file's layout.
pub(crate) const SEGMENT_FORMAT_VERSION: u32 = 1;

/// CRC-32 (IEEE) of `salt` (little-endian) followed by `bytes`. The salt binds a checksum to
/// one file, so bytes left over from another file can never pass as records of this one.
pub(crate) fn crc32_salted(salt: u64, bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    hasher.update(bytes);
    hasher.finalize()
}
