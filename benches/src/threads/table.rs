//! The thread suite's Markdown tables.

use std::fmt::Write as _;

use super::run::Summary;

/// `1234567.8` -> `1,234,568`.
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds with three significant digits (`1.25`, `16.1`, `4,481`).
pub fn micros(v: f64) -> String {
    if v >= 1000.0 {
        thousands(v)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A retry rate: `0` when none, `<0.0001` when below, else four decimals.
pub fn rate(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 0.0001 {
        "<0.0001".into()
    } else {
        format!("{v:.4}")
    }
}

/// One row of the scaling table.
#[derive(Debug, Clone)]
pub struct ScaleRow {
    /// Engine name.
    pub engine: String,
    /// Shape name.
    pub shape: String,
    /// Threads.
    pub threads: u64,
    /// Medians over the runs.
    pub summary: Summary,
    /// The same engine and shape at one thread (the first thread count run), if any.
    pub base_tps: Option<f64>,
}

/// The scaling table: per engine, shape and thread count, median transactions per second,
/// the ratio to one thread side by side, the runs' range, retries per transaction and the
/// latency percentiles.
pub fn scale(rows: &[ScaleRow]) -> String {
    let mut s = String::from(
        "| engine | shape | threads | txn/s | vs 1 thread | txn/s of the runs | retries/txn | p50 µs | p99 µs | p99.9 µs |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let m = &r.summary;
        let ratio = r
            .base_tps
            .filter(|b| *b > 0.0)
            .map_or_else(|| "-".into(), |b| format!("{:.2}x", m.tps / b));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {}-{} | {} | {} | {} | {} |",
            r.engine,
            r.shape,
            r.threads,
            thousands(m.tps),
            ratio,
            thousands(m.tps_range.0),
            thousands(m.tps_range.1),
            rate(m.retry_rate),
            micros(m.p50),
            micros(m.p99),
            micros(m.p999),
        );
    }
    s
}

/// One row of the checkpoint-stall table.
#[derive(Debug, Clone)]
pub struct StallRow {
    /// Shape name.
    pub shape: String,
    /// Threads.
    pub threads: u64,
    /// The writeback setting, as written in the table.
    pub writeback: String,
    /// Medians over the runs (`probe` is the checkpoints taken while measuring).
    pub summary: Summary,
    /// Seconds measured per run (for checkpoints per second).
    pub seconds: f64,
    /// Median over the runs of the last checkpoint's duration at the end of the run, ms
    /// (`None` without checkpoints; not shown when none ran while measuring).
    pub checkpoint_ms: Option<f64>,
}

/// The checkpoint-stall table: latency percentiles with and without background checkpoints.
pub fn stall(rows: &[StallRow]) -> String {
    let mut s = String::from(
        "| shape | threads | writeback | checkpoints/s | checkpoint ms | txn/s | p50 µs | p99 µs | p99.9 µs | max µs |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let m = &r.summary;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} |",
            r.shape,
            r.threads,
            r.writeback,
            m.probe / r.seconds,
            r.checkpoint_ms
                .filter(|_| m.probe > 0.0)
                .map_or_else(|| "-".into(), |v| format!("{v:.1}")),
            thousands(m.tps),
            micros(m.p50),
            micros(m.p99),
            micros(m.p999),
            micros(m.max),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(1_234_567.6), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(micros(1.254), "1.25");
        assert_eq!(micros(16.14), "16.1");
        assert_eq!(micros(4481.2), "4,481");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(0.00171), "0.0017");
        assert_eq!(rate(0.00002), "<0.0001");
    }
}
