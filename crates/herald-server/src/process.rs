//! A process's resident memory and CPU time, read from `/proc` (Linux). `/api/info` reports
//! the server's own; `herald bench` reads a local server's and its own.

use std::time::Instant;

/// Linux reports CPU time in clock ticks of 1/100 s (`USER_HZ` is 100 on every Linux ABI).
const TICKS_PER_SEC: f64 = 100.0;

/// One reading of a process.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// User + system CPU time in seconds.
    pub cpu_secs: f64,
    /// The user-space part of `cpu_secs` (`None` where only the total is known, as from
    /// another server's `/api/info`).
    pub user_secs: Option<f64>,
    /// When it was read.
    pub at: Instant,
}

/// Reads process `pid` (`None`: this process).
pub fn sample(pid: Option<u32>) -> std::io::Result<ProcSample> {
    let base = pid.map_or_else(|| "/proc/self".to_string(), |p| format!("/proc/{p}"));
    let at = Instant::now();
    let status = std::fs::read_to_string(format!("{base}/status"))?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("{base}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let cpu_secs = (ticks(11) + ticks(12)) as f64 / TICKS_PER_SEC;
    let user_secs = Some(ticks(11) as f64 / TICKS_PER_SEC);
    Ok(ProcSample { rss_bytes: rss_kib * 1024, cpu_secs, user_secs, at })
}

// === impl ProcSample ===

impl ProcSample {
    /// CPU used between `earlier` and this sample, in % of one core.
    pub fn cpu_percent_since(&self, earlier: &ProcSample) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        if wall <= 0.0 { 0.0 } else { 100.0 * (self.cpu_secs - earlier.cpu_secs) / wall }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let before = sample(None).expect("/proc/self");
        assert!(before.rss_bytes > 1024 * 1024, "{before:?}");
        // Busy for about 300 ms of CPU: the reading must show it.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = sample(None).expect("/proc/self");
        let busy = after.cpu_percent_since(&before);
        // Well under 100 %: the other tests and a loaded CI machine share the cores.
        assert!(busy > 20.0, "a busy loop used {busy:.0}% of a core");
        // A loop that makes no system call spends its time in user space.
        let user = after.user_secs.unwrap() - before.user_secs.unwrap();
        assert!(user > 0.05, "the busy loop's {user:.2} s of user time");
    }
}
