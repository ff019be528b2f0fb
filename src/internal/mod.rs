//! Hidden internals for chronicle's own test kit, fuzz targets and benchmarks, compiled only
//! with the `__internal` feature (which `chronicle-testkit` and `chronicle-bench` enable).
//! Not an API: free to change with them, and absent from a normal build.

pub mod bench;
pub mod codecs;

/// Encoded size in bytes of one event record with variable parts of these lengths (the
/// model needs it to predict when a segment rolls).
///
/// ```
/// let bytes = chronicle::internal::encoded_record_bytes(3, 1, 0, 10, false, false);
/// assert!(bytes > 14);
/// ```
pub fn encoded_record_bytes(
    stream_id_len: usize,
    event_type_len: usize,
    metadata_len: usize,
    data_len: usize,
    has_correlation: bool,
    has_causation: bool,
) -> usize {
    crate::format::record::encoded_len(
        stream_id_len,
        event_type_len,
        metadata_len,
        data_len,
        has_correlation,
        has_causation,
    )
}
