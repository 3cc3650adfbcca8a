//! `execSyncContainer`: run a command in a running container and collect its output.
//!
//! Output is read from the moment the runtime starts, so nothing is lost however fast the
//! command writes. Each stream keeps at most [`OUTPUT_CAP`] bytes; beyond that output is read and
//! discarded so the command never blocks on a full pipe.

use std::cell::Cell;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument as _;

use crate::error::MonitorError;
use crate::monitor::{Monitor, finish_runtime, read_pidfile, runtime_failed};
use crate::reaper::ExitStatus;
use crate::runtime::RuntimeStdio;
use crate::stdio;
use crate::sys;
pub use conmon_proto::types::{ExecSync, ExecSyncResult};

/// Bytes kept per output stream.
pub const OUTPUT_CAP: usize = 16 * 1024 * 1024;

/// Exit code reported when the command was killed at its deadline (conmon-rs's value).
pub const EXIT_CODE_TIMED_OUT: i32 = -3;

/// How long output is still read after the command exited, when a process it left behind
/// keeps the pipes open; afterwards the result is returned without that process's output.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How long a killed command may take to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(5);

impl Monitor {
    /// Runs `request.command` in the container and returns its exit code and output.
    pub async fn exec_sync(
        self: &Rc<Self>,
        request: ExecSync,
    ) -> Result<ExecSyncResult, MonitorError> {
        if request.command.is_empty() {
            return Err(MonitorError::InvalidRequest("exec command is empty".into()));
        }
        if request.terminal {
            return Err(MonitorError::NotImplemented("terminal exec"));
        }
        self.running_container(&request.id)?;
        let deadline = request.timeout.map(|timeout| Instant::now() + timeout);

        let (stdout, stdout_w) = stdio::output_pipe().map_err(MonitorError::Pipe)?;
        let (stderr, stderr_w) = stdio::output_pipe().map_err(MonitorError::Pipe)?;
        let pidfile = self.exec_pidfile();
        let args = self.runtime.exec_args(
            &request.id,
            &pidfile,
            &request.command,
            request.cgroup_manager,
            None,
        );
        tracing::debug!(container_id = %request.id, ?args, "runtime exec");
        let (runtime_span, runtime_exit) = self.spawn_runtime(
            "exec",
            &args,
            &request.env,
            RuntimeStdio::piped_output(stdout_w, stderr_w),
        )?;

        // Set once the runtime reported the command's PID, so a deadline can kill it.
        let command_pid = Cell::new(None);
        let process = async {
            let status = runtime_exit
                .instrument(runtime_span.clone())
                .await
                .map_err(|_| MonitorError::ShuttingDown)?;
            finish_runtime(&runtime_span, status);
            if status != ExitStatus::Exited(0) {
                let _ = std::fs::remove_file(&pidfile);
                return Err(MonitorError::RuntimeFailed {
                    action: "exec",
                    status,
                    stderr: String::new(),
                });
            }
            let pid = read_pidfile(&pidfile);
            let _ = std::fs::remove_file(&pidfile);
            let pid = pid?;
            let exit = self.reaper.watch(pid);
            command_pid.set(Some(pid));
            exit.await.map_err(|_| MonitorError::ShuttingDown)
        };

        let mut out = Capped::default();
        let mut err = Capped::default();
        let (result, timed_out) = {
            let output = async {
                let (a, b) = futures::future::join(
                    stdio::read_until_eof(&stdout, |chunk| out.push(chunk)),
                    stdio::read_until_eof(&stderr, |chunk| err.push(chunk)),
                )
                .await;
                if let Err(e) = a.and(b) {
                    tracing::warn!(error = %e, "read exec output");
                }
            };
            run_until_done(pin!(process), pin!(output), deadline, &command_pid).await
        };
        for (stream, capped) in [("stdout", &out), ("stderr", &err)] {
            if capped.discarded > 0 {
                tracing::warn!(container_id = %request.id, stream, discarded = capped.discarded, "exec output over the cap discarded");
            }
        }
        match result {
            Some(Ok(status)) => Ok(ExecSyncResult {
                exit_code: if timed_out {
                    EXIT_CODE_TIMED_OUT
                } else {
                    status.code()
                },
                stdout: out.bytes,
                stderr: err.bytes,
                timed_out,
            }),
            Some(Err(MonitorError::RuntimeFailed { action, status, .. })) => {
                let mut text = err.bytes;
                text.extend(out.bytes);
                let err = MonitorError::RuntimeFailed {
                    action,
                    status,
                    stderr: String::from_utf8_lossy(&text).into_owned(),
                };
                runtime_failed(&runtime_span, &err);
                Err(err)
            }
            Some(Err(e)) => Err(e),
            // The runtime itself hung past the deadline.
            None => Ok(ExecSyncResult {
                exit_code: EXIT_CODE_TIMED_OUT,
                stdout: out.bytes,
                stderr: err.bytes,
                timed_out: true,
            }),
        }
    }
}

/// Drives the process and its output together: returns when the process exited and its output
/// reached end of file, when output stays open [`DRAIN_AFTER_EXIT`] past the exit, or at the
/// deadline, where the command is killed. Returns the process result (if it finished) and whether
/// the deadline was hit.
async fn run_until_done<P, O>(
    mut process: std::pin::Pin<&mut P>,
    mut output: std::pin::Pin<&mut O>,
    deadline: Option<Instant>,
    command_pid: &Cell<Option<u32>>,
) -> (Option<Result<ExitStatus, MonitorError>>, bool)
where
    P: Future<Output = Result<ExitStatus, MonitorError>>,
    O: Future<Output = ()>,
{
    let mut result = None;
    let mut output_done = false;
    let mut drain_until: Option<Instant> = None;
    loop {
        let wake_at = match (deadline, drain_until) {
            (Some(d), Some(g)) => Some(d.min(g)),
            (d, g) => d.or(g),
        };
        let sleep = async {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut output, if !output_done => output_done = true,
            r = &mut process, if result.is_none() => {
                result = Some(r);
                drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
            }
            () = sleep => {
                if result.is_some() {
                    // Exited; a leftover process holds the pipes. Return what we have.
                    return (result, false);
                }
                break;
            }
        }
        if output_done && result.is_some() {
            return (result, false);
        }
    }
    // Deadline reached before the command exited: kill it and collect its status.
    if let Some(pid) = command_pid.get() {
        tracing::info!(pid, "exec deadline reached; killing command");
        if let Err(err) = sys::kill(pid, libc::SIGKILL) {
            tracing::warn!(pid, error = %err, "kill timed-out exec");
        }
        let result = tokio::time::timeout(KILL_WAIT, &mut process).await.ok();
        return (result, true);
    }
    (None, true)
}

/// Collects output up to [`OUTPUT_CAP`] bytes and counts the rest.
#[derive(Debug, Default)]
struct Capped {
    bytes: Vec<u8>,
    discarded: usize,
}

impl Capped {
    fn push(&mut self, chunk: &[u8]) {
        let room = OUTPUT_CAP - self.bytes.len();
        let take = room.min(chunk.len());
        self.bytes.extend_from_slice(&chunk[..take]);
        self.discarded += chunk.len() - take;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_output_keeps_the_first_bytes_only() {
        let mut capped = Capped::default();
        capped.push(&vec![b'a'; OUTPUT_CAP - 1]);
        capped.push(b"bcd");
        assert_eq!(capped.bytes.len(), OUTPUT_CAP);
        assert_eq!(capped.bytes.last(), Some(&b'b'));
        assert_eq!(capped.discarded, 2);
    }
}
