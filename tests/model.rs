//! Model-based test: random sequences of appends (every `ExpectedVersion` kind), multi-stream
//! appends, retries, reads, deletions, snapshots, compactions, syncs, seals, power losses,
//! reopens and faults at the Nth I/O call (EIO, ENOSPC, process stop; then power loss or
//! restart) run against the store (on `SimStorage`, 4 KiB segments) and an in-memory model
//! with a durable watermark; after every operation the store's answers and its whole
//! visible content equal the model's, and after every power loss it shows a prefix of the
//! writes that keeps at least every durable one. Under `Durability::Sync` every acknowledged
//! write is durable; under `Buffered` (and `Periodic`, whose timer never fires here) only
//! what a `sync`, `seal`, `compact`, `save_snapshot` or clean close covered. One stream has
//! `Retention::MaxCount(2)`, so compaction trims it. The model and the harness live in
//! `chronicle::fuzz_api` and are shared with the `operations` fuzz target.
//!
//! `CHRONICLE_MODEL_CASES=N` runs N cases per durability mode (default 128; Periodic a
//! quarter of it).

use std::cell::Cell;
use std::collections::BTreeSet;

use chronicle::Durability;
use chronicle_testkit::model::STREAMS;
use chronicle_testkit::operations::{
    self, EventSpec, Expect, Fault, Op, PERIODIC_INTERVAL, PartSpec, Recovery, RunStats, Variant,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const OPS_MAX: usize = 60;
const CASES_DEFAULT: u32 = 128;

fn expect_strategy() -> impl Strategy<Value = Expect> {
    prop_oneof![
        3 => Just(Expect::Any),
        1 => Just(Expect::NoStream),
        1 => Just(Expect::StreamExists),
        3 => Just(Expect::Current),
        1 => (0u64..6).prop_map(Expect::Exact),
    ]
}

fn event_strategy() -> impl Strategy<Value = EventSpec> {
    (prop_oneof![1 => 0usize..40, 2 => 40usize..320], any::<bool>(), any::<bool>(), prop::bool::weighted(0.2)).prop_map(
        |(data_bytes, with_id, with_metadata, with_links)| EventSpec { data_bytes, with_id, with_metadata, with_links },
    )
}

fn part_strategy() -> impl Strategy<Value = PartSpec> {
    (0..STREAMS.len(), expect_strategy(), prop::collection::vec(event_strategy(), 1..=3))
        .prop_map(|(stream, expect, events)| PartSpec { stream, expect, events })
}

fn recovery_strategy() -> impl Strategy<Value = Recovery> {
    prop_oneof![3 => (0u64..64).prop_map(Recovery::PowerLoss), 1 => Just(Recovery::Restart)]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let stream = 0..STREAMS.len();
    prop_oneof![
        8 => part_strategy().prop_map(Op::Append),
        3 => prop::collection::vec(part_strategy(), 1..=3).prop_map(|mut parts| {
            // A stream may appear once per append_multi.
            let mut seen = BTreeSet::new();
            parts.retain(|p| seen.insert(p.stream));
            Op::AppendMulti(parts)
        }),
        1 => Just(Op::RetryLast),
        2 => (stream.clone(), 0u64..5, any::<bool>())
            .prop_map(|(stream, from_version, backward)| Op::ReadStream { stream, from_version, backward }),
        2 => (0u64..40, any::<bool>()).prop_map(|(from_position, backward)| Op::ReadAll { from_position, backward }),
        1 => (stream.clone(), expect_strategy()).prop_map(|(stream, expect)| Op::Delete { stream, expect }),
        2 => (stream, 0u64..3, prop::bool::weighted(0.1))
            .prop_map(|(stream, back, past_end)| Op::Snapshot { stream, back, past_end }),
        1 => Just(Op::Compact),
        1 => Just(Op::Sync),
        1 => Just(Op::Seal),
        2 => any::<u64>().prop_map(Op::Crash),
        1 => Just(Op::Reopen),
        1 => part_strategy().prop_map(Op::CloseRacing),
        2 => (1u64..80, prop_oneof![Just(Fault::Stop), Just(Fault::Io), Just(Fault::NoSpace)], recovery_strategy())
            .prop_map(|(calls, fault, recovery)| Op::FailAfter { calls, fault, recovery }),
    ]
}

fn cases() -> u32 {
    std::env::var("CHRONICLE_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(CASES_DEFAULT)
}

/// Runs `cases` random sequences; returns what they went through.
fn store_matches_model(durability: Durability, cases: u32) -> RunStats {
    store_matches_model_as(durability, Variant::default(), cases)
}

/// [`store_matches_model`] with the store called as `variant` says.
fn store_matches_model_as(durability: Durability, variant: Variant, cases: u32) -> RunStats {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let total = Cell::new(RunStats::default());
    let result = runner.run(&prop::collection::vec(op_strategy(), 5..=OPS_MAX), |ops| {
        let stats = operations::run_variant(durability, variant, &ops).map_err(TestCaseError::fail)?;
        let mut sum = total.get();
        sum += stats;
        total.set(sum);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{durability:?}, {variant:?}: {error}");
    }
    let total = total.get();
    eprintln!("{durability:?}, {variant:?}, {cases} cases: {total:?}");
    // The faults fire and are followed by both kinds of recovery: the checks are not vacuous.
    if cases >= 32 {
        assert!(total.faults_fired > 0 && total.restarts > 0 && total.power_losses > cases.into(), "{total:?}");
        assert!(total.in_doubt_kept > 0, "no write in doubt ever survived: {total:?}");
        assert!(total.close_races > 0, "no append raced a close: {total:?}");
    }
    total
}

#[test]
fn store_matches_model_under_sync() {
    let total = store_matches_model(Durability::Sync, cases());
    assert_eq!(total.acknowledged_lost, 0);
}

#[test]
fn store_matches_model_under_buffered() {
    let total = store_matches_model(Durability::Buffered, cases());
    if cases() >= 32 {
        assert!(total.acknowledged_lost > 0, "no power loss took an unsynced write: {total:?}");
    }
}

#[test]
fn store_matches_model_under_periodic() {
    store_matches_model(Durability::Periodic(PERIODIC_INTERVAL), cases().div_ceil(4));
}

#[test]
fn store_matches_model_with_async_appends_under_sync() {
    let variant = Variant { async_appends: true, coalesce_writes: false };
    let total = store_matches_model_as(Durability::Sync, variant, cases().div_ceil(4));
    assert_eq!(total.acknowledged_lost, 0);
}

/// Coalesced writes: a restart may lose acknowledged appends not yet written (the harness
/// reads after every operation, which writes them, so at most the last operation's).
#[test]
fn store_matches_model_under_buffered_with_coalesced_writes_and_async_appends() {
    let variant = Variant { async_appends: true, coalesce_writes: true };
    store_matches_model_as(Durability::Buffered, variant, cases().div_ceil(2));
}
