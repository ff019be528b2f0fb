//! The payload codecs and the small header in front of every typed payload.
//!
//! Layout (little-endian, `segment-format.md` §"Typed payloads"):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | magic `0xCE` |
//! | 1 | 1 | codec: 1 = postcard 1.x, 2 = JSON |
//! | 2 | 4 | schema version (u32) |
//! | 6 | … | the payload in that codec |

use serde::Serialize;
use serde::de::DeserializeOwned;

/// First byte of every typed payload: rejects data that the typed layer did not write.
///
/// ```
/// assert_eq!(chronicle::typed::TYPED_HEADER_MAGIC, 0xCE);
/// ```
pub const TYPED_HEADER_MAGIC: u8 = 0xCE;
/// Bytes of the header in front of a typed payload.
///
/// ```
/// assert_eq!(chronicle::typed::TYPED_HEADER_BYTES, 6);
/// ```
pub const TYPED_HEADER_BYTES: usize = 6;

/// How a typed payload is encoded. Every store reads both: the header names the codec.
///
/// ```
/// use chronicle::typed::Codec;
/// assert_eq!(Codec::default(), Codec::Postcard);
/// assert_eq!(Codec::Json.name(), "json");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Codec {
    /// postcard 1.x: compact, fast, documented stable wire format; not self-describing, so
    /// fields may only be changed through a new schema version and an upcaster.
    #[default]
    Postcard,
    /// JSON (serde_json): larger and slower, readable by any tool; unknown fields are
    /// ignored and `#[serde(default)]` fields may be added without a new version.
    Json,
}

impl Codec {
    /// The codec's name, as in error messages.
    ///
    /// ```
    /// assert_eq!(chronicle::typed::Codec::Postcard.name(), "postcard");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Codec::Postcard => "postcard",
            Codec::Json => "json",
        }
    }

    fn tag(self) -> u8 {
        match self {
            Codec::Postcard => 1,
            Codec::Json => 2,
        }
    }

    fn from_tag(tag: u8) -> Option<Codec> {
        match tag {
            1 => Some(Codec::Postcard),
            2 => Some(Codec::Json),
            _ => None,
        }
    }

    /// Encodes `value` (no header).
    pub(crate) fn encode<T: ?Sized + Serialize>(self, value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Codec::Postcard => {
                let bytes = postcard::to_allocvec(value).map_err(|e| e.to_string())?;
                out.extend_from_slice(&bytes);
                Ok(())
            }
            Codec::Json => serde_json::to_writer(out, value).map_err(|e| e.to_string()),
        }
    }

    /// Decodes a whole payload (no header) as `T`; trailing bytes are an error.
    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        self.decode_seed(bytes, std::marker::PhantomData::<T>)
    }

    /// Decodes a whole payload through `seed`; trailing bytes are an error.
    pub(crate) fn decode_seed<T>(self, bytes: &[u8], seed: impl Seed<T>) -> Result<T, String> {
        match self {
            Codec::Postcard => {
                let mut de = postcard::Deserializer::from_bytes(bytes);
                let value = seed.postcard(&mut de).map_err(|e| e.to_string())?;
                let rest = de.finalize().map_err(|e| e.to_string())?;
                if rest.is_empty() { Ok(value) } else { Err(format!("{} trailing bytes", rest.len())) }
            }
            Codec::Json => {
                let mut de = serde_json::Deserializer::from_slice(bytes);
                let value = seed.json(&mut de).map_err(|e| e.to_string())?;
                de.end().map_err(|e| e.to_string())?;
                Ok(value)
            }
        }
    }
}

/// A way to decode `T` from either codec's deserializer (a plain `Deserialize` type, or an
/// event enum retagged by name).
pub(crate) trait Seed<T> {
    fn postcard<'de>(
        self,
        de: &mut postcard::Deserializer<'de, postcard::de_flavors::Slice<'de>>,
    ) -> postcard::Result<T>;
    fn json(self, de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'_>>) -> serde_json::Result<T>;
}

impl<T: DeserializeOwned> Seed<T> for std::marker::PhantomData<T> {
    fn postcard<'de>(
        self,
        de: &mut postcard::Deserializer<'de, postcard::de_flavors::Slice<'de>>,
    ) -> postcard::Result<T> {
        T::deserialize(de)
    }

    fn json(self, de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'_>>) -> serde_json::Result<T> {
        T::deserialize(de)
    }
}

/// Writes the header for `codec` and `schema_version`.
pub(crate) fn write_header(codec: Codec, schema_version: u32, out: &mut Vec<u8>) {
    out.push(TYPED_HEADER_MAGIC);
    out.push(codec.tag());
    out.extend_from_slice(&schema_version.to_le_bytes());
}

/// Splits `data` into (codec, schema version, payload).
pub(crate) fn read_header(data: &[u8]) -> Result<(Codec, u32, &[u8]), String> {
    let (header, payload) = data
        .split_at_checked(TYPED_HEADER_BYTES)
        .ok_or_else(|| format!("{} bytes, shorter than the {TYPED_HEADER_BYTES}-byte typed header", data.len()))?;
    let [magic, tag, v0, v1, v2, v3] = header else {
        return Err("typed header cut short".into());
    };
    if *magic != TYPED_HEADER_MAGIC {
        return Err(format!("first byte {magic:#04x} is not the typed-payload magic {TYPED_HEADER_MAGIC:#04x}"));
    }
    let codec = Codec::from_tag(*tag).ok_or_else(|| format!("unknown codec tag {tag}"))?;
    Ok((codec, u32::from_le_bytes([*v0, *v1, *v2, *v3]), payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_foreign_data() {
        let mut out = Vec::new();
        write_header(Codec::Json, 0x0102_0304, &mut out);
        out.extend_from_slice(b"{}");
        assert_eq!(out, [0xCE, 2, 4, 3, 2, 1, b'{', b'}']);
        assert_eq!(read_header(&out).unwrap(), (Codec::Json, 0x0102_0304, &b"{}"[..]));
        assert!(read_header(b"{\"a\":1}").is_err());
        assert!(read_header(&[0xCE, 9, 1, 0, 0, 0]).is_err());
        assert!(read_header(&[0xCE, 1]).is_err());
    }

    #[test]
    fn trailing_bytes_are_an_error_in_both_codecs() {
        assert!(Codec::Postcard.decode::<u8>(&[1, 2]).is_err());
        assert!(Codec::Json.decode::<u8>(b"1 2").is_err());
        assert_eq!(Codec::Postcard.decode::<u8>(&[7]).unwrap(), 7);
    }
}
