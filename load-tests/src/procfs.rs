//! Resident memory and CPU time of a process, from `/proc/<pid>/status` and `/proc/<pid>/stat`.

use serde::Serialize;

/// One reading.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcSample {
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// `VmHWM` (peak RSS), KiB.
    pub hwm_kib: u64,
    /// `Threads`.
    pub threads: u64,
    /// utime + stime, seconds.
    pub cpu_seconds: f64,
    /// stime alone (in the kernel: socket writes and reads, epoll), seconds.
    pub cpu_system_seconds: f64,
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Reads `/proc/<pid>`; `None` when the process is gone or `/proc` is not there.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // The command name (field 2) may hold spaces; fields after the closing parenthesis are plain.
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at indexes 11 and 12.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(ProcSample {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        threads: field("Threads:"),
        cpu_seconds: (utime + stime) as f64 / clk_tck(),
        cpu_system_seconds: stime as f64 / clk_tck(),
    })
}

/// This process.
pub fn self_sample() -> Option<ProcSample> {
    sample(std::process::id())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let s = super::self_sample().expect("/proc is readable");
        assert!(s.rss_kib > 0);
        assert!(s.threads >= 1);
    }
}
