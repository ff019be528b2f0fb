//! Record codec: one event (or tombstone) framed with its length and a CRC-32.
//!
//! ```text
//! off  size  field
//!   0     4  record_bytes   total length of this record, header included
//!   4     4  crc32          CRC-32 of segment_id (u64 LE) ++ bytes [8, record_bytes)
//!   8     1  kind           1 = event, 2 = tombstone
//!   9     1  flags          bit 0 COMMIT, bit 1 HAS_CORRELATION, bit 2 HAS_CAUSATION,
//!                             bit 3 HAS_DURABLE_MARK
//!  10     2  stream_id_len
//!  12     2  event_type_len
//!  14     2  reserved       0
//!  16     8  position
//!  24     8  version
//!  32     8  timestamp_us   microseconds since the Unix epoch
//!  40    16  id
//!  56     4  metadata_len
//!  60     4  data_len
//!  64        [correlation_id u128] [causation_id u128] [durable_mark u64]
//!            stream_id event_type metadata data
//! ```
//! A commit group (one write of the writer thread) ends with a record whose COMMIT flag is
//! set; recovery keeps only whole groups. The first record of each group carries a durable
//! mark: the segment length known durable (fsynced) when the group was written. A record
//! that proves bytes durable lets recovery tell damage in them from a torn tail.

use std::ops::Range;

use super::bytes_reader::LeBytes;
use super::{SaltedCrc, crc32_salted};

/// Size of the fixed part of every record.
pub(crate) const RECORD_HEADER_BYTES: usize = 64;

/// Largest record the decoder accepts. Deliberately not the configured event limit: a store
/// written with a larger `event_bytes_max` must stay readable. Records are also bounded by
/// the bytes present, so this never drives an allocation.
pub(crate) const RECORD_BYTES_MAX: usize = 1 << 31;

/// Set on the last record of a commit group.
pub(crate) const FLAG_COMMIT: u8 = 1;
const FLAG_HAS_CORRELATION: u8 = 1 << 1;
const FLAG_HAS_CAUSATION: u8 = 1 << 2;
const FLAG_HAS_DURABLE_MARK: u8 = 1 << 3;
const FLAGS_KNOWN: u8 = FLAG_COMMIT | FLAG_HAS_CORRELATION | FLAG_HAS_CAUSATION | FLAG_HAS_DURABLE_MARK;
/// Size of the optional durable mark.
pub(crate) const DURABLE_MARK_BYTES: usize = 8;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// An event of a stream.
    Event = 1,
    /// The stream is deleted from here on.
    Tombstone = 2,
}

impl RecordKind {
    fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(RecordKind::Event),
            2 => Some(RecordKind::Tombstone),
            _ => None,
        }
    }
}

/// The fields of a record to encode; borrowed from the caller's event.
pub(crate) struct RecordFields<'a> {
    pub(crate) kind: RecordKind,
    pub(crate) position: u64,
    pub(crate) version: u64,
    pub(crate) timestamp_us: u64,
    pub(crate) id: u128,
    pub(crate) correlation_id: Option<u128>,
    pub(crate) causation_id: Option<u128>,
    /// Set on the first record of a commit group: segment bytes known durable.
    pub(crate) durable_mark: Option<u64>,
    pub(crate) stream_id: &'a str,
    pub(crate) event_type: &'a str,
    pub(crate) metadata: &'a [u8],
    pub(crate) data: &'a [u8],
}

/// Encoded size of a record with these variable parts.
pub(crate) fn encoded_len(
    stream_id_len: usize,
    event_type_len: usize,
    metadata_len: usize,
    data_len: usize,
    has_correlation: bool,
    has_causation: bool,
) -> usize {
    RECORD_HEADER_BYTES
        + 16 * usize::from(has_correlation)
        + 16 * usize::from(has_causation)
        + stream_id_len
        + event_type_len
        + metadata_len
        + data_len
}

/// Offset of the event type within a record encoded from `fields`.
pub(crate) fn event_type_offset(fields: &RecordFields<'_>) -> usize {
    RECORD_HEADER_BYTES
        + 16 * usize::from(fields.correlation_id.is_some())
        + 16 * usize::from(fields.causation_id.is_some())
        + if fields.durable_mark.is_some() { DURABLE_MARK_BYTES } else { 0 }
        + fields.stream_id.len()
}

/// Appends one encoded record to `buf`; returns its length (`encoded_len` plus
/// [`DURABLE_MARK_BYTES`] when it carries a durable mark). The caller has validated every
/// length against the limits (all fit their fields: checked in `writer::validate`).
pub(crate) fn encode(buf: &mut Vec<u8>, segment_id: u64, fields: &RecordFields<'_>) -> usize {
    let record_bytes = encoded_len(
        fields.stream_id.len(),
        fields.event_type.len(),
        fields.metadata.len(),
        fields.data.len(),
        fields.correlation_id.is_some(),
        fields.causation_id.is_some(),
    ) + if fields.durable_mark.is_some() { DURABLE_MARK_BYTES } else { 0 };
    let start = buf.len();
    buf.reserve(record_bytes);
    let mut flags = 0u8;
    if fields.correlation_id.is_some() {
        flags |= FLAG_HAS_CORRELATION;
    }
    if fields.causation_id.is_some() {
        flags |= FLAG_HAS_CAUSATION;
    }
    if fields.durable_mark.is_some() {
        flags |= FLAG_HAS_DURABLE_MARK;
    }
    buf.extend_from_slice(&(record_bytes as u32).to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]); // crc, filled below
    buf.push(fields.kind as u8);
    buf.push(flags);
    buf.extend_from_slice(&(fields.stream_id.len() as u16).to_le_bytes());
    buf.extend_from_slice(&(fields.event_type.len() as u16).to_le_bytes());
    buf.extend_from_slice(&[0u8; 2]);
    buf.extend_from_slice(&fields.position.to_le_bytes());
    buf.extend_from_slice(&fields.version.to_le_bytes());
    buf.extend_from_slice(&fields.timestamp_us.to_le_bytes());
    buf.extend_from_slice(&fields.id.to_le_bytes());
    buf.extend_from_slice(&(fields.metadata.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(fields.data.len() as u32).to_le_bytes());
    if let Some(correlation_id) = fields.correlation_id {
        buf.extend_from_slice(&correlation_id.to_le_bytes());
    }
    if let Some(causation_id) = fields.causation_id {
        buf.extend_from_slice(&causation_id.to_le_bytes());
    }
    if let Some(durable_mark) = fields.durable_mark {
        buf.extend_from_slice(&durable_mark.to_le_bytes());
    }
    buf.extend_from_slice(fields.stream_id.as_bytes());
    buf.extend_from_slice(fields.event_type.as_bytes());
    buf.extend_from_slice(fields.metadata);
    buf.extend_from_slice(fields.data);
    debug_assert_eq!(buf.len() - start, record_bytes);
    seal_crc(&mut buf[start..], segment_id);
    record_bytes
}

/// Sets the COMMIT flag on an encoded record and recomputes its checksum.
pub(crate) fn mark_commit(record: &mut [u8], segment_id: u64) {
    if let Some(flags) = record.get_mut(9) {
        *flags |= FLAG_COMMIT;
        seal_crc(record, segment_id);
    }
}

fn seal_crc(record: &mut [u8], segment_id: u64) {
    if let Some(body) = record.get(8..) {
        let crc = crc32_salted(segment_id, body);
        if let Some(field) = record.get_mut(4..8) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The bytes end before the record does (a torn write at the tail, or the end of data).
    Incomplete,
    /// The bytes are not a valid record; the reason names the failed check.
    Invalid(&'static str),
}

/// A decoded record: fixed fields plus ranges (relative to the record start) of the
/// variable parts. The checksum has been verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedRecord {
    pub(crate) record_bytes: usize,
    pub(crate) kind: RecordKind,
    pub(crate) commit: bool,
    pub(crate) position: u64,
    pub(crate) version: u64,
    pub(crate) timestamp_us: u64,
    pub(crate) id: u128,
    pub(crate) correlation_id: Option<u128>,
    pub(crate) causation_id: Option<u128>,
    pub(crate) durable_mark: Option<u64>,
    pub(crate) stream_id: Range<usize>,
    pub(crate) event_type: Range<usize>,
    pub(crate) metadata: Range<usize>,
    pub(crate) data: Range<usize>,
}

/// Decodes and verifies the record at the start of `bytes` (which may run past its end).
/// Never panics and never allocates; every length is checked against `bytes` and against
/// `record_bytes_max` before use.
pub(crate) fn decode(bytes: &[u8], segment_id: u64, record_bytes_max: usize) -> Result<DecodedRecord, DecodeError> {
    decode_salted(bytes, &SaltedCrc::new(segment_id), record_bytes_max)
}

/// [`decode`] with the segment's salted checksum state prepared once by the caller (a
/// reader decoding many records of one segment).
// Inlined into the replay loops: the decoded record is then built in place instead of
// being moved out of a `Result` for every record.
#[inline(always)]
pub(crate) fn decode_salted(
    bytes: &[u8],
    crc: &SaltedCrc,
    record_bytes_max: usize,
) -> Result<DecodedRecord, DecodeError> {
    let header: &[u8; RECORD_HEADER_BYTES] = bytes.first_chunk().ok_or(DecodeError::Incomplete)?;
    let record_bytes = u32::from_le_bytes(header_field::<0, 4>(header)) as usize;
    if record_bytes == 0 {
        return Err(DecodeError::Invalid("record length is zero"));
    }
    if record_bytes < RECORD_HEADER_BYTES {
        return Err(DecodeError::Invalid("record length is below the header size"));
    }
    if record_bytes > record_bytes_max {
        return Err(DecodeError::Invalid("record length is above the limit"));
    }
    let record = bytes.get(..record_bytes).ok_or(DecodeError::Incomplete)?;
    let stored_crc = u32::from_le_bytes(header_field::<4, 4>(header));
    let body = record.get(8..).ok_or(DecodeError::Incomplete)?;
    if crc.checksum(body) != stored_crc {
        return Err(DecodeError::Invalid("checksum mismatch"));
    }
    let [kind, flags] = header_field::<8, 2>(header);
    let kind = RecordKind::from_u8(kind).ok_or(DecodeError::Invalid("unknown record kind"))?;
    if flags & !FLAGS_KNOWN != 0 {
        return Err(DecodeError::Invalid("unknown record flags"));
    }
    let stream_id_len = usize::from(u16::from_le_bytes(header_field::<10, 2>(header)));
    let event_type_len = usize::from(u16::from_le_bytes(header_field::<12, 2>(header)));
    if header_field::<14, 2>(header) != [0, 0] {
        return Err(DecodeError::Invalid("reserved field is not zero"));
    }
    let metadata_len = u32::from_le_bytes(header_field::<56, 4>(header)) as usize;
    let data_len = u32::from_le_bytes(header_field::<60, 4>(header)) as usize;
    let has_correlation = flags & FLAG_HAS_CORRELATION != 0;
    let has_causation = flags & FLAG_HAS_CAUSATION != 0;
    // Lengths are at most 2^32 each, so the sum cannot overflow a 64-bit usize; compare
    // against the framed length so a record never reaches into its neighbour.
    let has_durable_mark = flags & FLAG_HAS_DURABLE_MARK != 0;
    let expected = encoded_len(stream_id_len, event_type_len, metadata_len, data_len, has_correlation, has_causation)
        + if has_durable_mark { DURABLE_MARK_BYTES } else { 0 };
    if expected != record_bytes {
        return Err(DecodeError::Invalid("field lengths do not add up to the record length"));
    }
    let mut cursor = RECORD_HEADER_BYTES;
    let mut optional_id = |present: bool| -> Result<Option<u128>, DecodeError> {
        if !present {
            return Ok(None);
        }
        let value = LeBytes(record).u128(cursor).ok_or(DecodeError::Incomplete)?;
        cursor += 16;
        Ok(Some(value))
    };
    let correlation_id = optional_id(has_correlation)?;
    let causation_id = optional_id(has_causation)?;
    let durable_mark = if has_durable_mark {
        let mark = LeBytes(record).u64(cursor).ok_or(DecodeError::Incomplete)?;
        cursor += DURABLE_MARK_BYTES;
        Some(mark)
    } else {
        None
    };
    let mut take = |len: usize| {
        let range = cursor..cursor + len;
        cursor += len;
        range
    };
    let stream_id = take(stream_id_len);
    let event_type = take(event_type_len);
    let metadata = take(metadata_len);
    let data = take(data_len);
    if stream_id.is_empty() {
        return Err(DecodeError::Invalid("stream id is empty"));
    }
    // UTF-8 validity of the stream id and event type is checked where text is materialised
    // (`text`, `texts`), once per read instead of twice.
    Ok(DecodedRecord {
        record_bytes,
        kind,
        commit: flags & FLAG_COMMIT != 0,
        position: u64::from_le_bytes(header_field::<16, 8>(header)),
        version: u64::from_le_bytes(header_field::<24, 8>(header)),
        timestamp_us: u64::from_le_bytes(header_field::<32, 8>(header)),
        id: u128::from_le_bytes(header_field::<40, 16>(header)),
        correlation_id,
        causation_id,
        durable_mark,
        stream_id,
        event_type,
        metadata,
        data,
    })
}

/// Bytes `[AT, AT + N)` of a record header. The range lies inside the header (checked when
/// compiled), so the read has no run-time bounds check and no failure path.
#[inline]
fn header_field<const AT: usize, const N: usize>(header: &[u8; RECORD_HEADER_BYTES]) -> [u8; N] {
    const { assert!(AT + N <= RECORD_HEADER_BYTES) };
    let mut field = [0u8; N];
    if let Some(bytes) = header.get(AT..AT + N) {
        field.copy_from_slice(bytes);
    }
    field
}

/// The stream id and event type of `record` (decoded as `decoded`) as text. They are
/// adjacent in a record, so both are validated in one pass over their joined bytes; the
/// error names the field that is not UTF-8 (a record that passed its checksum but holds
/// invalid text is corrupt: the writer only writes `str`s).
#[inline]
pub(crate) fn texts<'r>(record: &'r [u8], decoded: &DecodedRecord) -> Result<(&'r str, &'r str), &'static str> {
    let (stream_id, event_type) = (&decoded.stream_id, &decoded.event_type);
    if stream_id.end == event_type.start
        && let Some(joined) = record.get(stream_id.start..event_type.end)
        && let Ok(joined) = std::str::from_utf8(joined)
        // Both halves are valid text exactly when the split falls on a character boundary.
        && let Some(pair) = joined.split_at_checked(stream_id.len())
    {
        return Ok(pair);
    }
    let stream = text(record, stream_id.clone()).ok_or("stream id is not UTF-8")?;
    let event_type = text(record, event_type.clone()).ok_or("event type is not UTF-8")?;
    Ok((stream, event_type))
}

/// The UTF-8 text at `range` of a decoded record; `None` if it is not UTF-8 (a record that
/// passed its checksum but holds invalid text is corrupt: the writer only writes `str`s).
pub(crate) fn text(record: &[u8], range: Range<usize>) -> Option<&str> {
    std::str::from_utf8(record.get(range)?).ok()
}

/// The raw bytes at `range` of a decoded record.
pub(crate) fn field(record: &[u8], range: Range<usize>) -> &[u8] {
    record.get(range).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordFields<'static> {
        RecordFields {
            kind: RecordKind::Event,
            position: 0x0102,
            version: 3,
            timestamp_us: 4,
            id: 5,
            correlation_id: Some(6),
            causation_id: None,
            durable_mark: None,
            stream_id: "s-1",
            event_type: "T",
            metadata: b"m",
            data: b"dd",
        }
    }

    #[test]
    fn round_trip_and_golden_bytes() {
        let mut buf = Vec::new();
        let len = encode(&mut buf, 9, &sample());
        assert_eq!(len, 64 + 16 + 3 + 1 + 1 + 2);
        // Golden bytes pin the layout: changing field order must fail this test.
        let expected_header: [u8; 16] = [87, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 1, 0, 0, 0];
        assert_eq!(&buf[0..4], &expected_header[0..4]);
        assert_eq!(&buf[8..16], &expected_header[8..16]);
        assert_eq!(&buf[16..24], &0x0102u64.to_le_bytes());
        assert_eq!(&buf[64..80], &6u128.to_le_bytes());
        assert_eq!(&buf[80..], b"s-1Tmdd");
        let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
        assert_eq!(crc, crc32_salted(9, &buf[8..]));
        let decoded = decode(&buf, 9, 1 << 20).unwrap();
        assert_eq!(decoded.position, 0x0102);
        assert_eq!(decoded.correlation_id, Some(6));
        assert_eq!(decoded.causation_id, None);
        assert_eq!(text(&buf, decoded.stream_id.clone()), Some("s-1"));
        assert_eq!(&buf[decoded.data.clone()], b"dd");
        assert!(!decoded.commit);
    }

    #[test]
    fn durable_mark_round_trips() {
        let mut buf = Vec::new();
        let fields = RecordFields { durable_mark: Some(0xabc), ..sample() };
        let len = encode(&mut buf, 9, &fields);
        assert_eq!(len, 87 + DURABLE_MARK_BYTES);
        assert_eq!(buf[9], 0b1010);
        assert_eq!(&buf[80..88], &0xabcu64.to_le_bytes());
        let decoded = decode(&buf, 9, 1 << 20).unwrap();
        assert_eq!((decoded.durable_mark, text(&buf, decoded.stream_id)), (Some(0xabc), Some("s-1")));
    }

    #[test]
    fn texts_are_checked_together_and_apart() {
        let mut buf = Vec::new();
        encode(&mut buf, 9, &sample());
        let decoded = decode(&buf, 9, 1 << 20).unwrap();
        assert_eq!(texts(&buf, &decoded), Ok(("s-1", "T")));
        // "é" is 0xC3 0xA9: split between the stream id and the event type, the joined bytes
        // are valid text but neither half is. Checksums do not matter to `texts`.
        let stream_id = decoded.stream_id.clone();
        let mut split = buf.clone();
        split[stream_id.end - 1] = 0xC3;
        split[decoded.event_type.start] = 0xA9;
        assert_eq!(texts(&split, &decoded), Err("stream id is not UTF-8"));
        let mut bad_type = buf.clone();
        bad_type[decoded.event_type.start] = 0xFF;
        assert_eq!(texts(&bad_type, &decoded), Err("event type is not UTF-8"));
        let mut multibyte = buf.clone();
        multibyte[stream_id.start..stream_id.end].copy_from_slice("sé".as_bytes());
        assert_eq!(texts(&multibyte, &decoded), Ok(("sé", "T")));
    }

    #[test]
    fn commit_flag_is_checksummed() {
        let mut buf = Vec::new();
        encode(&mut buf, 9, &sample());
        mark_commit(&mut buf, 9);
        assert!(decode(&buf, 9, 1 << 20).unwrap().commit);
    }

    #[test]
    fn wrong_segment_salt_is_rejected() {
        let mut buf = Vec::new();
        encode(&mut buf, 9, &sample());
        assert_eq!(decode(&buf, 10, 1 << 20), Err(DecodeError::Invalid("checksum mismatch")));
    }

    #[test]
    fn every_truncation_and_bit_flip_is_rejected() {
        let mut buf = Vec::new();
        encode(&mut buf, 9, &sample());
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut], 9, 1 << 20).is_err(), "cut at {cut}");
        }
        for bit in 0..buf.len() * 8 {
            let mut flipped = buf.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&flipped, 9, 1 << 20).is_err(), "bit {bit}");
        }
    }
}
