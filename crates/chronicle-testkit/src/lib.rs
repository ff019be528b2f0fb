//! # chronicle-testkit — what chronicle's own tests, fuzz targets and benchmarks share
//!
//! Not part of the product: `chronicle-db` never depends on this crate outside its tests.
//!
//! - [`SimStorage`]: an in-memory implementation of the storage seam that keeps written and
//!   durable bytes apart, injects I/O errors at the Nth call and can lose power;
//! - [`conformance`]: the behaviour suite every store passes (on disk, in memory);
//! - [`model`]: the model of the store's observable behaviour (which answers and which
//!   logs after a crash are allowed);
//! - [`operations`]: operation sequences run against a real store on [`SimStorage`] and
//!   checked against the model (the `operations` fuzz target and `tests/model.rs`);
//! - [`codecs`]: the decoder fuzz targets, which live in the product crate behind its hidden
//!   `__internal` feature because they call private decoders.
//!
//! ```
//! use std::sync::Arc;
//! use chronicle::{ExpectedVersion, NewEvent, Options, Store};
//! use chronicle_testkit::SimStorage;
//!
//! let sim = SimStorage::new();
//! let store = Store::open_with_storage("/db", Options::default(), Arc::new(sim.clone()))?;
//! store.append("s", ExpectedVersion::NoStream, [NewEvent::new("Created", "{}")])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod conformance;
pub mod model;
pub mod operations;
mod sim;

pub use self::sim::{InjectedError, SECTOR_BYTES, SimStorage};
pub use chronicle::internal::codecs;

/// The `operations` fuzz target: decodes up to [`operations::OPS_MAX`] operations (appends,
/// reads, deletions, snapshots, compactions, syncs, seals, power losses, reopens and faults
/// at the Nth I/O call) and runs them on the simulated storage against the [`model`].
/// Accepted (`Ok(true)`) if it decoded at least one operation.
///
/// # Errors
/// The first divergence from the model, described.
///
/// ```
/// assert_eq!(chronicle_testkit::operations_target(&[]), Ok(false));
/// ```
pub fn operations_target(data: &[u8]) -> codecs::Verdict {
    let (durability, ops) = operations::decode(data);
    let variant = operations::Variant::from_mode_byte(data.first().copied().unwrap_or(0));
    operations::run_variant(durability, variant, &ops)?;
    Ok(!ops.is_empty())
}
