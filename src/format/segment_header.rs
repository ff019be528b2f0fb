//! The 64-byte header at the start of every segment file.
//!
//! ```text
//! off  size  field
//!   0     8  magic                  "CHRNSEG\0"
//!   8     4  format_version         1 or 2 (see `SegmentHeader::log_may_end_before_file`)
//!  12     4  header_bytes           64
//!  16     8  segment_id             unique, increasing in creation order; salts record CRCs
//!  24     8  base_position          every record's position is >= this
//!  32     8  compacted_end_position 0 for a segment written by appends; for a segment written
//!                                   by compaction, the end (exclusive) of the positions it
//!                                   replaces, starting at base_position
//!  40     8  created_unix_ms
//!  48    12  reserved               0
//!  60     4  crc32                  CRC-32 of bytes [0, 60)
//! ```

use super::bytes_reader::LeBytes;
use super::{SEGMENT_FORMAT_VERSION, crc32_salted};

/// Size of the segment header.
pub(crate) const SEGMENT_HEADER_BYTES: usize = 64;
const MAGIC: [u8; 8] = *b"CHRNSEG\0";

/// The fields of a segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// The format this segment was written in: [`SEGMENT_FORMAT_VERSION`] for every segment
    /// this code creates, 1 for segments written before preallocation.
    pub(crate) format_version: u32,
    pub(crate) segment_id: u64,
    pub(crate) base_position: u64,
    pub(crate) compacted_end_position: u64,
    pub(crate) created_unix_ms: u64,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut out = [0u8; SEGMENT_HEADER_BYTES];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        out[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.base_position.to_le_bytes());
        out[32..40].copy_from_slice(&self.compacted_end_position.to_le_bytes());
        out[40..48].copy_from_slice(&self.created_unix_ms.to_le_bytes());
        let crc = crc32_salted(0, &out[0..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and verifies a header; the error names the failed check.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        let le = LeBytes(bytes);
        let head = le.slice(0, SEGMENT_HEADER_BYTES).ok_or("file is shorter than the segment header")?;
        let le = LeBytes(head);
        if le.array::<8>(0) != Some(MAGIC) {
            return Err("bad segment magic");
        }
        let crc = le.u32(60).ok_or("short header")?;
        if crc32_salted(0, head.get(0..60).ok_or("short header")?) != crc {
            return Err("segment header checksum mismatch");
        }
        let format_version = le.u32(8).ok_or("short header")?;
        if !SEGMENT_FORMAT_VERSIONS_READ.contains(&format_version) {
            return Err("unsupported segment format version");
        }
        if le.u32(12) != Some(SEGMENT_HEADER_BYTES as u32) {
            return Err("unexpected segment header size");
        }
        if head.get(48..60).is_none_or(|reserved| reserved.iter().any(|&b| b != 0)) {
            return Err("reserved header bytes are not zero");
        }
        let field = |offset| le.u64(offset).ok_or("short header");
        Ok(SegmentHeader {
            format_version,
            segment_id: field(16)?,
            base_position: field(24)?,
            compacted_end_position: field(32)?,
            created_unix_ms: field(40)?,
        })
    }
}

/// Every segment format version this code reads.
const SEGMENT_FORMAT_VERSIONS_READ: std::ops::RangeInclusive<u32> = 1..=SEGMENT_FORMAT_VERSION;

/// What a segment's format version changes. This is the one place that dispatches on it
/// (segment-format.md §9); record encoding is the same in versions 1 and 2.
impl SegmentHeader {
    /// A header for a new segment, in the current format version.
    pub(crate) fn current(segment_id: u64, base_position: u64, compacted_end_position: u64) -> Self {
        SegmentHeader {
            format_version: SEGMENT_FORMAT_VERSION,
            segment_id,
            base_position,
            compacted_end_position,
            created_unix_ms: crate::clock::unix_micros_now() / 1000,
        }
    }

    /// Whether the log of this segment, while it is the active one, may end before the file
    /// does, the rest of the file being zeros (a preallocated segment, format 2,
    /// segment-format.md §3.5). In a version 1 segment the log ends where the file ends:
    /// bytes past the last whole commit group are a torn tail, cut by truncation; such a
    /// segment is never preallocated, also when this code appends to it.
    pub(crate) fn log_may_end_before_file(&self) -> bool {
        self.format_version >= 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_and_round_trip() {
        let header = SegmentHeader {
            format_version: 2,
            segment_id: 1,
            base_position: 2,
            compacted_end_position: 0,
            created_unix_ms: 3,
        };
        let bytes = header.encode();
        assert_eq!(&bytes[0..16], b"CHRNSEG\0\x02\0\0\0\x40\0\0\0");
        assert_eq!(&bytes[16..24], &1u64.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        for bit in 0..SEGMENT_HEADER_BYTES * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            // Bit 1 of the version turns 2 into 0; other version bits make unknown versions.
            assert!(SegmentHeader::decode(&flipped).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn version_1_headers_still_decode_and_keep_their_version() {
        let v1 = SegmentHeader { format_version: 1, ..SegmentHeader::current(5, 6, 0) };
        let decoded = SegmentHeader::decode(&v1.encode()).unwrap();
        assert_eq!(decoded, v1);
        assert!(!decoded.log_may_end_before_file());
        assert!(SegmentHeader::current(5, 6, 0).log_may_end_before_file());
        let v3 = SegmentHeader { format_version: 3, ..v1 };
        assert_eq!(SegmentHeader::decode(&v3.encode()), Err("unsupported segment format version"));
    }
}
