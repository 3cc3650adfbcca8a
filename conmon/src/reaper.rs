//! Reaping of every process that exits under this monitor.
//!
//! conmond is the child subreaper, so runtime processes, container init processes and orphans
//! escaping a container all end up as its children. A single SIGCHLD-driven loop reaps them all
//! (no zombie is ever left behind) and hands each status to whoever asked for that PID. A status
//! can arrive before anyone asks (a container dying before its PID was read from runc's pidfile),
//! so unclaimed statuses are kept, bounded, until claimed.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::oneshot;

use crate::sys::{self, WaitStatus};

/// Unclaimed statuses kept for late claimers; strays beyond this are forgotten oldest first.
const MAX_UNCLAIMED: usize = 1024;

/// How long an unclaimed status stays claimable. A PID learned from a runtime pidfile is
/// claimed within moments; expiring older entries means a reused PID never inherits a stale
/// status of the process that had that PID before.
const UNCLAIMED_TTL: Duration = Duration::from_secs(30);

/// How a supervised process ended, as reported to engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Normal exit with this status.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// The code written to exit files and returned by exec: the status, or 128+N after signal N.
    pub fn code(self) -> i32 {
        match self {
            Self::Exited(code) => code,
            Self::Signaled(signal) => 128 + signal,
        }
    }
}

impl From<WaitStatus> for ExitStatus {
    fn from(status: WaitStatus) -> Self {
        match status {
            WaitStatus::Exited(code) => Self::Exited(code),
            WaitStatus::Signaled(signal) => Self::Signaled(signal),
        }
    }
}

/// Hands out exit statuses by PID. Lives on the monitor's single thread.
#[derive(Debug, Default)]
pub struct Reaper {
    waiters: RefCell<HashMap<u32, oneshot::Sender<ExitStatus>>>,
    unclaimed: RefCell<VecDeque<(u32, ExitStatus, Instant)>>,
}

impl Reaper {
    /// Returns a receiver for `pid`'s exit status. Call it right after spawning, before yielding
    /// to the runtime, or for an orphan whose PID was just learned; both work.
    pub fn watch(&self, pid: u32) -> oneshot::Receiver<ExitStatus> {
        let (tx, rx) = oneshot::channel();
        let mut unclaimed = self.unclaimed.borrow_mut();
        while unclaimed
            .front()
            .is_some_and(|(_, _, at)| at.elapsed() > UNCLAIMED_TTL)
        {
            unclaimed.pop_front();
        }
        if let Some(index) = unclaimed.iter().position(|(p, _, _)| *p == pid) {
            if let Some((_, status, _)) = unclaimed.remove(index) {
                // The receiver is alive: it is returned below.
                let _ = tx.send(status);
            }
        } else {
            self.waiters.borrow_mut().insert(pid, tx);
        }
        rx
    }

    /// Reaps every exited child and delivers their statuses.
    fn reap_all(&self) {
        loop {
            match sys::reap_one() {
                Ok(Some((pid, status))) => self.deliver(pid, status.into()),
                Ok(None) => return,
                Err(err) => {
                    tracing::error!(error = %err, "waitpid failed");
                    return;
                }
            }
        }
    }

    fn deliver(&self, pid: u32, status: ExitStatus) {
        let waiter = self.waiters.borrow_mut().remove(&pid);
        match waiter {
            Some(tx) => {
                // A dropped receiver means nobody cares any more; nothing to do.
                let _ = tx.send(status);
            }
            None => {
                tracing::debug!(pid, ?status, "reaped unwatched process");
                let mut unclaimed = self.unclaimed.borrow_mut();
                if unclaimed.len() == MAX_UNCLAIMED {
                    unclaimed.pop_front();
                }
                unclaimed.push_back((pid, status, Instant::now()));
            }
        }
    }
}

/// Subscribes to SIGCHLD. Do this before spawning any child so no exit goes unnoticed.
pub fn sigchld() -> std::io::Result<Signal> {
    signal(SignalKind::child())
}

/// Reaps children for as long as the monitor runs.
pub async fn run(reaper: Rc<Reaper>, mut sigchld: Signal) {
    // Children that exited before the subscription are collected by the first pass.
    reaper.reap_all();
    while sigchld.recv().await.is_some() {
        reaper.reap_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reaped_before_watch_is_still_delivered() {
        let reaper = Reaper::default();
        reaper.deliver(42, ExitStatus::Exited(3));
        let mut rx = reaper.watch(42);
        assert_eq!(rx.try_recv().unwrap(), ExitStatus::Exited(3));
    }

    #[test]
    fn watched_pid_gets_its_status() {
        let reaper = Reaper::default();
        let mut rx = reaper.watch(7);
        assert!(rx.try_recv().is_err());
        reaper.deliver(7, ExitStatus::Signaled(9));
        assert_eq!(rx.try_recv().unwrap().code(), 137);
    }
}
