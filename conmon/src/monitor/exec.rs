//! `execSyncContainer` and the start of every exec: `runtime exec -d`, then the process it
//! started taken over (output or terminal, input, exit). The deadline logic is
//! [`crate::exec::run_until_done`].

use std::cell::Cell;
use std::pin::pin;
use std::rc::Rc;

use tokio::time::Instant;

use super::Monitor;
use crate::error::MonitorError;
use crate::exec::{Capped, ExecStart, ExecSync, ExecSyncResult, StartedExec};
use crate::exec::{kill_command, run_until_done, sync_result};
use crate::io_hub::ProcessIo;
use crate::runtime::invocation::{Call, Pipes, runtime_error};
use crate::stdio;
use crate::sys;
use crate::terminal::{self, ConsoleSocket};
use crate::validate;

impl Monitor {
    /// Runs `request.command` in the container and returns its exit code and output.
    pub async fn exec_sync(
        self: &Rc<Self>,
        request: ExecSync,
    ) -> Result<ExecSyncResult, MonitorError> {
        validate::command(&request.command)?;
        self.running_container(&request.id)?;
        let _running = super::ExecRunning::start(&self.execs);
        // A deadline too far to represent is no deadline (2^63 s is not a real limit).
        let deadline = request
            .timeout
            .and_then(|timeout| Instant::now().checked_add(timeout));
        if request.terminal {
            return self.exec_sync_terminal(&request, deadline).await;
        }

        let (mut pipes, stdio) = Pipes::new(false)?;
        let pidfile = self.exec_pidfile();
        let args = self.runtime.exec_args(
            &request.id,
            pidfile.path(),
            &request.command,
            request.cgroup_manager,
            None,
        );
        tracing::debug!(container_id = %request.id, ?args, "runtime exec");
        let call = Call {
            action: "exec",
            args: &args,
            env: &request.env,
            stdio,
        };
        let runtime = self.runtime.start(&self.reaper, call)?;
        let runtime_span = runtime.span.clone();
        let runtime_pid = runtime.pid;

        // Set once the runtime reported the command's PID, so a deadline can kill it.
        let command_pid = Cell::new(None);
        let process = async {
            let invocation = runtime.wait(None).await?;
            if !invocation.succeeded() {
                // The error output is still being read: the error is completed below.
                return Err(MonitorError::RuntimeFailed {
                    action: invocation.action,
                    status: invocation.status,
                    stderr: String::new(),
                });
            }
            let pid = pidfile.take()?;
            let exit = self.reaper.watch(pid);
            command_pid.set(Some(pid));
            exit.await.map_err(|_| MonitorError::ShuttingDown)
        };

        let mut out = Capped::default();
        let mut err = Capped::default();
        let (result, timed_out) = {
            let output = async {
                let (a, b) = futures::future::join(
                    stdio::read_until_eof(&mut pipes.stdout, |chunk| out.push(chunk)),
                    stdio::read_until_eof(&mut pipes.stderr, |chunk| err.push(chunk)),
                )
                .await;
                if let Err(e) = a.and(b) {
                    tracing::warn!(error = %e, "read exec output");
                }
            };
            run_until_done(pin!(process), pin!(output), deadline, || {
                // A runtime that hangs before reporting the command is killed too.
                kill_runtime(runtime_pid);
                kill_at_deadline(command_pid.get());
                true
            })
            .await
        };
        for (stream, capped) in [("stdout", &out), ("stderr", &err)] {
            if capped.discarded > 0 {
                tracing::warn!(container_id = %request.id, stream, discarded = capped.discarded, "exec output over the cap discarded");
            }
        }
        if let (false, Some(Err(MonitorError::RuntimeFailed { action, status, .. }))) =
            (timed_out, &result)
        {
            let (action, status) = (*action, *status);
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
        let Some(mut process) = started.transpose()? else {
            // The runtime itself hung past the deadline.
            return sync_result(None, true, Vec::new(), Vec::new());
        };
        let mut out = Capped::default();
        let exit = async {
            (&mut process.exit)
                .await
                .map_err(|_| MonitorError::ShuttingDown)
        };
        let output = async {
            let read = stdio::read_until_eof(&mut process.stdout, |chunk| out.push(chunk));
            if let Err(err) = read.await {
                tracing::warn!(error = %err, "read exec terminal");
            }
        };
        let pid = process.pid;
        let (result, timed_out) = run_until_done(pin!(exit), pin!(output), deadline, || {
            kill_at_deadline(Some(pid))
        })
        .await;
        sync_result(result, timed_out, out.bytes, Vec::new())
    }

    /// Runs `runtime exec -d` and takes over the process it started: its output (or terminal),
    /// its input if asked for, and its exit.
    pub(crate) async fn start_exec(
        &self,
        start: &ExecStart<'_>,
    ) -> Result<StartedExec, MonitorError> {
        // The runtime's own errors arrive on these pipes even when the command gets a terminal.
        let (mut pipes, stdio) = Pipes::new(start.stdin && !start.terminal)?;
        let console = start.terminal.then(|| self.console_socket()).transpose()?;
        let stdin = pipes.take_stdin()?;
        let pidfile = self.exec_pidfile();
        let args = self.runtime.exec_args(
            start.id,
            pidfile.path(),
            start.command,
            start.cgroup_manager,
            console.as_ref().map(ConsoleSocket::path),
        );
        tracing::debug!(container_id = %start.id, ?args, "runtime exec");
        let call = Call {
            action: "exec",
            args: &args,
            env: start.env,
            stdio,
        };
        let mut invocation = self
            .runtime
            .run(&self.reaper, call, console.as_ref())
            .await?;
        // Only a failed runtime's output is read here: otherwise the pipes carry the command's.
        if !invocation.succeeded() {
            invocation.output = pipes.runtime_output();
        }
        let invocation = invocation.success()?;
        let pid = pidfile.take()?;
        let exit = self.reaper.watch(pid);
        let started = match invocation.terminal {
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
                stdout: pipes.stdout,
                stderr: Some(pipes.stderr),
                io: Rc::new(ProcessIo::new(stdin, None)),
            },
        };
        Ok(started)
    }
}

/// Kills a runtime still running at an exec deadline, with everything in its process group.
fn kill_runtime(pgid: u32) {
    if let Err(err) = sys::kill_group(pgid, libc::SIGKILL) {
        tracing::warn!(pgid, error = %err, "kill exec runtime");
    }
}

/// Kills the command at its deadline, if the runtime has reported its PID yet.
fn kill_at_deadline(pid: Option<u32>) -> bool {
    let Some(pid) = pid else { return false };
    tracing::info!(pid, "exec deadline reached; killing command");
    kill_command(pid);
    true
}
