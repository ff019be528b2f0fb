//! `Store::read_all_with` (borrowed views, no copy) visits exactly what `read_all` returns —
//! every field, from any position, across segments, without deleted streams — stops when
//! the visitor breaks, and reports a damaged record as `Corruption` instead of visiting it;
//! a forged record past the end of the log is `Corruption` forward, backward and visited.

mod common;

use std::ops::ControlFlow;

use chronicle::{Error, ExpectedVersion, NewEvent, Options, RecordedEvent, Store};

fn visited(store: &Store, from: u64) -> Result<Vec<RecordedEvent>, Error> {
    let mut events = Vec::new();
    store.read_all_with(from, |event| {
        events.push(event.to_recorded());
        ControlFlow::Continue(())
    })?;
    Ok(events)
}

fn filled_store(dir: &std::path::Path) -> Store {
    let store = Store::open_with(dir, Options::default().segment_bytes(4096)).unwrap();
    for i in 0..120u32 {
        let stream = format!("stream-{}", i % 7);
        let event = NewEvent::new(format!("Type{}", i % 3), format!("data {i}"))
            .with_metadata(if i % 2 == 0 { format!("meta {i}") } else { String::new() })
            .with_correlation_id(u128::from(i) * 3);
        store.append(&stream, ExpectedVersion::Any, [event]).unwrap();
    }
    store
}

/// Rewrites the record `span` of `segment` with `edit` and recomputes its checksum (salted
/// with the segment id, the file name's hex number).
fn forge(segment: &std::path::Path, span: common::RecordSpan, edit: impl FnOnce(&mut [u8])) {
    let segment_id =
        u64::from_str_radix(segment.file_stem().unwrap().to_str().unwrap().strip_prefix("segment-").unwrap(), 16)
            .unwrap();
    let mut bytes = std::fs::read(segment).unwrap();
    let record = &mut bytes[span.offset as usize..(span.offset + span.len) as usize];
    edit(record);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&segment_id.to_le_bytes());
    crc.update(&record[8..]);
    record[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    std::fs::write(segment, bytes).unwrap();
}

#[test]
fn visits_what_read_all_returns_from_every_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    store.delete_stream("stream-2", ExpectedVersion::Any).unwrap();
    assert!(common::segment_files(dir.path()).len() > 2, "the log spans segments");
    for from in [0, 1, 17, 59, 119, 120, 1000] {
        let expected: Vec<RecordedEvent> = store.read_all(from).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(visited(&store, from).unwrap(), expected, "from {from}");
    }
    assert!(visited(&store, 0).unwrap().iter().all(|e| e.stream_id != "stream-2"));
}

#[test]
fn stops_when_the_visitor_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    let mut positions = Vec::new();
    store
        .read_all_with(10, |event| {
            positions.push(event.position);
            if positions.len() == 5 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .unwrap();
    assert_eq!(positions, [10, 11, 12, 13, 14]);
}

#[test]
fn a_damaged_record_is_reported_not_visited() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    let expected: Vec<RecordedEvent> = store.read_all(0).unwrap().collect::<Result<_, _>>().unwrap();
    store.close().unwrap();
    let segment = common::segment_files(dir.path()).remove(1);
    let records = common::records_of(&segment);
    let damaged = records[2];
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[(damaged.offset + damaged.len - 1) as usize] ^= 0x01;
    std::fs::write(&segment, bytes).unwrap();

    let store = Store::open_with(dir.path(), Options::default().segment_bytes(4096)).unwrap();
    let mut seen = Vec::new();
    let result = store.read_all_with(0, |event| {
        seen.push(event.to_recorded());
        ControlFlow::Continue(())
    });
    match result {
        Err(Error::Corruption { file, offset, .. }) => {
            assert_eq!(file, segment);
            assert_eq!(offset, damaged.offset);
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    assert_eq!(seen, expected[..damaged.position as usize]);
}

/// A forged store (checksum recomputed) whose sealed segment holds a record with a position
/// past the end of the log: every way of reading the whole log reports it.
#[test]
fn a_record_past_the_end_of_the_log_is_reported_every_way() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    store.close().unwrap();
    let segment = common::segment_files(dir.path()).remove(0);
    let last = *common::records_of(&segment).last().unwrap();
    forge(&segment, last, |record| record[16..24].copy_from_slice(&1_000_000u64.to_le_bytes()));

    let store = Store::open_with(dir.path(), Options::default().segment_bytes(4096)).unwrap();
    let is_past_end = |error: &Error| matches!(error, Error::Corruption { file, offset, .. } if *file == segment && *offset == last.offset);
    let forward: Vec<_> = store.read_all(0).unwrap().collect();
    assert!(forward.last().unwrap().as_ref().is_err_and(is_past_end), "forward: {:?}", forward.last());
    let backward: Vec<_> = store.read_all_backward(None).unwrap().collect();
    assert!(backward.last().unwrap().as_ref().is_err_and(is_past_end), "backward: {:?}", backward.last());
    let visited = store.read_all_with(0, |_| ControlFlow::Continue(()));
    assert!(visited.as_ref().is_err_and(is_past_end), "{visited:?}");
}

/// A forged record (checksum recomputed) whose stream id ends with the first byte of "é"
/// and whose event type starts with its second: the two fields joined are valid text, each
/// alone is not. Every way of reading the whole log reports the stream id as not UTF-8.
#[test]
fn text_split_across_stream_id_and_event_type_is_corruption_every_way() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    store.close().unwrap();
    let segment = common::segment_files(dir.path()).remove(0);
    let forged = common::records_of(&segment)[2];
    forge(&segment, forged, |record| {
        let flags = record[9];
        let stream_id_len = u16::from_le_bytes([record[10], record[11]]) as usize;
        // Optional fields before the stream id: correlation id, causation id, durable mark.
        let optional = [(1 << 1, 16), (1 << 2, 16), (1 << 3, 8)];
        let stream_id_at =
            64 + optional.iter().filter(|(flag, _)| flags & flag != 0).map(|(_, len)| len).sum::<usize>();
        let event_type_at = stream_id_at + stream_id_len;
        record[event_type_at - 1] = 0xC3;
        record[event_type_at] = 0xA9;
    });

    let store = Store::open_with(dir.path(), Options::default().segment_bytes(4096)).unwrap();
    let is_bad_text = |error: &Error| {
        matches!(error, Error::Corruption { file, offset, reason }
            if *file == segment && *offset == forged.offset && reason == "stream id is not UTF-8")
    };
    let forward: Vec<_> = store.read_all(0).unwrap().collect();
    assert_eq!(forward.len() as u64, forged.position + 1);
    assert!(forward.last().unwrap().as_ref().is_err_and(is_bad_text), "forward: {:?}", forward.last());
    let backward: Vec<_> = store.read_all_backward(None).unwrap().collect();
    assert!(backward.last().unwrap().as_ref().is_err_and(is_bad_text), "backward: {:?}", backward.last());
    let mut seen = 0;
    let visited = store.read_all_with(0, |_| {
        seen += 1;
        ControlFlow::Continue(())
    });
    assert!(visited.as_ref().is_err_and(is_bad_text), "{visited:?}");
    assert_eq!(seen, forged.position);
}
