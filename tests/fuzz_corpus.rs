//! Replays every committed fuzz seed (`fuzz/corpus/<target>/*`) through the same
//! `chronicle_testkit` entry points the cargo-fuzz targets call: no panic (in any thread),
//! no broken invariant, no large allocation driven by the bytes. Also holds the generator of
//! the seed corpora (an ignored test, run by hand).

mod alloc_probe;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use chronicle::{Durability, ExpectedVersion, NewEvent, Options, Store};
use chronicle_testkit::codecs::{
    self, ENTRY_INDEX, ENTRY_INDEX_TMP, ENTRY_OTHER, ENTRY_RESEAL, ENTRY_SEGMENT, ENTRY_SNAPSHOT,
    ENTRY_STREAM_CHECKPOINT, MODE_RESEAL, SNAPSHOT_STREAMS,
};
use chronicle_testkit::operations::{self, EventSpec, Expect, Fault, Op, PERIODIC_INTERVAL, PartSpec, Recovery};

#[global_allocator]
static ALLOCATOR: alloc_probe::LargestAllocation = alloc_probe::LargestAllocation;

/// No seed may make the store allocate more than this in one piece: seeds are a few KiB.
const ALLOCATION_BYTES_MAX: usize = 64 << 20;

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus")
}

fn replay(target: &str, data: &[u8]) -> Result<bool, String> {
    match target {
        "record_decoder" => codecs::record_decoder_target(data),
        "segment_header" => codecs::segment_header_target(data),
        "index_file" => codecs::index_file_target(data),
        "snapshot_file" => codecs::snapshot_file_target(data),
        "open_directory" => {
            let root = tempfile::tempdir().expect("tempdir");
            codecs::open_directory_target(data, &root.path().join("store"))
        }
        "operations" => chronicle_testkit::operations_target(data),
        other => panic!("fuzz/corpus/{other} has no replay arm in tests/fuzz_corpus.rs"),
    }
}

#[test]
fn every_seed_replays_without_a_violation() {
    // Count panics of this test's thread and of the engine's threads (a writer or compactor
    // panic does not reach the caller), not those of other tests running beside it.
    let replay_thread = std::thread::current().id();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        if thread.id() == replay_thread || thread.name().is_some_and(|n| n.starts_with("chronicle")) {
            PANICS.fetch_add(1, Ordering::SeqCst);
        }
        default_hook(info);
    }));
    let mut targets: Vec<PathBuf> =
        std::fs::read_dir(corpus_root()).expect("fuzz/corpus exists").map(|e| e.unwrap().path()).collect();
    targets.sort();
    let names: Vec<String> = targets.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for expected in ["index_file", "open_directory", "operations", "record_decoder", "segment_header", "snapshot_file"]
    {
        assert!(names.iter().any(|n| n == expected), "fuzz/corpus/{expected} is missing");
    }
    let mut failures = Vec::new();
    for (target_dir, target) in targets.iter().zip(&names) {
        let mut seeds: Vec<PathBuf> = std::fs::read_dir(target_dir).unwrap().map(|e| e.unwrap().path()).collect();
        seeds.sort();
        assert!(seeds.len() >= 3, "fuzz/corpus/{target} has only {} seeds", seeds.len());
        let mut accepted = 0;
        for seed in &seeds {
            let data = std::fs::read(seed).unwrap();
            let panics_before = PANICS.load(Ordering::SeqCst);
            alloc_probe::reset();
            let verdict = std::panic::catch_unwind(|| replay(target, &data));
            let largest = alloc_probe::largest_bytes();
            let name = seed.file_name().unwrap().to_string_lossy();
            match verdict {
                Ok(Ok(true)) => accepted += 1,
                Ok(Ok(false)) => {}
                Ok(Err(violation)) => failures.push(format!("{target}/{name}: {violation}")),
                Err(_) => failures.push(format!("{target}/{name}: panicked")),
            }
            if PANICS.load(Ordering::SeqCst) != panics_before {
                failures.push(format!("{target}/{name}: a thread panicked"));
            }
            if largest > ALLOCATION_BYTES_MAX {
                failures.push(format!("{target}/{name}: allocated {largest} bytes in one piece"));
            }
        }
        assert!(accepted > 0, "no seed of fuzz/corpus/{target} is accepted: the corpus does not reach past the checks");
    }
    assert!(failures.is_empty(), "seeds failed:\n{}", failures.join("\n"));
}

/// Inputs the fuzzer found that show an engine weakness no oracle of the fuzz targets holds
/// the engine to yet: each has an ignored test until the engine is fixed.
fn known_bug(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("known_bugs").join(name)).unwrap()
}

/// Was ignored as a known bug until `StreamIter` checked that versions strictly increase
/// across segments: the duplicate is now reported as `Corruption`.
#[test]
fn a_stream_never_reads_the_same_version_twice() {
    // Forged (checksums recomputed) store: segment 1's record at position 15 says stream
    // `order-0` version 5 while segment 1's index says `order-1`; segment 2 holds `order-0`
    // version 5 again at position 16. read_stream("order-0") gives [v5@16]; after compact()
    // (which rebuilds segment 1's index from its records) it gives [v5@15, v5@16].
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    std::fs::create_dir_all(&dir).unwrap();
    for file in codecs::directory_files(&known_bug("open_directory-forged-duplicate-version")) {
        std::fs::write(dir.join(&file.name), &file.bytes).unwrap();
    }
    let store =
        Store::open_with(&dir, Options::default().segment_bytes(4096).durability(Durability::Buffered)).unwrap();
    let _ = store.compact();
    let mut last: Option<u64> = None;
    for event in store.read_stream("order-0", 0).unwrap() {
        let Ok(event) = event else { return }; // Corruption is an acceptable answer
        assert!(last.is_none_or(|v| v < event.version), "version {} after {last:?}", event.version);
        last = Some(event.version);
    }
}

// ---------------------------------------------------------------------------------------
// Seed generator
// ---------------------------------------------------------------------------------------

/// Files of a small real store: `(kind, segment id, bytes)` by file name.
fn real_store_files() -> BTreeMap<String, (u8, u8, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().segment_bytes(4096).durability(Durability::Buffered);
    let store = Store::open_with(dir.path(), options).unwrap();
    let streams = ["order-1", "order-2", "käse-λ"];
    for i in 0..45u32 {
        let stream = streams[i as usize % streams.len()];
        let mut event = NewEvent::new(format!("Type{}", i % 4), vec![i as u8; 150 + i as usize]);
        if i % 5 == 0 {
            event = event.with_metadata(format!("meta-{i}")).with_correlation_id(u128::from(i)).with_causation_id(3);
        }
        store.append(stream, ExpectedVersion::Any, [event]).unwrap();
    }
    store
        .append_multi([
            chronicle::StreamAppend::new("order-1", ExpectedVersion::Any, [NewEvent::new("Multi", "a")]),
            chronicle::StreamAppend::new("order-3", ExpectedVersion::NoStream, [NewEvent::new("Multi", "b")]),
        ])
        .unwrap();
    store.save_snapshot("order-1", 5, b"state of order-1 at 5").unwrap();
    store.save_snapshot("k\u{e4}se-\u{3bb}", 3, &[0xC5; 40]).unwrap();
    store.delete_stream("order-3", ExpectedVersion::Any).unwrap();
    store.append("order-2", ExpectedVersion::Any, [NewEvent::new("AfterDelete", "x")]).unwrap();
    store.close().unwrap();
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("snapshot-") {
            // The fuzz input names snapshot files by (stream index, version): check that the
            // harness names them as the store does.
            let id = (0..64u8)
                .find(|&id| {
                    codecs::snapshot_file_name(SNAPSHOT_STREAMS[usize::from(id % 4)], u64::from(id / 4)) == name
                })
                .unwrap_or_else(|| panic!("snapshot file {name} is not named as the codecs name it"));
            files.insert(name.clone(), (ENTRY_SNAPSHOT, id, std::fs::read(dir.path().join(&name)).unwrap()));
            continue;
        }
        if name == "streams.chk" {
            files.insert(name.clone(), (ENTRY_STREAM_CHECKPOINT, 0, std::fs::read(dir.path().join(&name)).unwrap()));
            continue;
        }
        let Some(rest) = name.strip_prefix("segment-") else { continue };
        let (hex, ext) = rest.split_once('.').unwrap();
        let id = u8::try_from(u64::from_str_radix(hex, 16).unwrap()).unwrap();
        let kind = match ext {
            "log" => ENTRY_SEGMENT,
            "idx" => ENTRY_INDEX,
            _ => continue,
        };
        files.insert(name.clone(), (kind, id, std::fs::read(dir.path().join(&name)).unwrap()));
    }
    assert!(files.len() >= 7, "the seed store should have several sealed segments: {:?}", files.keys());
    assert!(files.len() <= codecs::DIRECTORY_FILES_MAX, "too many files for one input: {:?}", files.keys());
    files
}

fn directory_input(files: &BTreeMap<String, (u8, u8, Vec<u8>)>, reseal: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, id, bytes) in files.values() {
        codecs::encode_directory_entry(&mut out, kind | if reseal { ENTRY_RESEAL } else { 0 }, *id, bytes);
    }
    out
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(bytes);
    out
}

fn last_of_kind(files: &BTreeMap<String, (u8, u8, Vec<u8>)>, kind: u8) -> String {
    files.iter().filter(|(_, f)| f.0 == kind).map(|(n, _)| n.clone()).next_back().unwrap()
}

/// Index bytes with `record_count` (offset 56) replaced; checksums recomputed.
fn index_with_record_count(index: &[u8], record_count: u32) -> Vec<u8> {
    let mut bytes = index.to_vec();
    bytes[56..60].copy_from_slice(&record_count.to_le_bytes());
    codecs::reseal_index(&mut bytes);
    bytes
}

#[test]
#[ignore = "generator: rewrites fuzz/corpus seeds; run by hand with CHRONICLE_WRITE_SEEDS=1"]
fn generate_seed_corpus() {
    if std::env::var_os("CHRONICLE_WRITE_SEEDS").is_none() {
        eprintln!("CHRONICLE_WRITE_SEEDS not set: not rewriting the committed seeds");
        return;
    }
    let mut seeds: Vec<(&str, String, Vec<u8>)> = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| seeds.push((target, name.to_owned(), bytes));

    // record_decoder
    let one = codecs::encode_record(1, 0, 0, "order-1", "Placed", b"meta", b"{\"total\":42}", true);
    add("record_decoder", "one-record", with_mode(0, &one));
    let mut three = Vec::new();
    for position in 0..3 {
        three.extend(codecs::encode_record(1, position, position, "s", "T", b"", &[position as u8; 9], position == 2));
    }
    add("record_decoder", "three-records-one-group", with_mode(0, &three));
    let mut torn = three.clone();
    torn.truncate(three.len() - 5);
    add("record_decoder", "torn-group", with_mode(0, &torn));
    let mut zeroed_crc = one.clone();
    zeroed_crc[4..8].fill(0);
    add("record_decoder", "reseal-one-record", with_mode(MODE_RESEAL, &zeroed_crc));
    let mut bad_kind = one.clone();
    bad_kind[8] = 9;
    add("record_decoder", "reseal-unknown-kind", with_mode(MODE_RESEAL, &bad_kind));
    let mut huge_len = one.clone();
    huge_len[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    add("record_decoder", "length-u32-max", with_mode(0, &huge_len));
    add("record_decoder", "zeros", vec![0; 129]);
    add("record_decoder", "empty", Vec::new());
    let salt_other = codecs::encode_record(2, 0, 0, "x", "T", b"", b"", true);
    add("record_decoder", "other-segment-salt", with_mode(0, &salt_other));

    // segment_header, index_file, open_directory: from a real store
    let files = real_store_files();
    let first_log = &files.values().find(|f| f.0 == ENTRY_SEGMENT).unwrap().2;
    add("segment_header", "valid", with_mode(0, &first_log[..64]));
    let mut bad_version = first_log[..64].to_vec();
    bad_version[8] = 2;
    add("segment_header", "reseal-version-2", with_mode(MODE_RESEAL, &bad_version));
    let mut reserved = first_log[..64].to_vec();
    reserved[50] = 1;
    add("segment_header", "reseal-reserved-set", with_mode(MODE_RESEAL, &reserved));
    add("segment_header", "short", with_mode(0, &first_log[..63]));
    let mut flipped = first_log[..64].to_vec();
    flipped[20] ^= 4;
    add("segment_header", "flipped-bit", with_mode(0, &flipped));

    let last_index_name = last_of_kind(&files, ENTRY_INDEX);
    let first_index = &files.values().find(|f| f.0 == ENTRY_INDEX).unwrap().2;
    let last_index = &files[&last_index_name].2;
    add("index_file", "sealed", with_mode(0, first_index));
    add("index_file", "checkpoint", with_mode(0, last_index));
    add("index_file", "truncated", with_mode(0, &first_index[..first_index.len() - 7]));
    add(
        "index_file",
        "reseal-record-count-u32-max",
        with_mode(MODE_RESEAL, &index_with_record_count(first_index, u32::MAX)),
    );
    let mut counts = first_index.clone();
    counts[40..44].copy_from_slice(&1000u32.to_le_bytes());
    add("index_file", "reseal-stream-count-1000", with_mode(MODE_RESEAL, &counts));
    add("index_file", "header-only", with_mode(MODE_RESEAL, &first_index[..64]));

    let snapshot = codecs::encode_snapshot("order-1", 5, b"state");
    add("snapshot_file", "valid", with_mode(0, &snapshot));
    add("snapshot_file", "empty-state", with_mode(0, &codecs::encode_snapshot("s", 0, b"")));
    add("snapshot_file", "truncated", with_mode(0, &snapshot[..snapshot.len() - 3]));
    let mut long_stream = snapshot.clone();
    long_stream[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    add("snapshot_file", "reseal-stream-length-u32-max", with_mode(MODE_RESEAL, &long_stream));
    let mut bad_utf8 = snapshot.clone();
    bad_utf8[40] = 0xFF;
    add("snapshot_file", "reseal-stream-not-utf8", with_mode(MODE_RESEAL, &bad_utf8));
    add("snapshot_file", "magic-only", with_mode(0, b"CHRNSNAP"));

    add("open_directory", "empty", Vec::new());
    add("open_directory", "store-clean", directory_input(&files, false));
    add("open_directory", "store-resealed", directory_input(&files, true));
    let logs_only: BTreeMap<_, _> =
        files.iter().filter(|f| f.1.0 == ENTRY_SEGMENT).map(|(n, f)| (n.clone(), f.clone())).collect();
    add("open_directory", "store-no-index", directory_input(&logs_only, false));
    let last_log_name = last_of_kind(&files, ENTRY_SEGMENT);
    let mut torn_store = files.clone();
    let torn_log = &mut torn_store.get_mut(&last_log_name).unwrap().2;
    torn_log.truncate(torn_log.len() - 37);
    add("open_directory", "store-torn-tail", directory_input(&torn_store, false));
    let mut garbage_store = files.clone();
    garbage_store.get_mut(&last_log_name).unwrap().2.extend_from_slice(&[0xAB; 100]);
    add("open_directory", "store-garbage-tail", directory_input(&garbage_store, false));
    let mut huge_checkpoint = files.clone();
    let checkpoint = &mut huge_checkpoint.get_mut(&last_index_name).unwrap().2;
    *checkpoint = index_with_record_count(checkpoint, u32::MAX);
    add("open_directory", "checkpoint-record-count-u32-max", directory_input(&huge_checkpoint, false));
    let mut damaged_streams = files.clone();
    let streams_chk = &mut damaged_streams.get_mut("streams.chk").expect("a closed store has a checkpoint").2;
    let middle = streams_chk.len() / 2;
    streams_chk[middle] ^= 0x20;
    add("open_directory", "stream-checkpoint-damaged", directory_input(&damaged_streams, false));
    let mut leftovers = Vec::new();
    codecs::encode_directory_entry(&mut leftovers, ENTRY_INDEX_TMP, 1, b"half an index");
    codecs::encode_directory_entry(&mut leftovers, ENTRY_OTHER, 1, b"not ours");
    add("open_directory", "leftovers-only", leftovers);
    let mut header_only = Vec::new();
    codecs::encode_directory_entry(&mut header_only, ENTRY_SEGMENT, 1, &first_log[..64]);
    add("open_directory", "header-only-segment", header_only);
    let mut wrong_id = Vec::new();
    codecs::encode_directory_entry(&mut wrong_id, ENTRY_SEGMENT, 2, first_log);
    add("open_directory", "header-id-differs-from-name", wrong_id);

    for (name, durability, ops) in operation_seeds() {
        let bytes = operations::encode(durability, &ops);
        assert_eq!(operations::decode(&bytes), (durability, ops), "seed {name} does not decode to its operations");
        add("operations", name, bytes);
    }

    let root = corpus_root();
    for (target, name, bytes) in seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn event(data_bytes: usize, flags: u8) -> EventSpec {
    EventSpec { data_bytes, with_id: flags & 1 != 0, with_metadata: flags & 2 != 0, with_links: flags & 4 != 0 }
}

fn append(stream: usize, expect: Expect, events: &[(usize, u8)]) -> Op {
    Op::Append(PartSpec { stream, expect, events: events.iter().map(|&(bytes, flags)| event(bytes, flags)).collect() })
}

/// A few hundred bytes to each stream in turn: enough to roll several 4 KiB segments.
fn fill(appends: usize) -> Vec<Op> {
    (0..appends).map(|i| append(i % 5, Expect::Any, &[(150 + i * 7 % 60, (i % 8) as u8), (40, 1)])).collect()
}

/// Seeds of the `operations` target: each reaches a different part of the model.
fn operation_seeds() -> Vec<(&'static str, Durability, Vec<Op>)> {
    let multi = Op::AppendMulti(vec![
        PartSpec { stream: 0, expect: Expect::Current, events: vec![event(20, 1), event(30, 3)] },
        PartSpec { stream: 1, expect: Expect::NoStream, events: vec![event(10, 5)] },
    ]);
    let reads = [
        Op::ReadStream { stream: 0, from_version: 1, backward: false },
        Op::ReadStream { stream: 3, from_version: 2, backward: true },
        Op::ReadAll { from_position: 3, backward: false },
        Op::ReadAll { from_position: 9, backward: true },
    ];
    let mut every_expectation = vec![
        append(2, Expect::NoStream, &[(5, 1)]),
        append(2, Expect::StreamExists, &[(6, 0)]),
        append(2, Expect::Exact(1), &[(7, 2)]),
        append(2, Expect::Exact(7), &[(8, 0)]),
        append(2, Expect::Current, &[(9, 4)]),
        append(4, Expect::StreamExists, &[(1, 0)]),
        multi.clone(),
        Op::RetryLast,
        Op::AppendMulti(vec![]),
        append(1, Expect::Any, &[]),
        append(1, Expect::Any, &[(3840, 0)]),
    ];
    every_expectation.extend(reads.iter().cloned());

    let mut compaction = fill(30);
    compaction.extend([
        Op::Snapshot { stream: 3, back: 1, past_end: false },
        Op::Delete { stream: 4, expect: Expect::Any },
        Op::Compact,
        Op::Crash(1),
    ]);
    compaction.extend(reads.iter().cloned());

    let mut crash_in_compaction = fill(24);
    crash_in_compaction.extend([
        Op::Delete { stream: 2, expect: Expect::Current },
        Op::FailAfter { calls: 12, fault: Fault::Stop, recovery: Recovery::PowerLoss(3) },
        Op::Compact,
        Op::Compact,
    ]);

    let mut buffered = fill(6);
    buffered.extend([Op::Sync, append(0, Expect::Any, &[(100, 1)]), Op::Crash(2), Op::RetryLast]);
    buffered.extend(fill(12));
    buffered.extend([Op::Seal, append(3, Expect::Any, &[(10, 0)]), Op::Crash(6), Op::Reopen]);

    let mut periodic = fill(8);
    periodic.extend([
        Op::Snapshot { stream: 1, back: 0, past_end: false },
        append(1, Expect::Current, &[(30, 1)]),
        Op::Crash(0),
    ]);

    let mut faults = Vec::new();
    for (i, (fault, recovery)) in [
        (Fault::Stop, Recovery::PowerLoss(1)),
        (Fault::Io, Recovery::PowerLoss(2)),
        (Fault::NoSpace, Recovery::Restart),
        (Fault::Io, Recovery::Restart),
    ]
    .into_iter()
    .enumerate()
    {
        faults.extend(fill(3));
        faults.push(Op::FailAfter { calls: 2 + i as u64, fault, recovery });
        faults.push(append(i, Expect::Current, &[(200, 1), (10, 1)]));
        faults.push(append(i, Expect::Current, &[(200, 1)]));
        faults.push(Op::RetryLast);
    }

    let mut snapshots = fill(5);
    snapshots.extend([
        Op::Snapshot { stream: 0, back: 0, past_end: false },
        Op::Snapshot { stream: 0, back: 2, past_end: false },
        Op::Snapshot { stream: 0, back: 0, past_end: true },
        Op::FailAfter { calls: 3, fault: Fault::Io, recovery: Recovery::PowerLoss(5) },
        Op::Snapshot { stream: 1, back: 0, past_end: false },
        Op::Delete { stream: 0, expect: Expect::Exact(0) },
        Op::Delete { stream: 0, expect: Expect::Any },
        Op::Snapshot { stream: 0, back: 0, past_end: false },
    ]);

    let mut reopen_fault = fill(10);
    reopen_fault
        .extend([Op::FailAfter { calls: 4, fault: Fault::NoSpace, recovery: Recovery::PowerLoss(9) }, Op::Reopen]);

    vec![
        ("sync-every-expected-version", Durability::Sync, every_expectation),
        ("sync-compaction-then-crash", Durability::Sync, compaction),
        ("sync-stop-during-compaction", Durability::Sync, crash_in_compaction),
        ("buffered-sync-seal-crash", Durability::Buffered, buffered),
        ("periodic-snapshot-then-crash", Durability::Periodic(PERIODIC_INTERVAL), periodic),
        ("sync-each-fault-and-recovery", Durability::Sync, faults.clone()),
        ("buffered-each-fault-and-recovery", Durability::Buffered, faults),
        ("sync-snapshots-delete-and-fault", Durability::Sync, snapshots),
        ("buffered-fault-during-reopen", Durability::Buffered, reopen_fault),
    ]
}
