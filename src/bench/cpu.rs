//! CPU time the benchmark process spends, whole and by thread role, and the memory each role
//! touched for the first time (Linux `/proc`; zero elsewhere).
//!
//! Wall-clock throughput on a shared two-core machine moves by ±30% between identical runs;
//! the CPU a thread spends on the same work moves far less, so A/B comparisons of the
//! pipeline's stages read the per-event CPU of each role next to the events per second. On
//! this VM a page touched for the first time costs 0.5–4 µs (the host's price, which swings
//! minute to minute), so a large epoch's CPU follows the memory it first touches; a thread's
//! minor page faults count those pages, and do not swing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The command name of a `/proc/.../stat` line and the fields after it (the state first).
fn stat_fields(stat: &str) -> Option<(&str, Vec<&str>)> {
    // The command name is in parentheses and may hold spaces; fields follow the last ')'.
    let open = stat.find('(')?;
    let (name_part, rest) = stat.rsplit_once(')')?;
    let name = name_part.get(open + 1..)?;
    Some((name, rest.split_whitespace().collect()))
}

/// utime + stime of a `/proc/.../stat` line, in seconds, and the command name.
fn stat_cpu(stat: &str) -> Option<(&str, f64)> {
    let (name, fields) = stat_fields(stat)?;
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after ')' and the state.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((name, (ticks(11)? + ticks(12)?) / 100.0))
}

/// Minor page faults of a `/proc/.../stat` line (field 10), and the command name.
fn stat_minor_faults(stat: &str) -> Option<(&str, u64)> {
    let (name, fields) = stat_fields(stat)?;
    Some((name, fields.get(7)?.parse().ok()?))
}

/// CPU seconds this process has used.
pub fn process_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_cpu(&s).map(|(_, cpu)| cpu))
        .unwrap_or(0.0)
}

/// Busy and total jiffies of the whole machine (the `cpu` line of `/proc/stat`).
fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Each window in which the machine must be quiet, and how long in a row.
const QUIET_WINDOW: Duration = Duration::from_millis(200);
const QUIET_FOR: Duration = Duration::from_secs(3);

/// Waits until the machine is quiet: less than `cores` of CPU busy in each [`QUIET_WINDOW`]
/// for [`QUIET_FOR`], at most `limit`. Returns how long it waited. A broker on the same
/// machine goes on working after a load (noida-db rewrites its whole state file, 570 MB
/// after 1M bids, using most of a core for ~5 s): a phase that starts meanwhile shares the
/// cores with it, and its throughput says more about the broker than about Weir. noida-db
/// starts that up to ~2.5 s after the last message it was sent, hence the three seconds.
pub fn wait_until_quiet(cores: f64, limit: Duration) -> Duration {
    let started = Instant::now();
    let Some(mut last) = machine_jiffies() else {
        return Duration::ZERO;
    };
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut quiet_for = Duration::ZERO;
    while started.elapsed() < limit && quiet_for < QUIET_FOR {
        std::thread::sleep(QUIET_WINDOW);
        let Some(now) = machine_jiffies() else { break };
        let (busy, total) = (now.0 - last.0, now.1 - last.1);
        last = now;
        let quiet = total > 0 && (busy as f64 / total as f64) * ncpu < cores;
        quiet_for = if quiet {
            quiet_for + QUIET_WINDOW
        } else {
            Duration::ZERO
        };
    }
    started.elapsed()
}

/// The role of a thread by its name: the part before the first `-` or `:` (`views-s` is
/// `views`, `rocksdb:high` is `rocksdb`, `tokio-rt-worker` is `tokio`).
fn role(thread: &str) -> &str {
    thread.split(['-', ':']).next().unwrap_or(thread)
}

/// What `measure` reads from each live thread's stat line, summed by the thread's role.
fn sum_by_role<T: Default + std::ops::AddAssign>(
    measure: impl Fn(&str) -> Option<(&str, T)>,
) -> BTreeMap<String, T> {
    let mut roles = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return roles;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let Some((name, value)) = measure(&stat) {
            *roles.entry(role(name).to_string()).or_default() += value;
        }
    }
    roles
}

/// CPU seconds used so far by the live threads of this process, summed by role.
pub fn by_role() -> BTreeMap<String, f64> {
    sum_by_role(stat_cpu)
}

/// Minor page faults so far of the live threads of this process, summed by role.
pub fn faults_by_role() -> BTreeMap<String, u64> {
    sum_by_role(stat_minor_faults)
}

/// The bytes of memory each role touched for the first time between two `faults_by_role`
/// readings, per item (a group, an event), at 4 KiB a fault (x86-64 Linux pages; transparent
/// huge pages are left to `madvise` here, which Weir does not ask for); only threads alive at
/// both readings count; roles below one byte per item are left out.
pub fn first_touch_per_item(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    items: u64,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(role, faults)| {
            let new = faults.saturating_sub(before.get(role).copied().unwrap_or(0));
            (role.clone(), (new * 4096) as f64 / items.max(1) as f64)
        })
        .filter(|(_, bytes)| *bytes >= 1.0)
        .collect()
}

/// Microseconds of CPU per event each role spent between two `by_role` readings (a role
/// whose threads started after `before` counts from zero), and `total` for the whole process.
pub fn per_event_us(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    process: f64,
    events: u64,
) -> BTreeMap<String, f64> {
    let per = |seconds: f64| seconds * 1e6 / events.max(1) as f64;
    let mut out: BTreeMap<String, f64> = after
        .iter()
        .map(|(role, cpu)| {
            let spent = cpu - before.get(role).copied().unwrap_or(0.0);
            (role.clone(), per(spent.max(0.0)))
        })
        .filter(|(_, us)| *us > 0.0)
        .collect();
    out.insert("total".into(), per(process));
    out
}

/// Per-role bytes per item as text: `commit 190 B, views 310 B, ...`.
pub fn describe_bytes(per_item: &BTreeMap<String, f64>) -> String {
    by_role_text(per_item, |bytes| format!("{bytes:.0} B"))
}

/// Per-role CPU per event as text: `commit 0.20 us, read 0.41 us, ...`.
pub fn describe(per_event: &BTreeMap<String, f64>) -> String {
    by_role_text(per_event, |us| format!("{us:.2} us"))
}

/// Each role and its value as `show` writes it, comma-separated.
fn by_role_text(values: &BTreeMap<String, f64>, show: impl Fn(f64) -> String) -> String {
    values
        .iter()
        .map(|(role, value)| format!("{role} {}", show(*value)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_name_and_seconds() {
        let line = "42 (views-s) S 1 1 1 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 0 0";
        assert_eq!(stat_cpu(line), Some(("views-s", 3.0)));
        let spaced = "7 (a b) c) R 1 1 1 0 -1 0 0 0 0 0 1 2 0 0";
        assert_eq!(stat_cpu(spaced), Some(("a b) c", 0.03)));
        assert_eq!(stat_cpu("garbage"), None);
        assert_eq!(stat_minor_faults(line), Some(("views-s", 100)));
        assert_eq!(stat_minor_faults("9 (x) S 1"), None);
        assert_eq!(role("rocksdb:high"), "rocksdb");
        assert_eq!(role("tokio-rt-worker"), "tokio");
        assert_eq!(role("weir"), "weir");
    }

    #[test]
    fn per_event_is_the_difference_over_the_events() {
        let before = BTreeMap::from([("views".to_string(), 1.0)]);
        let after = BTreeMap::from([("views".to_string(), 3.0), ("commit".to_string(), 1.0)]);
        let us = per_event_us(&before, &after, 4.0, 1_000_000);
        assert_eq!(us["views"], 2.0);
        assert_eq!(us["commit"], 1.0);
        assert_eq!(us["total"], 4.0);
        assert!(by_role().values().sum::<f64>() >= 0.0);
    }

    #[test]
    fn first_touches_are_new_faults_in_pages_over_the_items() {
        let before = BTreeMap::from([("views".to_string(), 10), ("read".to_string(), 5)]);
        let after = BTreeMap::from([
            ("views".to_string(), 1010),
            ("read".to_string(), 5),
            ("commit".to_string(), 500),
        ]);
        let bytes = first_touch_per_item(&before, &after, 4096);
        assert_eq!(bytes.get("views"), Some(&1000.0));
        assert_eq!(bytes.get("commit"), Some(&500.0));
        assert_eq!(bytes.get("read"), None, "nothing new");
        assert_eq!(describe_bytes(&bytes), "commit 500 B, views 1000 B");
        // This process has touched memory by now.
        if cfg!(target_os = "linux") {
            assert!(faults_by_role().values().sum::<u64>() > 0);
        }
    }
}
