//! File names in the store directory. Segment ids are fixed-width hexadecimal so names sort
//! in id order.

use std::path::{Path, PathBuf};

/// Exclusive lock held while a store is open.
pub(crate) const LOCK_FILE: &str = "LOCK";
const SEGMENT_PREFIX: &str = "segment-";
const SEGMENT_SUFFIX: &str = ".log";
/// Suffix of files being written; any found on open are leftovers of a crash.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

pub(crate) fn segment_file_name(segment_id: u64) -> String {
    format!("{SEGMENT_PREFIX}{segment_id:016x}{SEGMENT_SUFFIX}")
}

/// The index file that belongs to a segment file path.
pub(crate) fn index_path_for(segment_path: &Path) -> PathBuf {
    segment_path.with_extension("idx")
}

/// For an index file name (`segment-{id}.idx`), the name of its segment file; `None` for any
/// other name.
pub(crate) fn segment_name_of_index(name: &str) -> Option<String> {
    let segment_name = format!("{}{SEGMENT_SUFFIX}", name.strip_suffix(".idx")?);
    parse_segment_file_name(&segment_name).map(|_| segment_name)
}

/// The id of a segment file name, or `None` for any other name.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix(SEGMENT_PREFIX)?.strip_suffix(SEGMENT_SUFFIX)?;
    // Exactly the names this code writes: one name per id (no uppercase, no sign).
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(26), "segment-000000000000001a.log");
        assert_eq!(parse_segment_file_name("segment-000000000000001a.log"), Some(26));
        assert_eq!(parse_segment_file_name("segment-1a.log"), None);
        assert_eq!(parse_segment_file_name("segment-000000000000001A.log"), None);
        assert_eq!(parse_segment_file_name("segment-+00000000000001a.log"), None);
        assert_eq!(
            index_path_for(Path::new("d/segment-000000000000001a.log")),
            Path::new("d/segment-000000000000001a.idx")
        );
        assert_eq!(
            segment_name_of_index("segment-000000000000001a.idx").as_deref(),
            Some("segment-000000000000001a.log")
        );
        assert_eq!(segment_name_of_index("segment-1a.idx"), None);
        assert_eq!(segment_name_of_index("segment-000000000000001a.idx.tmp"), None);
    }
}
