//! A projection keeping a SQLite read model: state and checkpoint in one transaction, so
//! after a crash the read model and its checkpoint agree (events are applied at least
//! once, the state changes effectively once). Bumping `VERSION` rebuilds the table.
//!
//! ```text
//! cargo run -p chronicle-bench --example sqlite_projection
//! ```

use std::time::Duration;

use chronicle::{ExpectedVersion, Filter, NewEvent, Projection, ProjectionError, RecordedEvent, Store};
use rusqlite::{Connection, OptionalExtension, params};

const VERSION: u32 = 1;

struct OrdersPerCustomer {
    db: Connection,
}

impl OrdersPerCustomer {
    fn open(path: &std::path::Path) -> rusqlite::Result<Self> {
        let db = Connection::open(path)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS orders (customer TEXT PRIMARY KEY, placed INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 0), version INTEGER NOT NULL, position INTEGER NOT NULL);",
        )?;
        Ok(OrdersPerCustomer { db })
    }
}

impl Projection for OrdersPerCustomer {
    fn name(&self) -> &str {
        "orders-per-customer"
    }
    fn version(&self) -> u32 {
        VERSION
    }
    fn filter(&self) -> Filter {
        Filter::category("order").with_event_types(["OrderPlaced"])
    }
    fn load(&mut self) -> Result<Option<(u32, u64)>, ProjectionError> {
        let row = self
            .db
            .query_row("SELECT version, position FROM checkpoint WHERE id = 0", [], |r| {
                Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()?;
        Ok(row.map(|(version, position)| (version, position as u64)))
    }
    fn reset(&mut self) -> Result<(), ProjectionError> {
        self.db.execute_batch("DELETE FROM orders; DELETE FROM checkpoint;")?;
        Ok(())
    }
    fn apply(&mut self, events: &[RecordedEvent], version: u32, through: u64) -> Result<(), ProjectionError> {
        let tx = self.db.transaction()?;
        for event in events {
            let customer = std::str::from_utf8(&event.data)?;
            tx.execute(
                "INSERT INTO orders (customer, placed) VALUES (?1, 1)
                 ON CONFLICT (customer) DO UPDATE SET placed = placed + 1",
                params![customer],
            )?;
        }
        tx.execute(
            "INSERT INTO checkpoint (id, version, position) VALUES (0, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET version = ?1, position = ?2",
            params![version, through as i64],
        )?;
        tx.commit()?;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("events"))?;
    let runner = store.run_projection(OrdersPerCustomer::open(&dir.path().join("read-model.sqlite"))?)?;
    let mut last = 0;
    for i in 0..1000u32 {
        let customer = format!("customer-{}", i % 7);
        let written =
            store.append(&format!("order-{i}"), ExpectedVersion::NoStream, [NewEvent::new("OrderPlaced", customer)])?;
        last = written.last_position;
    }
    // Read your own writes: wait until the read model has the last order.
    assert!(runner.wait_for(last, Duration::from_secs(30))?);
    let projection = runner.stop()?;
    let mut rows = projection.db.prepare("SELECT customer, placed FROM orders ORDER BY customer")?;
    for row in rows.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (customer, placed) = row?;
        println!("{customer}: {placed} orders");
    }
    Ok(())
}
