//! Proves that `{:?}` of a `Store` and of its read iterators is safe and short: it never
//! reads a segment's memory map (whose capacity runs past the end of the file, where a read
//! is SIGBUS) and does not dump event bytes.

use chronicle::{ExpectedVersion, NewEvent, Options, Store};

#[test]
fn debug_of_a_store_and_its_iterators_does_not_touch_the_mapped_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // The active segment is mapped with 1 MiB of capacity over a file of a few hundred bytes.
    let store = Store::open_with(dir.path(), Options::default().segment_bytes(1 << 20)).unwrap();
    store.append("s", ExpectedVersion::Any, [NewEvent::new("T", vec![0xAB; 100])]).unwrap();
    let text = format!("{store:?}");
    assert!(text.contains("Store"), "{text}");
    assert!(text.len() < 64 << 10, "Debug of a store printed {} bytes", text.len());
    let all = format!("{:?}", store.read_all(0).unwrap());
    let stream = format!("{:?}", store.read_stream("s", 0).unwrap());
    assert!(all.len() < 64 << 10 && stream.len() < 64 << 10, "{} and {} bytes", all.len(), stream.len());
    let result = Store::open(dir.path()).map(|_| ());
    assert!(format!("{result:?}").contains("Locked"));
    store.close().unwrap();
}
