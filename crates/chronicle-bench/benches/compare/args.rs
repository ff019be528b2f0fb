//! Command-line flags of the comparison program, parsed by hand (no clap).

use std::path::PathBuf;

/// Every workload the program knows, in the order it runs them.
pub const WORKLOADS: [&str; 10] = ["disk", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "follow"];
/// Every engine the program knows.
pub const ENGINES: [&str; 5] = ["chronicle", "sqlite", "fjall", "redb", "postgres"];

/// The engines that need nothing but this program: `postgres` joins them when
/// `CHRONICLE_TEST_PG_URL` names a server (e.g. under `scripts/with-postgres.sh`).
fn default_engines() -> Vec<String> {
    ENGINES.iter().filter(|e| **e != "postgres" || postgres_url().is_some()).map(|s| s.to_string()).collect()
}

/// The server the `postgres` engine uses.
pub fn postgres_url() -> Option<String> {
    std::env::var("CHRONICLE_TEST_PG_URL").ok().filter(|url| !url.is_empty())
}

/// Run settings; `--quick` picks small defaults, the full mode the sizes of issue 5.
#[derive(Debug, Clone)]
pub struct Args {
    pub quick: bool,
    /// Length of each timed append run (W1, W2, W3), per engine and thread count.
    pub run_seconds: f64,
    /// Thread counts of W1.
    pub threads: Vec<usize>,
    /// Events per append in W2.
    pub batch_events: usize,
    /// Bytes of event data (issue 5: 100).
    pub data_bytes: usize,
    /// Streams of the read data set (W4, W5, W6, W8).
    pub streams: usize,
    /// Events per stream of the read data set.
    pub events_per_stream: usize,
    /// Random whole-stream reads in W5.
    pub stream_reads: usize,
    /// Also run the 10 M-event chronicle-only parts of W4 and W6.
    pub big: bool,
    /// Events of the chronicle-only big data set.
    pub big_events: usize,
    /// Bytes written by the disk section's bandwidth test.
    pub disk_bandwidth_bytes: usize,
    /// fdatasync calls timed by the disk section.
    pub disk_syncs: usize,
    pub engines: Vec<String>,
    pub workloads: Vec<String>,
    /// Where stores are created (a fresh subdirectory is made and removed at the end).
    pub dir: Option<PathBuf>,
    pub keep: bool,
    /// Alternating pairs (0 subscribers, 100 subscribers) per append case of `follow`.
    pub follow_rounds: usize,
}

impl Args {
    fn defaults(quick: bool) -> Args {
        Args {
            quick,
            run_seconds: if quick { 1.0 } else { 5.0 },
            threads: vec![1, 8, 64],
            batch_events: 1000,
            data_bytes: 100,
            streams: if quick { 1_000 } else { 10_000 },
            events_per_stream: 100,
            stream_reads: 2_000,
            big: false,
            big_events: 10_000_000,
            disk_bandwidth_bytes: if quick { 32 << 20 } else { 256 << 20 },
            disk_syncs: if quick { 200 } else { 1000 },
            engines: default_engines(),
            workloads: WORKLOADS.iter().map(|s| s.to_string()).collect(),
            dir: None,
            keep: false,
            follow_rounds: if quick { 1 } else { 3 },
        }
    }

    pub fn runs(&self, workload: &str) -> bool {
        self.workloads.iter().any(|w| w == workload)
    }

    pub fn has_engine(&self, engine: &str) -> bool {
        self.engines.iter().any(|e| e == engine)
    }

    /// Events of the read data set.
    pub fn dataset_events(&self) -> usize {
        self.streams * self.events_per_stream
    }
}

pub const USAGE: &str = "\
usage: cargo bench --bench compare -- [--quick] [flags]
  --quick                 small sizes, finishes in under 2 minutes (default: full sizes)
  --seconds S             length of each timed append run, W1-W3 (quick 1, full 5)
  --threads 1,8,64        thread counts of W1
  --batch N               events per append in W2 (1000)
  --data-bytes N          event data size (100)
  --streams N             streams of the read data set (quick 1000, full 10000)
  --events-per-stream N   events per stream of the read data set (100)
  --reads N               random whole-stream reads in W5 (2000)
  --big                   also the chronicle-only 10 M-event replay (W4) and open (W6)
  --big-events N          size of that data set (10000000)
  --disk-mib N            MiB written by the disk bandwidth test (quick 32, full 256)
  --disk-syncs N          fdatasync calls timed by the disk section (quick 200, full 1000)
  --engines a,b           subset of chronicle,sqlite,fjall,redb,postgres (postgres: only with
                          CHRONICLE_TEST_PG_URL set, and then by default; W1, W2, W4, W5 only)
  --only w1,w4            subset of disk,w1,w2,w3,w4,w5,w6,w7,w8,follow
  --follow-rounds N       alternating 0/100-subscriber pairs per append case of follow (quick 1, full 3)
  --dir PATH              where to create stores (default: the system temp dir)
  --keep                  keep the stores afterwards";

fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    value.parse().map_err(|_| format!("{flag}: cannot parse {value:?}"))
}

/// Parses `std::env::args()` (without the program name). Cargo adds `--bench`; it is ignored.
pub fn parse(raw: Vec<String>) -> Result<Args, String> {
    let quick = raw.iter().any(|a| a == "--quick");
    let mut args = Args::defaults(quick);
    let mut iter = raw.into_iter();
    while let Some(flag) = iter.next() {
        match flag.as_str() {
            "--quick" | "--bench" => {}
            "--seconds" => args.run_seconds = number(&flag, iter.next())?,
            "--threads" => {
                args.threads = list(&iter.next().ok_or("--threads needs a value")?)
                    .iter()
                    .map(|t| t.parse().map_err(|_| format!("--threads: bad count {t:?}")))
                    .collect::<Result<_, _>>()?
            }
            "--batch" => args.batch_events = number(&flag, iter.next())?,
            "--data-bytes" => args.data_bytes = number(&flag, iter.next())?,
            "--streams" => args.streams = number(&flag, iter.next())?,
            "--events-per-stream" => args.events_per_stream = number(&flag, iter.next())?,
            "--reads" => args.stream_reads = number(&flag, iter.next())?,
            "--big" => args.big = true,
            "--big-events" => args.big_events = number(&flag, iter.next())?,
            "--disk-mib" => args.disk_bandwidth_bytes = number::<usize>(&flag, iter.next())? << 20,
            "--disk-syncs" => args.disk_syncs = number(&flag, iter.next())?,
            "--engines" => {
                args.engines = list(&iter.next().ok_or("--engines needs a value")?);
                if let Some(bad) = args.engines.iter().find(|e| !ENGINES.contains(&e.as_str())) {
                    return Err(format!("unknown engine {bad:?}"));
                }
                if args.has_engine("postgres") && postgres_url().is_none() {
                    return Err(
                        "engine postgres needs CHRONICLE_TEST_PG_URL (run through scripts/with-postgres.sh)".into()
                    );
                }
            }
            "--only" => {
                args.workloads = list(&iter.next().ok_or("--only needs a value")?);
                if let Some(bad) = args.workloads.iter().find(|w| !WORKLOADS.contains(&w.as_str())) {
                    return Err(format!("unknown workload {bad:?}"));
                }
            }
            "--dir" => args.dir = Some(PathBuf::from(iter.next().ok_or("--dir needs a value")?)),
            "--keep" => args.keep = true,
            "--follow-rounds" => args.follow_rounds = number(&flag, iter.next())?,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    if args.threads.is_empty() || args.threads.contains(&0) {
        return Err("--threads needs counts above zero".into());
    }
    if args.streams == 0 || args.events_per_stream == 0 || args.batch_events == 0 {
        return Err("sizes must be above zero".into());
    }
    Ok(args)
}
