//! Event sourcing on top of the store (cargo feature `typed`, on by default).
//!
//! - [`Event`]: a serde enum per aggregate, one variant per event type, each with a stable
//!   type name and a schema version ([`Event::EVENT_TYPES`]);
//! - [`Schema`]: encodes events into [`NewEvent`](crate::NewEvent)s (postcard 1.x or JSON,
//!   [`Codec`]) and decodes [`RecordedEvent`](crate::RecordedEvent)s back, bringing old
//!   versions up to date through [`Upcaster`]s;
//! - [`Aggregate`] and [`Repository`]: load = newest usable snapshot + later events,
//!   `execute` = handle a command, append with the loaded version as expected version,
//!   retry on conflict, snapshot by [`SnapshotPolicy`].
//!
//! Everything is written against the backend-neutral [`EventStore`](crate::EventStore)
//! trait. The stored bytes (a 6-byte header, then the variant's content) are described in
//! `segment-format.md`, the design in `docs/event-sourcing.md`.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use chronicle::typed::{Aggregate, Event, Repository};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! enum AccountEvent { Deposited { cents: u64 }, Withdrawn { cents: u64 } }
//! impl Event for AccountEvent {
//!     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Deposited", 1), ("Withdrawn", 1)];
//!     fn event_type(&self) -> &'static str {
//!         match self { Self::Deposited { .. } => "Deposited", Self::Withdrawn { .. } => "Withdrawn" }
//!     }
//! }
//!
//! #[derive(Debug, Default, Serialize, Deserialize)]
//! struct Account { balance: u64 }
//! #[derive(Clone)]
//! enum Command { Deposit(u64), Withdraw(u64) }
//! #[derive(Debug, thiserror::Error)]
//! #[error("insufficient funds")]
//! struct Insufficient;
//!
//! impl Aggregate for Account {
//!     type Event = AccountEvent;
//!     type Command = Command;
//!     type Error = Insufficient;
//!     const AGGREGATE_TYPE: &'static str = "account";
//!     fn apply(&mut self, event: &AccountEvent) {
//!         match event {
//!             AccountEvent::Deposited { cents } => self.balance += cents,
//!             AccountEvent::Withdrawn { cents } => self.balance -= cents,
//!         }
//!     }
//!     fn handle(&self, command: Command) -> Result<Vec<AccountEvent>, Insufficient> {
//!         match command {
//!             Command::Deposit(cents) => Ok(vec![AccountEvent::Deposited { cents }]),
//!             Command::Withdraw(cents) if cents <= self.balance => Ok(vec![AccountEvent::Withdrawn { cents }]),
//!             Command::Withdraw(_) => Err(Insufficient),
//!         }
//!     }
//! }
//!
//! let accounts = Repository::<Account>::new(chronicle::Store::open_in_memory()?);
//! accounts.execute("7", Command::Deposit(500))?;
//! assert!(accounts.execute("7", Command::Withdraw(900)).is_err());
//! assert_eq!(accounts.load("7")?.state.balance, 500);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod aggregate;
mod codec;
mod repository;
mod schema;
mod shim;

pub use self::aggregate::{Aggregate, SnapshotPolicy};
pub use self::codec::{Codec, TYPED_HEADER_BYTES, TYPED_HEADER_MAGIC};
pub use self::repository::{EXECUTE_RETRIES_DEFAULT, Executed, LoadSource, Loaded, Repository, RepositoryError};
pub use self::schema::{DecodeError, DecodeFailure, EncodeError, Event, Schema, Upcaster};
