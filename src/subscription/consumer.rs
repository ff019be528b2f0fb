//! Durable consumers' checkpoints: one small file per consumer, `consumer-{name}.chk`.
//!
//! ```text
//! off  size  field
//!   0     8  magic "CHRNCONS"
//!   8     4  format_version 1
//!  12     2  name_len
//!  14     2  reserved 0
//!  16     8  acked_position   the last acknowledged position
//!  24        name (UTF-8, name_len bytes)
//! end-4   4  crc32 of every byte before it
//! ```
//! Rewritten whole on each acknowledgement: temporary file, fsync, rename, directory fsync
//! (as `retention.tbl`), so a crash leaves the old checkpoint or the new one, never a mix.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::bytes_reader::LeBytes;
use crate::format::crc32_salted;
use crate::layout::TMP_SUFFIX;
use crate::shared::Shared;
use crate::storage::{Storage, read_whole, write_durable};
use crate::sync;

/// The longest consumer name, in bytes.
pub const CONSUMER_NAME_BYTES_MAX: usize = 128;
const MAGIC: [u8; 8] = *b"CHRNCONS";
/// Version of the consumer checkpoint layout above; 1 uses CRC-32 (IEEE).
pub(crate) const CONSUMER_FORMAT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 24;
const FILE_BYTES_MAX: u64 = (HEADER_BYTES + CONSUMER_NAME_BYTES_MAX + 4) as u64;
const PREFIX: &str = "consumer-";
const SUFFIX: &str = ".chk";

/// Checks a consumer name: 1 to [`CONSUMER_NAME_BYTES_MAX`] bytes of ASCII letters, digits,
/// `_`, `-` and `.`, not starting with `.` (it names a file: no path characters).
pub(crate) fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("consumer name is empty"));
    }
    if name.len() > CONSUMER_NAME_BYTES_MAX {
        return Err(Error::invalid(format!(
            "consumer name is {} bytes, above the limit of {CONSUMER_NAME_BYTES_MAX} bytes",
            name.len()
        )));
    }
    if name.starts_with('.') || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) {
        return Err(Error::invalid(format!(
            "consumer name {name:?} may hold only ASCII letters, digits, '_', '-' and '.', and not start with '.'"
        )));
    }
    Ok(())
}

fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{PREFIX}{name}{SUFFIX}"))
}

pub(crate) fn encode(name: &str, acked_position: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + name.len() + 4);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&CONSUMER_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0u8; 2]);
    out.extend_from_slice(&acked_position.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    let crc = crc32_salted(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The acknowledged position in a checkpoint of consumer `name`; the error is (offset, reason).
pub(crate) fn decode(bytes: &[u8], name: &str) -> std::result::Result<u64, (u64, &'static str)> {
    let le = LeBytes(bytes);
    if le.array::<8>(0) != Some(MAGIC) {
        return Err((0, "bad consumer checkpoint magic"));
    }
    let body_len = bytes.len().checked_sub(4).filter(|&n| n >= HEADER_BYTES).ok_or((0, "file is too short"))?;
    if Some(crc32_salted(0, bytes.get(..body_len).unwrap_or_default())) != le.u32(body_len) {
        return Err((body_len as u64, "consumer checkpoint checksum mismatch"));
    }
    if le.u32(8) != Some(CONSUMER_FORMAT_VERSION) {
        return Err((8, "unsupported consumer checkpoint format"));
    }
    let name_len = usize::from(le.u16(12).ok_or((12, "short header"))?);
    if HEADER_BYTES + name_len != body_len {
        return Err((12, "name length does not match the file length"));
    }
    if le.slice(HEADER_BYTES, name_len) != Some(name.as_bytes()) {
        return Err((HEADER_BYTES as u64, "checkpoint belongs to another consumer"));
    }
    le.u64(16).ok_or((16, "short header"))
}

/// The last acknowledged position of consumer `name`; `None` if it has no checkpoint.
///
/// # Errors
/// [`Error::Corruption`] for a damaged checkpoint (never taken for "no checkpoint":
/// starting over silently would replay everything), [`Error::Io`].
pub(crate) fn read(storage: &dyn Storage, dir: &Path, name: &str) -> Result<Option<u64>> {
    let path = path_of(dir, name);
    match read_whole(storage, &path, FILE_BYTES_MAX) {
        Ok(bytes) => {
            decode(&bytes, name).map(Some).map_err(|(offset, reason)| Error::corruption(&path, offset, reason))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(Error::io("read consumer checkpoint", &path, error)),
    }
}

/// Writes consumer `name`'s checkpoint durably: temporary file, fsync, rename, directory fsync.
///
/// # Errors
/// [`Error::Io`]; the previous checkpoint is then still in place.
pub(crate) fn write(storage: &dyn Storage, dir: &Path, name: &str, acked_position: u64) -> Result<()> {
    let path = path_of(dir, name);
    let tmp = dir.join(format!("{PREFIX}{name}{SUFFIX}{TMP_SUFFIX}"));
    write_durable(storage, dir, &path, &tmp, &encode(name, acked_position))
        .map_err(|e| Error::io("write consumer checkpoint", &path, e))
}

/// Removes consumer `name`'s checkpoint (absent is fine).
///
/// # Errors
/// [`Error::Io`].
pub(crate) fn remove(storage: &dyn Storage, dir: &Path, name: &str) -> Result<()> {
    let path = path_of(dir, name);
    match storage.remove_file(&path) {
        Ok(()) => storage.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Error::io("remove consumer checkpoint", &path, error)),
    }
}

/// Holds consumer `name` for one live subscription; released on drop.
#[derive(Debug)]
pub(crate) struct ConsumerClaim {
    shared: Arc<Shared>,
    pub(crate) name: String,
}

impl ConsumerClaim {
    /// Claims `name`.
    ///
    /// # Errors
    /// [`Error::ConsumerInUse`] if a live subscription holds it.
    pub(crate) fn take(shared: &Arc<Shared>, name: &str) -> Result<Self> {
        if !sync::lock(&shared.live_consumers).insert(name.to_owned()) {
            return Err(Error::ConsumerInUse { name: name.to_owned() });
        }
        Ok(ConsumerClaim { shared: Arc::clone(shared), name: name.to_owned() })
    }
}

impl Drop for ConsumerClaim {
    fn drop(&mut self) {
        sync::lock(&self.shared.live_consumers).remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_bit_flip_detected() {
        let bytes = encode("billing", 42);
        assert_eq!(decode(&bytes, "billing"), Ok(42));
        assert!(decode(&bytes, "other").is_err());
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&flipped, "billing").is_err());
        }
    }

    #[test]
    fn golden_bytes() {
        let bytes = encode("a", 1);
        assert_eq!(&bytes[..24], b"CHRNCONS\x01\0\0\0\x01\0\0\0\x01\0\0\0\0\0\0\0");
        assert_eq!(bytes.len(), 24 + 1 + 4);
    }

    #[test]
    fn names() {
        for bad in ["", ".x", "a/b", "a\\b", "..", "a b", "é", &"x".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "billing-v2", "x.y_z", &"x".repeat(128)] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
    }
}
