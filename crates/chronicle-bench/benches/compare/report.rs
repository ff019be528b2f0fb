//! Latency percentiles, figure formatting and the markdown tables.

use std::time::Duration;

/// Latency samples in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples_ns: Vec<u64>,
}

impl Latencies {
    pub fn with_capacity(capacity: usize) -> Self {
        Latencies { samples_ns: Vec::with_capacity(capacity) }
    }

    pub fn record(&mut self, elapsed: Duration) {
        self.samples_ns.push(elapsed.as_nanos().min(u128::from(u64::MAX)) as u64);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.samples_ns.extend(other.samples_ns);
    }

    pub fn len(&self) -> usize {
        self.samples_ns.len()
    }

    /// The `p`-th percentile (0..=100) in microseconds; 0 without samples.
    pub fn percentile_us(&mut self, p: f64) -> f64 {
        if self.samples_ns.is_empty() {
            return 0.0;
        }
        self.samples_ns.sort_unstable();
        let rank = ((p / 100.0) * (self.samples_ns.len() - 1) as f64).round() as usize;
        self.samples_ns[rank.min(self.samples_ns.len() - 1)] as f64 / 1000.0
    }
}

/// A count as `1.23 M`, `45.6 k` or `789`.
pub fn count(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if value >= 1e4 {
        format!("{:.1} k", value / 1e3)
    } else if value >= 1e3 {
        format!("{:.2} k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// Microseconds with a sensible number of digits.
pub fn micros(value_us: f64) -> String {
    if value_us >= 1e5 {
        format!("{:.0} ms", value_us / 1e3)
    } else if value_us >= 1e3 {
        format!("{:.1} ms", value_us / 1e3)
    } else if value_us >= 10.0 {
        format!("{value_us:.0} µs")
    } else {
        format!("{value_us:.1} µs")
    }
}

pub fn mb_per_s(bytes: f64, seconds: f64) -> String {
    format!("{:.1} MB/s", bytes / seconds / 1e6)
}

/// One row of a workload table. `primary` is the figure the ratio and the percentage are
/// computed from; `group` separates rows that are compared only among themselves (the
/// thread counts of W1).
pub struct Row {
    pub engine: String,
    pub group: String,
    pub cells: Vec<String>,
    pub primary: Option<f64>,
}

impl Row {
    pub fn new(engine: &str, group: impl Into<String>, cells: Vec<String>, primary: Option<f64>) -> Row {
        Row { engine: engine.to_string(), group: group.into(), cells, primary }
    }
}

/// Prints one markdown table. Ratio = this engine's primary figure ÷ chronicle's (same
/// group); `% of disk` = primary ÷ the `raw disk` row's primary (same group), when there is
/// one and `disk_applies`.
pub fn table(title: &str, columns: &[&str], rows: &[Row], disk_applies: bool) {
    println!("\n### {title}\n");
    let mut header = vec!["engine"];
    header.extend_from_slice(columns);
    header.push("ratio to chronicle");
    if disk_applies {
        header.push("% of disk limit");
    }
    println!("| {} |", header.join(" | "));
    println!("|{}|", header.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    let find = |group: &str, engine: &str| {
        rows.iter().find(|r| r.group == group && r.engine == engine).and_then(|r| r.primary).filter(|v| *v > 0.0)
    };
    for row in rows {
        let mut cells = vec![row.engine.clone()];
        cells.extend(row.cells.iter().cloned());
        let ratio = match (row.primary, find(&row.group, "chronicle")) {
            (Some(value), Some(base)) => format!("{:.2}×", value / base),
            _ => "—".into(),
        };
        cells.push(ratio);
        if disk_applies {
            let percent = match (row.primary, find(&row.group, "raw disk")) {
                (Some(value), Some(limit)) => format!("{:.0} %", 100.0 * value / limit),
                _ => "—".into(),
            };
            cells.push(percent);
        }
        println!("| {} |", cells.join(" | "));
    }
}

/// Peak and current resident set size of this process in KiB (VmHWM, VmRSS).
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Apparent size (sum of file lengths) and allocated size (blocks) of a directory tree.
pub fn dir_bytes(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    let Ok(entries) = std::fs::read_dir(path) else {
        return (0, 0);
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let (a, b) = dir_bytes(&entry.path());
            apparent += a;
            allocated += b;
        } else {
            apparent += meta.len();
            allocated += meta.blocks() * 512;
        }
    }
    (apparent, allocated)
}
