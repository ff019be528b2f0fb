//! Proves that a sealed segment file that disappeared from the directory (deleted, or
//! replaced by something that is not a regular file) is reported on open, not skipped: a
//! stream must recover to a prefix of what was written, never with a hole in it.

use chronicle::{Error, ExpectedVersion, NewEvent, Options, Store};

fn store_with_two_segments() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().segment_bytes(4096)).unwrap();
    store.append("a", ExpectedVersion::NoStream, [NewEvent::new("A0", "first")]).unwrap();
    store.seal().unwrap();
    store.append("a", ExpectedVersion::Exact(0), [NewEvent::new("A1", "second")]).unwrap();
    store.close().unwrap();
    dir
}

fn versions_or_error(dir: &std::path::Path) -> Result<Vec<u64>, Error> {
    let store = Store::open(dir)?;
    let versions = store.read_stream("a", 0)?.map(|e| e.map(|e| e.version)).collect::<Result<Vec<_>, _>>()?;
    store.close()?;
    Ok(versions)
}

#[test]
fn the_fixture_reads_both_versions() {
    let dir = store_with_two_segments();
    assert_eq!(versions_or_error(dir.path()).unwrap(), [0, 1]);
}

#[test]
fn a_deleted_sealed_segment_is_reported_not_skipped() {
    let dir = store_with_two_segments();
    std::fs::remove_file(dir.path().join("segment-0000000000000001.log")).unwrap();
    let outcome = versions_or_error(dir.path());
    assert!(matches!(outcome, Err(Error::Corruption { .. })), "stream `a` read as {outcome:?} (written: [0, 1])");
}

#[test]
fn a_sealed_segment_replaced_by_a_symlink_is_reported_not_skipped() {
    let dir = store_with_two_segments();
    let segment = dir.path().join("segment-0000000000000001.log");
    let moved = dir.path().join("moved-away");
    std::fs::rename(&segment, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &segment).unwrap();
    let outcome = versions_or_error(dir.path());
    assert!(
        matches!(outcome, Ok(ref v) if v == &[0, 1])
            || matches!(outcome, Err(Error::Corruption { .. } | Error::Io { .. })),
        "stream `a` read as {outcome:?} (written: [0, 1])"
    );
}
