//! CPU time from `/proc`: of processes, of every process of one program,
//! and of the whole machine. It splits a scenario's CPU among its parts, to
//! show what limits it on a machine they all share.

use std::path::Path;
use std::sync::LazyLock;

/// Kernel clock ticks per second, the unit of `/proc` CPU times.
static TICKS_PER_S: LazyLock<f64> = LazyLock::new(|| {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        // Linux' USER_HZ on every common architecture.
        .unwrap_or(100.0)
});

/// User plus system CPU seconds a process has used; 0 once it is gone.
pub fn process_seconds(pid: u32) -> f64 {
    // utime and stime: fields 14 and 15.
    stat_ticks(pid, 11) / *TICKS_PER_S
}

/// CPU seconds used by every running process of the program `name` (as
/// `/proc/<pid>/comm` names it), e.g. all of PostgreSQL's backends, and by
/// their children that have exited: a backend that pgbench connected and
/// that ended with it, an autovacuum worker.
pub fn program_seconds(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .map(|pid| process_seconds(pid) + exited_children_seconds(pid))
        .sum()
}

/// User plus system CPU seconds of a process' children that have exited
/// and been waited for (`cutime` and `cstime`, fields 16 and 17).
fn exited_children_seconds(pid: u32) -> f64 {
    stat_ticks(pid, 13) / *TICKS_PER_S
}

/// The sum of two clock-tick fields of `/proc/<pid>/stat`, counted from
/// the state field after the command name (`skip` fields after it).
fn stat_ticks(pid: u32, skip: usize) -> f64 {
    let Ok(stat) = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
    else {
        return 0.0;
    };
    // The command name, in parentheses, may hold spaces: fields count from
    // its closing parenthesis.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    rest.split_whitespace()
        .skip(skip)
        .take(2)
        .filter_map(|f| f.parse::<f64>().ok())
        .sum()
}

/// The machine's busy and total CPU seconds since boot, summed over its
/// cores (idle and I/O wait count as not busy).
pub fn machine_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal; guest time is
    // already inside user.
    let total: f64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0.0) + fields.get(4).copied().unwrap_or(0.0);
    ((total - idle) / *TICKS_PER_S, total / *TICKS_PER_S)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_the_machine_have_used_cpu() {
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(process_seconds(std::process::id()) > 0.0);
        assert_eq!(process_seconds(u32::MAX), 0.0);
        let (busy, total) = machine_seconds();
        assert!(busy > 0.0 && busy < total, "{busy} of {total}");
    }
}
