//! The root package's order-processing example with `--postgres URL`: one process per
//! command against the same schema, as with `--data DIR`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn example() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", "order_processing", "--manifest-path"])
        .arg(&root)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --example order_processing failed");
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target profile directory");
    profile_dir.join("examples").join(format!("order_processing{}", std::env::consts::EXE_SUFFIX))
}

fn run(exe: &Path, schema: &str, args: &[&str]) -> Output {
    Command::new(exe)
        .arg("--postgres")
        .arg(common::url())
        .args(args)
        .env("CHRONICLE_PG_SCHEMA", schema)
        .output()
        .expect("run the example")
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)")]
fn the_order_example_runs_on_postgres() {
    let exe = example();
    let schema = common::fresh_schema("orders");
    let text = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let placed = run(&exe, &schema, &["place", "42", "ada", "pen:3:150", "ink:1:800"]);
    assert_eq!(placed.status.code(), Some(0), "{}", String::from_utf8_lossy(&placed.stderr));
    assert!(text(&placed).contains("placed for ada, 2 line(s)"), "{}", text(&placed));
    let shipped = run(&exe, &schema, &["ship", "42", "TRK-1"]);
    assert_eq!(shipped.status.code(), Some(0));
    let show = run(&exe, &schema, &["show", "42"]);
    let shown = text(&show);
    assert!(shown.contains("order 42: shipped (customer ada)") && shown.contains("total: 1250 cents"), "{shown}");
    let refused = run(&exe, &schema, &["cancel", "42"]);
    assert_eq!(refused.status.code(), Some(1), "cancelling a shipped order is refused");
    assert_eq!(String::from_utf8_lossy(&refused.stderr).lines().count(), 1);
    let stats = text(&run(&exe, &schema, &["stats"]));
    assert!(stats.contains("orders: 1") && stats.contains("shipped: 1"), "{stats}");
    let store =
        chronicle_postgres::PostgresStore::connect_with(&common::url(), common::options(&schema)).expect("connect");
    assert_eq!(store.head_position().expect("head"), 2, "the refused command wrote nothing");
}
