//! The 64-byte header at the start of every segment file.
//!
//! ```text
//! off  size  field
//!   0     8  magic                  "CHRNSEG\0"
//!   8     4  format_version         1
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
    pub(crate) segment_id: u64,
    pub(crate) base_position: u64,
    pub(crate) compacted_end_position: u64,
    pub(crate) created_unix_ms: u64,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut out = [0u8; SEGMENT_HEADER_BYTES];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
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
        if le.u32(8) != Some(SEGMENT_FORMAT_VERSION) {
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
            segment_id: field(16)?,
            base_position: field(24)?,
            compacted_end_position: field(32)?,
            created_unix_ms: field(40)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_and_round_trip() {
        let header = SegmentHeader { segment_id: 1, base_position: 2, compacted_end_position: 0, created_unix_ms: 3 };
        let bytes = header.encode();
        assert_eq!(&bytes[0..16], b"CHRNSEG\0\x01\0\0\0\x40\0\0\0");
        assert_eq!(&bytes[16..24], &1u64.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        for bit in 0..SEGMENT_HEADER_BYTES * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&flipped).is_err(), "bit {bit}");
        }
    }
}
