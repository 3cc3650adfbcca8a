//! `execSyncContainer`: run a command in a running container and collect its output.
//!
//! Output is read from the moment the runtime starts, so nothing is lost however fast the
//! command writes. Each stream keeps at most [`OUTPUT_CAP`] bytes; beyond that output is read and
//! discarded so the command never blocks on a full pipe.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::attach::Endpoint;
use crate::error::MonitorError;
use crate::monitor::{Monitor, finish_runtime, read_pidfile, runtime_error, runtime_output};
use crate::reaper::ExitStatus;
use crate::runtime::{CgroupManager, RuntimeStdio};
use crate::stdio::{self, PipeReader};
use crate::sys;
use crate::terminal::{self, ConsoleSocket};
pub use conmon_proto::types::{ExecSync, ExecSyncResult};

/// Bytes kept per output stream.
pub const OUTPUT_CAP: usize = 16 * 1024 * 1024;

/// Exit code reported when the command was killed at its deadline (conmon-rs's value).
pub const EXIT_CODE_TIMED_OUT: i32 = -3;

/// How long output is still read after the command exited, when a process it left behind
/// keeps the pipes open; afterwards the result is returned without that process's output.
pub(crate) const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How long a killed command may take to be reaped.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(5);

impl Monitor {
    /// Runs `request.command` in the container and returns its exit code and output.
    pub async fn exec_sync(
        self: &Rc<Self>,
        request: ExecSync,
    ) -> Result<ExecSyncResult, MonitorError> {
        if request.command.is_empty() {
            return Err(MonitorError::InvalidRequest("exec command is empty".into()));
        }
        self.running_container(&request.id)?;
        let deadline = request.timeout.map(|timeout| Instant::now() + timeout);
        if request.terminal {
            return self.exec_sync_terminal(&request, deadline).await;
        }

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
        if let Some(Err(MonitorError::RuntimeFailed { action, status, .. })) = result {
            let mut text = err.bytes;
            text.extend(out.bytes);
            return Err(runtime_error(&runtime_span, action, status, &text));
        }
        sync_result(result, timed_out, out.bytes, err.bytes)
    }

    /// `execSyncContainer` on a terminal: one output stream (with the terminal's CRLF line
    /// ends) returned as stdout.
    async fn exec_sync_terminal(
        &self,
        request: &ExecSync,
        deadline: Option<Instant>,
    ) -> Result<ExecSyncResult, MonitorError> {
        let start = ExecStart {
            id: &request.id,
            command: &request.command,
            cgroup_manager: request.cgroup_manager,
            env: &request.env,
            terminal: true,
            stdin: false,
        };
        let start = self.start_exec(&start);
        let started = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, start).await.ok(),
            None => Some(start.await),
        };
        let Some(process) = started.transpose()? else {
            // The runtime itself hung past the deadline.
            return sync_result(None, true, Vec::new(), Vec::new());
        };
        let command_pid = Cell::new(Some(process.pid));
        let mut out = Capped::default();
        let exit = async { process.exit.await.map_err(|_| MonitorError::ShuttingDown) };
        let output = async {
            if let Err(err) = stdio::read_until_eof(&process.stdout, |chunk| out.push(chunk)).await
            {
                tracing::warn!(error = %err, "read exec terminal");
            }
        };
        let (result, timed_out) =
            run_until_done(pin!(exit), pin!(output), deadline, &command_pid).await;
        sync_result(result, timed_out, out.bytes, Vec::new())
    }

    /// Runs `runtime exec -d` and takes over the process it started: its output (or terminal),
    /// its input if asked for, and its exit.
    pub(crate) async fn start_exec(
        &self,
        start: &ExecStart<'_>,
    ) -> Result<StartedExec, MonitorError> {
        // The runtime's own errors arrive on these pipes even when the command gets a terminal.
        let (stdout, stdout_w) = stdio::output_pipe().map_err(MonitorError::Pipe)?;
        let (stderr, stderr_w) = stdio::output_pipe().map_err(MonitorError::Pipe)?;
        let mut runtime_stdio = RuntimeStdio::piped_output(stdout_w, stderr_w);
        let console = match start.terminal {
            true => Some(ConsoleSocket::bind().map_err(MonitorError::Console)?),
            false => None,
        };
        let stdin = if start.stdin && !start.terminal {
            let (read, write) = sys::pipe().map_err(MonitorError::Pipe)?;
            runtime_stdio.stdin = read.into();
            Some(pipe::Sender::from_owned_fd(write).map_err(MonitorError::Pipe)?)
        } else {
            None
        };
        let pidfile = self.exec_pidfile();
        let args = self.runtime.exec_args(
            start.id,
            &pidfile,
            start.command,
            start.cgroup_manager,
            console.as_ref().map(ConsoleSocket::path),
        );
        tracing::debug!(container_id = %start.id, ?args, "runtime exec");
        let (span, status, master) = self
            .run_with_console("exec", &args, start.env, runtime_stdio, console.as_ref())
            .await?;
        // Only a failed runtime's output is read here: otherwise the pipes carry the command's.
        if status != ExitStatus::Exited(0) {
            let _ = std::fs::remove_file(&pidfile);
            let output = runtime_output(&stdout, &stderr);
            return Err(runtime_error(&span, "exec", status, &output));
        }
        let pid = read_pidfile(&pidfile);
        let _ = std::fs::remove_file(&pidfile);
        let pid = pid?;
        let exit = self.reaper.watch(pid);
        let started = match master {
            Some(master) => {
                let (reader, io) =
                    terminal::take_over(master, start.stdin).map_err(MonitorError::Console)?;
                StartedExec {
                    pid,
                    exit,
                    stdout: reader,
                    stderr: None,
                    io: Rc::new(io),
                }
            }
            None => StartedExec {
                pid,
                exit,
                stdout,
                stderr: Some(stderr),
                io: Rc::new(Endpoint::new(stdin, None)),
            },
        };
        Ok(started)
    }
}

/// What to run with [`Monitor::start_exec`].
#[derive(Debug)]
pub(crate) struct ExecStart<'a> {
    pub(crate) id: &'a str,
    pub(crate) command: &'a [String],
    pub(crate) cgroup_manager: CgroupManager,
    /// Added to the runtime's environment.
    pub(crate) env: &'a BTreeMap<String, String>,
    /// Run on a new terminal.
    pub(crate) terminal: bool,
    /// Give the command an input the monitor writes to.
    pub(crate) stdin: bool,
}

/// A command started in a container.
#[derive(Debug)]
pub(crate) struct StartedExec {
    pub(crate) pid: u32,
    pub(crate) exit: oneshot::Receiver<ExitStatus>,
    /// Its output, or its terminal.
    pub(crate) stdout: PipeReader,
    /// Its error output; `None` on a terminal.
    pub(crate) stderr: Option<PipeReader>,
    /// Its input, terminal and attach clients.
    pub(crate) io: Rc<Endpoint>,
}

/// The reply to an exec-sync: the command's result (`None` if even the runtime did not finish
/// by the deadline) and its output.
fn sync_result(
    result: Option<Result<ExitStatus, MonitorError>>,
    timed_out: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
) -> Result<ExecSyncResult, MonitorError> {
    let hung = result.is_none();
    let exit_code = match result {
        Some(Ok(status)) if !timed_out => status.code(),
        Some(Ok(_)) | None => EXIT_CODE_TIMED_OUT,
        Some(Err(err)) => return Err(err),
    };
    Ok(ExecSyncResult {
        exit_code,
        stdout,
        stderr,
        timed_out: timed_out || hung,
    })
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
        kill_command(pid);
        let result = tokio::time::timeout(KILL_WAIT, &mut process).await.ok();
        return (result, true);
    }
    (None, true)
}

/// Kills an exec'd command (its exit still comes through the reaper); failures are logged.
pub(crate) fn kill_command(pid: u32) {
    if let Err(err) = sys::kill(pid, libc::SIGKILL) {
        tracing::warn!(pid, error = %err, "kill exec");
    }
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
