//! # chronicle-postgres — chronicle's event store on PostgreSQL
//!
//! [`PostgresStore`] implements [`chronicle::EventStore`] with the semantics of the
//! embedded [`chronicle::Store`] — expected versions, idempotent retries by event id,
//! atomic multi-stream appends, forward and backward reads, snapshots, permanent deletion,
//! filtered reads ([`chronicle::Filter`] in SQL), conditional appends on a filter
//! ([`PostgresStore::append_if`]) — and passes the same conformance suite
//! (`chronicle_testkit::conformance`). The typed layer (`chronicle::typed`) runs on it
//! unchanged. On top: subscriptions (catch-up then live, woken by `LISTEN/NOTIFY`, polling
//! as the fallback) and durable consumers, exclusive per name across processes, with the
//! names of the embedded store's API ([`Filter`], [`Subscription`]).
//!
//! **Global positions** are dense (0, 1, 2, ...) and assigned in commit order: the
//! counter is one row whose lock an append takes as its last statement before `COMMIT`
//! (everything else — checks, payloads — runs concurrently), so a reader can never see
//! position `p + 1` before `p`, and a subscription paging by position can never skip an
//! event that commits late. `docs/postgres.md` explains the design and what it costs.
//!
//! **Threads**: the blocking API runs its queries on a small tokio runtime the store owns;
//! callers wait on a channel, never in `block_on`, so it works from plain threads and
//! cannot panic inside another runtime. Async code uses the `*_async` methods.
//!
//! ```no_run
//! use chronicle::{ExpectedVersion, NewEvent};
//! use chronicle_postgres::PostgresStore;
//! let store = PostgresStore::connect("postgres://chronicle@127.0.0.1:5432/app")?;
//! store.append("order-1", ExpectedVersion::NoStream, [NewEvent::new("Placed", "{}")])?;
//! for event in store.read_stream("order-1", 0)? {
//!     println!("{}", event?.event_type);
//! }
//! # Ok::<(), chronicle::Error>(())
//! ```
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod error;
mod filter;
mod read;
mod schema;
mod sql;
mod store;
mod subscription;
#[cfg(feature = "tls")]
mod tls;

pub use crate::read::{PAGE_BYTES_MAX, PAGE_EVENTS_MAX, PgEvents};
pub use crate::schema::SCHEMA_VERSION;
pub use crate::sql::SCHEMA_NAME_BYTES_MAX;
pub use crate::store::{PostgresOptions, PostgresStore};
pub use crate::subscription::{CONSUMER_NAME_BYTES_MAX, StopHandle, Subscription};
pub use chronicle::{FILTER_EVENT_TYPES_MAX, Filter};
pub use deadpool_postgres::Pool;
