//! Shared by the PostgreSQL tests: the server URL, fresh stores (one schema each), and a
//! raw SQL client for fault injection.
//!
//! Every test here is `#[cfg_attr(not(pg_tests), ignore = ...)]`: the build script sets
//! `pg_tests` when `CHRONICLE_TEST_PG_URL` is set at build time, so without a server the
//! tests are reported as ignored, never as passed. Run them with
//! `scripts/with-postgres.sh cargo test -p chronicle-postgres`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chronicle_postgres::{PostgresOptions, PostgresStore};

pub fn url() -> String {
    match std::env::var("CHRONICLE_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)"),
    }
}

/// A schema name no other test (or earlier run) uses.
pub fn fresh_schema(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("t_{tag}_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

pub fn options(schema: &str) -> PostgresOptions {
    PostgresOptions::default()
        .schema(schema)
        .pool_size(4)
        .runtime_threads(1)
        .operation_timeout(Duration::from_secs(60))
        .poll_interval(Duration::from_millis(200))
}

pub fn fresh_store(tag: &str) -> PostgresStore {
    PostgresStore::connect_with(&url(), options(&fresh_schema(tag))).expect("connect")
}

/// Runs `sql` (no parameters) on a connection of its own; returns the first column of
/// each row as text.
pub fn sql(sql: &str) -> Vec<Option<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls).await.expect("connect");
        let driver = tokio::spawn(connection);
        let messages = client.simple_query(sql).await.expect("query");
        let mut values = Vec::new();
        for message in messages {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                values.push(row.get(0).map(str::to_owned));
            }
        }
        drop(client);
        let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
        values
    })
}
