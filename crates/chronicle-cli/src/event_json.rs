//! Events as JSON: RFC 3339 timestamps, and payloads as text, JSON or base64.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use chronicle::RecordedEvent;
use serde_json::{Map, Value, json};

/// `2026-12-02T03:04:05.123456Z` (UTC, microseconds).
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let micros = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
    let secs = (micros / 1_000_000) as i64;
    let frac = micros % 1_000_000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:06}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A payload: JSON as JSON, other UTF-8 as a string, anything else base64; and which.
pub(crate) fn payload(bytes: &[u8]) -> (Value, &'static str) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let trimmed = text.trim_start();
        if (trimmed.starts_with('{') || trimmed.starts_with('['))
            && let Ok(value) = serde_json::from_str(text)
        {
            return (value, "json");
        }
        return (Value::String(text.to_owned()), "text");
    }
    (Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)), "base64")
}

fn id(value: u128) -> Value {
    Value::String(format!("{value:032x}"))
}

/// The event as one JSON object.
pub(crate) fn event(e: &RecordedEvent) -> Value {
    let (data, data_encoding) = payload(&e.data);
    let (metadata, metadata_encoding) = payload(&e.metadata);
    let mut object = Map::new();
    object.insert("stream_id".into(), json!(e.stream_id));
    object.insert("version".into(), json!(e.version));
    object.insert("position".into(), json!(e.position));
    object.insert("event_type".into(), json!(e.event_type));
    object.insert("id".into(), id(e.id));
    object.insert("correlation_id".into(), e.correlation_id.map_or(Value::Null, id));
    object.insert("causation_id".into(), e.causation_id.map_or(Value::Null, id));
    object.insert("timestamp".into(), json!(rfc3339(e.timestamp)));
    object.insert("data".into(), data);
    object.insert("data_encoding".into(), json!(data_encoding));
    object.insert("metadata".into(), metadata);
    object.insert("metadata_encoding".into(), json!(metadata_encoding));
    Value::Object(object)
}

/// A table row: position, stream, version, type, timestamp, data (shortened).
pub(crate) fn table_row(e: &RecordedEvent) -> String {
    let (data, _) = payload(&e.data);
    let mut data = match data {
        Value::String(s) => s,
        other => other.to_string(),
    };
    if data.chars().count() > 60 {
        data = data.chars().take(57).collect::<String>() + "...";
    }
    format!(
        "{:>10}  {:<24} {:>8}  {:<20} {}  {}",
        e.position,
        e.stream_id,
        e.version,
        e.event_type,
        rfc3339(e.timestamp),
        data.replace('\n', " ")
    )
}

pub(crate) const TABLE_HEADER: &str =
    "  position  stream                    version  type                 timestamp                    data";

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_764_644_645_123_456);
        assert_eq!(rfc3339(t), "2025-12-02T03:04:05.123456Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn payloads() {
        assert_eq!(payload(br#"{"a":1}"#), (json!({"a": 1}), "json"));
        assert_eq!(payload(b"hello"), (json!("hello"), "text"));
        assert_eq!(payload(b"42"), (json!("42"), "text"));
        assert_eq!(payload(&[0xff, 0x00]), (json!("/wA="), "base64"));
    }
}
