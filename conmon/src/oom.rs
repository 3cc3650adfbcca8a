//! OOM-kill detection while a container runs: the kernel tells the monitor at once, through
//! an eventfd registered for the memory cgroup's `memory.oom_control` (cgroup v1) or inotify
//! on its `memory.events` (the unified v2 hierarchy, where the `oom_kill` counter there also
//! counts kills in nested cgroups). The OOM files are then written while the container is
//! still being torn down. When the watched cgroup is removed while the process lives (it was
//! moved), the watch follows the process to its new cgroup. At exit, a last look at the
//! counter catches a kill the notification raced with.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::future::Future;
use std::io::{self, Read as _};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

use crate::sys;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A process's memory cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MemoryCgroup {
    dir: PathBuf,
    unified: bool,
}

impl MemoryCgroup {
    /// `pid`'s memory cgroup now; `None` when the process is gone or no memory controller is
    /// mounted.
    fn of(pid: u32) -> Option<Self> {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let unified = Path::new(CGROUP_ROOT).join("cgroup.controllers").exists();
        let dir = cgroup_dir(&cgroups, unified)?;
        Some(Self { dir, unified })
    }

    fn counter_file(&self) -> PathBuf {
        self.dir.join(match self.unified {
            true => "memory.events",
            false => "memory.oom_control",
        })
    }

    /// The cgroup's OOM-kill count.
    fn oom_kills(&self) -> Option<u64> {
        parse_oom_kill(&std::fs::read_to_string(self.counter_file()).ok()?)
    }
}

/// How a container's OOM kill was noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OomOutcome {
    /// None happened.
    NotKilled,
    /// While it ran: the OOM files are written already.
    Live,
    /// Only at exit: the OOM files are still to be written.
    AtExit,
}

/// A running watch; [`OomWatch::finish`] ends it.
#[derive(Debug)]
pub(crate) struct OomWatch {
    /// The cgroup watched now and its count when watching it began.
    watched: Rc<RefCell<Option<(MemoryCgroup, u64)>>>,
    detected: Rc<Cell<bool>>,
    task: JoinHandle<()>,
}

impl OomWatch {
    /// Starts watching `pid`'s memory cgroup; `on_oom` runs (once) as soon as a kill is seen.
    pub(crate) fn start<F>(pid: u32, on_oom: F) -> Self
    where
        F: Future<Output = ()> + 'static,
    {
        let watched = MemoryCgroup::of(pid).map(|cgroup| {
            let baseline = cgroup.oom_kills().unwrap_or(0);
            (cgroup, baseline)
        });
        let watched = Rc::new(RefCell::new(watched));
        let detected = Rc::new(Cell::new(false));
        let task = crate::tasks::spawn_local(watch(pid, watched.clone(), detected.clone(), on_oom));
        Self {
            watched,
            detected,
            task,
        }
    }

    /// Ends the watch once the process exited: waits for a live report to finish, or takes a
    /// last look at the counter.
    pub(crate) async fn finish(self) -> OomOutcome {
        if self.detected.get() {
            let _ = self.task.await;
            return OomOutcome::Live;
        }
        self.task.abort();
        let killed_since = self
            .watched
            .borrow()
            .as_ref()
            .is_some_and(|(cgroup, baseline)| {
                cgroup.oom_kills().is_some_and(|count| count > *baseline)
            });
        match killed_since {
            true => OomOutcome::AtExit,
            false => OomOutcome::NotKilled,
        }
    }
}

/// What ended a wait.
enum Event {
    OomKill,
    /// The cgroup is gone.
    Removed,
}

async fn watch<F: Future<Output = ()>>(
    pid: u32,
    watched: Rc<RefCell<Option<(MemoryCgroup, u64)>>>,
    detected: Rc<Cell<bool>>,
    on_oom: F,
) {
    // Registering takes a few system calls: they wait until the create's reply is on its way.
    tokio::task::yield_now().await;
    loop {
        let Some((cgroup, baseline)) = watched.borrow().clone() else {
            return;
        };
        let event = match cgroup.unified {
            true => wait_v2(&cgroup, baseline).await,
            false => wait_v1(&cgroup).await,
        };
        match event {
            Ok(Event::OomKill) => {
                detected.set(true);
                on_oom.await;
                return;
            }
            Ok(Event::Removed) => match MemoryCgroup::of(pid) {
                Some(moved) if moved != cgroup => {
                    tracing::info!(pid, cgroup = %moved.dir.display(), "process moved; watching its new memory cgroup for OOM kills");
                    let baseline = moved.oom_kills().unwrap_or(0);
                    *watched.borrow_mut() = Some((moved, baseline));
                }
                _ => return,
            },
            Err(err) => {
                tracing::warn!(pid, cgroup = %cgroup.dir.display(), error = %err, "cannot watch for OOM kills; checking at exit only");
                return;
            }
        }
    }
}

/// cgroup v1: the eventfd registered for `memory.oom_control` is signalled on an OOM in the
/// cgroup, and when the cgroup is removed.
async fn wait_v1(cgroup: &MemoryCgroup) -> io::Result<Event> {
    let control = File::open(cgroup.counter_file())?;
    let eventfd = sys::eventfd()?;
    let registration = format!("{} {}", eventfd.as_raw_fd(), control.as_raw_fd());
    std::fs::write(cgroup.dir.join("cgroup.event_control"), registration)?;
    let eventfd = sys::async_fd(eventfd)?;
    wait_readable(&eventfd).await?;
    Ok(match cgroup.dir.exists() {
        true => Event::OomKill,
        false => Event::Removed,
    })
}

/// cgroup v2: `memory.events` changes with every event counted in it.
async fn wait_v2(cgroup: &MemoryCgroup, baseline: u64) -> io::Result<Event> {
    let file = cgroup.counter_file();
    let inotify = sys::async_fd(sys::watch_file(&file)?)?;
    loop {
        // Checked after the watch is placed, so no change goes unseen.
        match cgroup.oom_kills() {
            Some(count) if count > baseline => return Ok(Event::OomKill),
            Some(_) => {}
            None if !file.exists() => return Ok(Event::Removed),
            None => {}
        }
        wait_readable(&inotify).await?;
    }
}

/// Waits until `fd` has something to read, and reads (discards) it.
async fn wait_readable(fd: &AsyncFd<File>) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let mut ready = fd.readable().await?;
        match fd.get_ref().read(&mut buf) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
            other => return other.map(drop),
        }
    }
}

/// The memory cgroup directory from the contents of `/proc/<pid>/cgroup`.
fn cgroup_dir(proc_cgroup: &str, unified: bool) -> Option<PathBuf> {
    proc_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let relative = path.trim_start_matches('/');
        if unified {
            (controllers.is_empty()).then(|| Path::new(CGROUP_ROOT).join(relative))
        } else {
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| Path::new(CGROUP_ROOT).join("memory").join(relative))
        }
    })
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
            cgroup_dir(proc_cgroup, false),
            Some(PathBuf::from("/sys/fs/cgroup/memory/pod/c1"))
        );
    }

    #[test]
    fn v2_uses_the_unified_line() {
        assert_eq!(
            cgroup_dir("0::/kubepods/c1\n", true),
            Some(PathBuf::from("/sys/fs/cgroup/kubepods/c1"))
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
