//! Turns `CHRONICLE_TEST_PG_URL` into the `pg_tests` cfg: the PostgreSQL tests are
//! `#[cfg_attr(not(pg_tests), ignore = ...)]`, so without a server `cargo test` reports
//! them as ignored (never as passed), and `scripts/with-postgres.sh cargo test` runs them.

fn main() {
    println!("cargo::rerun-if-env-changed=CHRONICLE_TEST_PG_URL");
    println!("cargo::rustc-check-cfg=cfg(pg_tests)");
    if std::env::var_os("CHRONICLE_TEST_PG_URL").is_some_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=pg_tests");
    }
}
