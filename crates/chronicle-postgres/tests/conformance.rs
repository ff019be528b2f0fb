//! The shared behaviour suite (`chronicle_testkit::conformance::run_shared`, and
//! `run_follow` for subscriptions and durable consumers) against PostgreSQL: the same
//! checks the embedded store passes on disk and in memory.

mod common;

use chronicle_testkit::conformance;

#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn postgres_store_passes_the_shared_behaviour_suite() {
    conformance::run_shared(&|| common::fresh_store("conf")).unwrap();
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn postgres_store_passes_the_follow_suite() {
    conformance::run_follow(&|| common::fresh_store("follow")).unwrap();
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn postgres_store_on_a_given_pool_passes_the_shared_behaviour_suite() {
    let make = || {
        let config: tokio_postgres::Config = common::url().parse().expect("url");
        let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(2)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .expect("pool");
        let schema = common::fresh_schema("pool");
        chronicle_postgres::PostgresStore::with_pool(pool, common::options(&schema)).expect("store")
    };
    conformance::run_shared(&make).unwrap();
}
