//! Proves the documented behaviour after `close()`: every method on every other clone
//! returns `Error::Closed` (reads included) and writes nothing, a second `close` is `Ok`,
//! and iterators created before the close run to their end.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

use chronicle::{Error, ExpectedVersion, NewEvent, Retention, Store, StreamAppend};

/// Every file of the store directory with its contents.
fn directory(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap())
        })
        .collect()
}

type Call = fn(&Store) -> Result<(), Error>;

fn calls() -> Vec<(&'static str, Call)> {
    vec![
        ("append", |s| s.append("s", ExpectedVersion::Any, [NewEvent::new("T", "")]).map(drop)),
        ("append_multi", |s| {
            s.append_multi([StreamAppend::new("s", ExpectedVersion::Any, [NewEvent::new("T", "")])]).map(drop)
        }),
        ("read_stream", |s| s.read_stream("s", 0).map(drop)),
        ("read_stream_backward", |s| s.read_stream_backward("s", None).map(drop)),
        ("read_all", |s| s.read_all(0).map(drop)),
        ("read_all_with", |s| s.read_all_with(0, |_| ControlFlow::Continue(()))),
        ("read_all_backward", |s| s.read_all_backward(None).map(drop)),
        ("stream_version", |s| s.stream_version("s").map(drop)),
        ("stream_info", |s| s.stream_info("s").map(drop)),
        ("streams", |s| s.streams().map(drop)),
        ("sync", Store::sync),
        ("seal", Store::seal),
        ("save_snapshot", |s| s.save_snapshot("s", 0, b"state")),
        ("load_snapshot", |s| s.load_snapshot("s").map(drop)),
        ("delete_stream", |s| s.delete_stream("s", ExpectedVersion::Any)),
        ("set_stream_retention", |s| s.set_stream_retention("s", Retention::MaxCount(1))),
        ("compact", |s| s.compact().map(drop)),
        ("verify", |s| s.verify().map(drop)),
        ("segment_files", |s| s.segment_files().map(drop)),
        ("backup", |s| {
            s.backup(std::env::temp_dir().join(format!("chronicle-after-close-{}", std::process::id()))).map(drop)
        }),
    ]
}

#[test]
fn every_method_on_another_clone_returns_closed_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::Any, [NewEvent::new("T", "a"), NewEvent::new("T", "b")]).unwrap();
    store.save_snapshot("s", 0, b"v0").unwrap();
    let other = store.clone();
    store.close().unwrap();
    let closed = directory(dir.path());

    for (name, call) in calls() {
        assert!(matches!(call(&other), Err(Error::Closed)), "{name} after close: {:?}", call(&other));
    }
    // Also for calls whose arguments are invalid: Closed comes first.
    assert!(matches!(other.append("", ExpectedVersion::Any, [NewEvent::new("T", "")]), Err(Error::Closed)));
    assert_eq!(other.path(), dir.path());
    assert_eq!(directory(dir.path()), closed, "nothing was written after close");
    assert!(other.clone().close().is_ok(), "a second close is Ok");
    drop(other);
    assert_eq!(directory(dir.path()), closed, "dropping the last clone writes nothing either");

    let reopened = Store::open(dir.path()).unwrap();
    assert_eq!(reopened.stream_version("s").unwrap(), Some(1));
    assert!(reopened.stream_info("s").unwrap().is_some());
}

#[test]
fn iterators_created_before_close_run_to_their_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::Any, (0..50u8).map(|i| NewEvent::new("T", vec![i]))).unwrap();
    store.seal().unwrap();
    store.append("s", ExpectedVersion::Any, (50..100u8).map(|i| NewEvent::new("T", vec![i]))).unwrap();
    let mut forward = store.read_stream("s", 0).unwrap();
    let first = forward.next().unwrap().unwrap();
    let all = store.read_all(0).unwrap();
    let backward = store.read_all_backward(None).unwrap();
    let other = store.clone();
    store.close().unwrap();
    drop(other);

    let rest: Vec<u8> = forward.map(|e| e.unwrap().data[0]).collect();
    assert_eq!(first.version, 0);
    assert_eq!(rest, (1..100).collect::<Vec<u8>>());
    assert_eq!(all.map(|e| e.unwrap().position).collect::<Vec<_>>(), (0..100).collect::<Vec<_>>());
    assert_eq!(backward.count(), 100);
}
