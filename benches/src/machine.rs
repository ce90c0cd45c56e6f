//! The machine a run happened on, as the report states it.

use serde::Serialize;

/// CPU, cores, kernel, memory, and whether protection keys work.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// Cores this process may use.
    pub cores: usize,
    /// The kernel release.
    pub kernel: String,
    /// Total memory in GiB.
    pub memory_gib: f64,
    /// `pkey_alloc` works (`Ok`) or the error it gave.
    pub pkeys: String,
    /// The directory file-backed engines (LMDB, SQLite) kept their files in, and its file system.
    pub scratch: String,
    /// /proc/loadavg's 1-minute load when the run started (other work on a shared machine
    /// shows up here and in the numbers).
    pub load_start: f64,
    /// The same when the run ended.
    pub load_end: f64,
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

impl Machine {
    /// Describes this machine; `scratch` is the directory file-backed engines use.
    pub fn detect(scratch: &std::path::Path) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim())
            })
            .unwrap_or("unknown")
            .to_string();
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            memory_gib: (memory_kib / (1024.0 * 1024.0) * 10.0).round() / 10.0,
            pkeys: match crate::sys::pkeys_supported() {
                Ok(()) => "yes".into(),
                Err(e) => format!("no (pkey_alloc: {e})"),
            },
            scratch: format!("{} ({})", scratch.display(), file_system(scratch)),
            load_start: load_average(),
            load_end: load_average(),
        }
    }

    /// One line for reports.
    pub fn summary(&self) -> String {
        format!(
            "{}, {} cores, {} GiB, Linux {}, pkeys: {}, files in {}, load average {:.2} at start and {:.2} at end",
            self.cpu,
            self.cores,
            self.memory_gib,
            self.kernel,
            self.pkeys,
            self.scratch,
            self.load_start,
            self.load_end
        )
    }
}

/// The file system type of the mount holding `dir`, from /proc/mounts (longest prefix wins).
fn file_system(dir: &std::path::Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, point, fs) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(point)
                .then(|| (point.len(), fs.to_string()))
        })
        .max_by_key(|(n, _)| *n)
        .map_or_else(|| "unknown".into(), |(_, fs)| fs)
}
