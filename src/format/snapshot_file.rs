//! Snapshot file codec.
//!
//! ```text
//! off  size  field
//!   0     8  magic           "CHRNSNAP"
//!   8     4  format_version  1
//!  12     4  reserved        0
//!  16     8  version         the stream version the state covers
//!  24     8  created_unix_ms
//!  32     4  stream_id_len
//!  36     4  data_len
//!  40        stream_id, then data
//! end-4   4  crc32           CRC-32 of every byte before it
//! ```

use crate::format::bytes_reader::LeBytes;
use crate::format::crc32_salted;

const MAGIC: [u8; 8] = *b"CHRNSNAP";
/// Version of the snapshot file layout (segment-format.md §6); 1 uses CRC-32 (IEEE).
pub(crate) const SNAPSHOT_FORMAT_VERSION: u32 = 1;
pub(crate) const SNAPSHOT_HEADER_BYTES: usize = 40;
const TRAILER_BYTES: usize = 4;

/// Encodes a snapshot file.
pub(crate) fn encode(stream: &str, version: u64, created_unix_ms: u64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + stream.len() + data.len() + TRAILER_BYTES);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&created_unix_ms.to_le_bytes());
    out.extend_from_slice(&(stream.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(data);
    let crc = crc32_salted(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A decoded snapshot file: its stream, version and the range of its data.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DecodedSnapshot<'a> {
    pub(crate) stream: &'a str,
    pub(crate) version: u64,
    pub(crate) data: std::ops::Range<usize>,
}

/// Decodes and verifies a whole snapshot file; the error names the failed check.
pub(crate) fn decode(bytes: &[u8]) -> Result<DecodedSnapshot<'_>, &'static str> {
    let le = LeBytes(bytes);
    if le.array::<8>(0) != Some(MAGIC) {
        return Err("bad snapshot magic");
    }
    let body_len = bytes.len().checked_sub(TRAILER_BYTES).ok_or("file is too short")?;
    let body = bytes.get(..body_len).ok_or("file is too short")?;
    if Some(crc32_salted(0, body)) != le.u32(body_len) {
        return Err("snapshot checksum mismatch");
    }
    if le.u32(8) != Some(SNAPSHOT_FORMAT_VERSION) || le.u32(12) != Some(0) {
        return Err("unsupported snapshot format");
    }
    let stream_len = le.u32(32).ok_or("short header")? as usize;
    let data_len = le.u32(36).ok_or("short header")? as usize;
    if SNAPSHOT_HEADER_BYTES + stream_len + data_len != body_len {
        return Err("snapshot lengths do not add up to the file length");
    }
    let stream = std::str::from_utf8(le.slice(SNAPSHOT_HEADER_BYTES, stream_len).ok_or("short file")?)
        .map_err(|_| "stream id is not UTF-8")?;
    let data_at = SNAPSHOT_HEADER_BYTES + stream_len;
    Ok(DecodedSnapshot { stream, version: le.u64(16).ok_or("short header")?, data: data_at..data_at + data_len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_bit_flip() {
        let bytes = encode("order-1", 7, 9, b"state");
        assert_eq!(&bytes[0..8], b"CHRNSNAP");
        assert_eq!(&bytes[16..24], &7u64.to_le_bytes());
        let decoded = decode(&bytes).unwrap();
        assert_eq!((decoded.stream, decoded.version, &bytes[decoded.data.clone()]), ("order-1", 7, &b"state"[..]));
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&flipped).is_err(), "bit {bit}");
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err());
        }
    }
}
