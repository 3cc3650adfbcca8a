//! OOM-kill detection by cgroup counters: the `oom_kill` count of the container's memory cgroup
//! is read when supervision starts and again when the container exits; growth means the kernel
//! OOM-killed a process of the container. Works on cgroup v1 (`memory.oom_control`) and on the
//! unified v2 hierarchy (`memory.events`).

use std::path::{Path, PathBuf};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where a process's OOM-kill counter lives, and its value when watching began.
#[derive(Debug, Clone)]
pub(crate) struct OomWatch {
    counter_file: PathBuf,
    baseline: u64,
}

impl OomWatch {
    /// Starts watching `pid`'s memory cgroup; `None` when it cannot be found (the process is
    /// gone, or no memory controller is mounted).
    pub(crate) fn start(pid: u32) -> Option<Self> {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let unified = Path::new(CGROUP_ROOT).join("cgroup.controllers").exists();
        let counter_file = counter_file(&cgroups, unified)?;
        let baseline = read_counter(&counter_file).unwrap_or(0);
        Some(Self {
            counter_file,
            baseline,
        })
    }

    /// Whether an OOM kill happened since [`OomWatch::start`].
    pub(crate) fn oom_killed(&self) -> bool {
        read_counter(&self.counter_file).is_some_and(|count| count > self.baseline)
    }
}

/// Finds the file with the `oom_kill` counter from the contents of `/proc/<pid>/cgroup`.
fn counter_file(proc_cgroup: &str, unified: bool) -> Option<PathBuf> {
    proc_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let relative = path.trim_start_matches('/');
        if unified {
            (controllers.is_empty())
                .then(|| Path::new(CGROUP_ROOT).join(relative).join("memory.events"))
        } else {
            controllers.split(',').any(|c| c == "memory").then(|| {
                Path::new(CGROUP_ROOT)
                    .join("memory")
                    .join(relative)
                    .join("memory.oom_control")
            })
        }
    })
}

fn read_counter(file: &Path) -> Option<u64> {
    parse_oom_kill(&std::fs::read_to_string(file).ok()?)
}

/// Reads the `oom_kill N` line of `memory.oom_control` or `memory.events`.
fn parse_oom_kill(contents: &str) -> Option<u64> {
    contents
        .lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|count| count.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_uses_the_memory_controller_line() {
        let proc_cgroup = "12:pids:/c1\n7:cpu,cpuacct:/c1\n4:memory:/pod/c1\n0::/\n";
        assert_eq!(
            counter_file(proc_cgroup, false),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/pod/c1/memory.oom_control"
            ))
        );
    }

    #[test]
    fn v2_uses_the_unified_line() {
        assert_eq!(
            counter_file("0::/kubepods/c1\n", true),
            Some(PathBuf::from("/sys/fs/cgroup/kubepods/c1/memory.events"))
        );
    }

    #[test]
    fn parses_the_oom_kill_counter() {
        assert_eq!(
            parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            Some(3)
        );
        assert_eq!(
            parse_oom_kill("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n"),
            Some(1)
        );
        assert_eq!(parse_oom_kill("under_oom 0\n"), None);
    }
}
