//! CPU time from `/proc`: of processes, of a server and its children,
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

/// CPU seconds used by a server and its child processes, running or
/// exited: one PostgreSQL cluster, given its postmaster, and not the other
/// clusters that may run on the machine (a test suite's) and whose
/// backends come and go.
pub fn tree_seconds(root: u32) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let children: f64 = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| parent(pid) == Some(root))
        .map(process_seconds)
        .sum();
    process_seconds(root) + exited_children_seconds(root) + children
}

/// A process' parent, from `/proc/<pid>/stat` (field 4).
pub fn parent(pid: u32) -> Option<u32> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
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
