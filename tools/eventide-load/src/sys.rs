//! What the load tool reads from the operating system: its own file-descriptor limit,
//! and another process's memory and CPU time from `/proc`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (the clock every payload timestamp uses; the
/// tool's publisher and subscribers share it).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit; returns (soft, hard).
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Resident memory of process `pid` (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// Threads of process `pid`.
pub fn threads(pid: u32) -> Option<u64> {
    status_field(pid, "Threads:")
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// User + system CPU time of process `pid` (all threads), in microseconds, from
/// `/proc/PID/stat` (clock-tick resolution, 10 ms typically).
pub fn cpu_micros(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&stat).map(|ticks| ticks * 1_000_000 / clock_ticks())
}

/// This process's user + system CPU time in microseconds.
pub fn self_cpu_micros() -> u64 {
    cpu_micros(std::process::id()).unwrap_or(0)
}

/// CPU time the whole machine spent busy (every CPU, every process, the kernel
/// included; idle and iowait excluded), in microseconds, from `/proc/stat`.
pub fn machine_busy_micros() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy_ticks(stat.lines().next()?).map(|t| t * 1_000_000 / clock_ticks())
}

/// Busy ticks from the `cpu` line of `/proc/stat`: user, nice, system, irq, softirq and
/// steal (fields 1, 2, 3, 6, 7, 8).
pub fn parse_machine_busy_ticks(line: &str) -> Option<u64> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    Some(v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?)
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// `utime + stime` from the text of `/proc/PID/stat` (fields 14 and 15; the command
/// name, field 2, may hold spaces and parentheses, so count from the last `)`).
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A field of `/proc/meminfo` (e.g. `Slab:`), in KiB: the kernel's own memory,
/// which socket structures live in.
pub fn meminfo_kib(name: &str) -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The kernel's TCP memory in use (all sockets of the machine), in KiB, from
/// `/proc/net/sockstat` (`TCP: … mem PAGES`).
pub fn tcp_kernel_kib() -> Option<u64> {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mem" {
            let pages: u64 = words.next()?.parse().ok()?;
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
            return Some(pages * page / 1024);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_fields() {
        let stat = "4242 (eventide (hub)) S 1 4242 4242 0 -1 4194560 5000 0 0 0 \
                    150 25 0 0 20 0 3 0 12345 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(175));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn machine_busy_fields() {
        let line = "cpu  100 5 50 9000 40 3 2 1 0 0";
        assert_eq!(parse_machine_busy_ticks(line), Some(161));
        assert_eq!(parse_machine_busy_ticks("cpu0 1 2 3 4 5 6 7 8"), None);
        assert!(machine_busy_micros().is_some());
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(threads(pid).unwrap() >= 1);
        assert!(cpu_micros(pid).is_some());
        assert!(meminfo_kib("Slab:").unwrap() > 0);
    }
}
