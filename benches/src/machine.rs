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
    /// Set when the machine was still busy at the start of the run (see
    /// [`wait_for_quiet`]): the warning the run printed, repeated in the report.
    pub load_warning: Option<String>,
}

/// How long a quick or full run waits at its start for the machine to quiet down (the
/// build that precedes it leaves the load average high).
pub const QUIET_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits up to `max` for the 1-minute load average, read by `load` every `poll` (slept
/// with `sleep`), to fall below `cores`. `None` once it has; otherwise the warning to
/// print and to put in the report.
pub fn wait_for_quiet(
    cores: usize,
    max: std::time::Duration,
    poll: std::time::Duration,
    mut load: impl FnMut() -> f64,
    mut sleep: impl FnMut(std::time::Duration),
) -> Option<String> {
    let limit = cores as f64;
    let mut waited = std::time::Duration::ZERO;
    loop {
        let now = load();
        if now.is_nan() {
            return Some(
                "the load average could not be read (/proc/loadavg): whether other work ran \
                 during this run is unknown"
                    .into(),
            );
        }
        if now < limit {
            return None;
        }
        if waited >= max {
            return Some(format!(
                "the 1-minute load average was still {now:.2} on {cores} cores after waiting \
                 {} s for it to fall below {cores}: other work was running, and the numbers \
                 include its interference",
                waited.as_secs()
            ));
        }
        sleep(poll);
        waited += poll;
    }
}

/// Waits up to [`QUIET_WAIT`] for the machine to quiet down before a measured run (the
/// 1-minute load average below the number of cores), saying on stderr that it waits and
/// whether it gave up. Returns the warning to write next to the numbers, if it gave up.
pub fn settle() -> Option<String> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let now = load_average();
    if now >= cores as f64 {
        eprintln!(
            "load average {now:.2} on {cores} cores: waiting up to {} s for it to fall below {cores}",
            QUIET_WAIT.as_secs()
        );
    }
    let warning = wait_for_quiet(
        cores,
        QUIET_WAIT,
        std::time::Duration::from_secs(1),
        load_average,
        std::thread::sleep,
    );
    if let Some(w) = &warning {
        eprintln!("warning: {w}");
    }
    warning
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
            load_warning: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_busy_machine_is_waited_for_then_reported() {
        let s = Duration::from_secs(1);
        // Quiet at once: no wait, no warning.
        let mut slept = Duration::ZERO;
        assert_eq!(wait_for_quiet(2, 30 * s, s, || 0.5, |d| slept += d), None);
        assert_eq!(slept, Duration::ZERO);

        // Busy, then quiet within the wait: no warning.
        let mut loads = [3.36, 2.5, 2.1, 1.9].into_iter();
        let mut slept = Duration::ZERO;
        let got = wait_for_quiet(2, 30 * s, s, || loads.next().unwrap(), |d| slept += d);
        assert_eq!(got, None);
        assert_eq!(slept, 3 * s);

        // Busy throughout: the full wait, then the warning with the load and the cores.
        let mut slept = Duration::ZERO;
        let got = wait_for_quiet(2, 30 * s, s, || 3.36, |d| slept += d).unwrap();
        assert_eq!(slept, 30 * s);
        assert!(
            got.contains("3.36 on 2 cores") && got.contains("30 s"),
            "{got}"
        );

        // No /proc/loadavg: said, not waited for.
        let got = wait_for_quiet(2, 30 * s, s, || f64::NAN, |_| panic!("no wait")).unwrap();
        assert!(got.contains("could not be read"), "{got}");
    }
}
