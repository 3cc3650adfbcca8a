//! Running the runtime. Each invocation is a child span of the current one (its context also
//! goes to the runtime as `TRACEPARENT`), its exit comes from the reaper, and what it leaves
//! behind (exit status, error output, a terminal master) comes back as one [`Invocation`].

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::{Runtime, RuntimeStdio};
use crate::error::MonitorError;
use crate::exec::KILL_WAIT;
use crate::reaper::{ExitStatus, Reaper};
use crate::stdio::{self, PipeReader};
use crate::sys;
use crate::terminal::ConsoleSocket;

/// How long a terminal master may trail the runtime's exit.
const CONSOLE_GRACE: Duration = Duration::from_secs(5);

/// One `runtime <action>` to run.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    /// The subcommand, for the span's name and errors.
    pub(crate) action: &'static str,
    pub(crate) args: &'a [OsString],
    /// Added to the monitor's environment.
    pub(crate) env: &'a BTreeMap<String, String>,
    pub(crate) stdio: RuntimeStdio,
}

/// A runtime that has exited.
#[derive(Debug)]
pub(crate) struct Invocation {
    pub(crate) action: &'static str,
    /// Its span, with the exit code recorded; failures are reported on it.
    pub(crate) span: tracing::Span,
    pub(crate) status: ExitStatus,
    /// What it wrote to its stdio, where the caller captured that.
    pub(crate) output: Vec<u8>,
    /// The terminal master it sent to the console socket, if it was given one.
    pub(crate) terminal: Option<OwnedFd>,
}

impl Invocation {
    /// Whether the runtime exited with status 0.
    pub(crate) fn succeeded(&self) -> bool {
        self.status == ExitStatus::Exited(0)
    }

    /// The invocation if it succeeded; otherwise its failure with the captured output,
    /// reported on its span.
    pub(crate) fn success(self) -> Result<Self, MonitorError> {
        match self.succeeded() {
            true => Ok(self),
            false => Err(runtime_error(
                &self.span,
                self.action,
                self.status,
                &self.output,
            )),
        }
    }
}

/// The runtime processes running now, so shutdown can let them finish or kill them.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    pids: RefCell<BTreeSet<u32>>,
    ended: Notify,
}

impl Calls {
    fn begin(self: &Rc<Self>, pid: u32) -> CallGuard {
        self.pids.borrow_mut().insert(pid);
        CallGuard {
            calls: self.clone(),
            pid,
        }
    }

    /// Waits up to `grace` for the runtime calls in flight to end, then kills the process
    /// groups of those still running.
    pub(crate) async fn finish(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while !self.pids.borrow().is_empty() {
            if tokio::time::timeout_at(deadline, self.ended.notified())
                .await
                .is_err()
            {
                break;
            }
        }
        for &pid in self.pids.borrow().iter() {
            tracing::warn!(pid, "runtime still running at shutdown; killing it");
            if let Err(err) = sys::kill_group(pid, libc::SIGKILL) {
                tracing::warn!(pid, error = %err, "kill runtime");
            }
        }
    }
}

/// A runtime process in [`Calls`] until it was waited for.
#[derive(Debug)]
struct CallGuard {
    calls: Rc<Calls>,
    pid: u32,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.calls.pids.borrow_mut().remove(&self.pid);
        // One waiter at most (shutdown); a stored permit covers a wait that starts later.
        self.calls.ended.notify_one();
    }
}

/// A runtime that was started and has not been waited for.
#[derive(Debug)]
pub(crate) struct Running {
    action: &'static str,
    /// Its PID, which is also its process group.
    pub(crate) pid: u32,
    /// Its span, to report on.
    pub(crate) span: tracing::Span,
    exit: oneshot::Receiver<ExitStatus>,
    _call: CallGuard,
}

impl Running {
    /// Waits, in the runtime's span, until it exited, and records its exit code there. At
    /// `deadline` its process group is killed and the call fails as timed out.
    pub(crate) async fn wait(self, deadline: Option<Instant>) -> Result<Invocation, MonitorError> {
        let span = self.span.clone();
        let mut exit = self.exit.instrument(span.clone());
        let exited = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, &mut exit).await.ok(),
            None => Some((&mut exit).await),
        };
        let status = match exited {
            Some(status) => status.map_err(|_| MonitorError::ShuttingDown)?,
            None => {
                let err = MonitorError::RuntimeTimedOut {
                    action: self.action,
                };
                tracing::error!(parent: &span, pid = self.pid, error = %err, "killing the runtime");
                if let Err(kill) = sys::kill_group(self.pid, libc::SIGKILL) {
                    tracing::warn!(parent: &span, error = %kill, "kill runtime");
                }
                // Collected by the reaper; waiting for it keeps the order of events plain.
                let _ = tokio::time::timeout(KILL_WAIT, exit).await;
                return Err(err);
            }
        };
        Ok(finished(self.action, span, status))
    }
}

impl Runtime {
    /// Starts `runtime <action>` in a child span of the current one; `reaper` reports its exit.
    pub(crate) fn start(&self, reaper: &Reaper, call: Call<'_>) -> Result<Running, MonitorError> {
        let span = tracing::info_span!(
            "runtime",
            otel.name = format!("runtime {}", call.action),
            runtime.path = %self.path.display(),
            runtime.args = ?call.args,
            runtime.exit_code = tracing::field::Empty,
        );
        let pid = span
            .in_scope(|| self.spawn(call.args, call.env, call.stdio))
            .map_err(|source| MonitorError::SpawnRuntime {
                runtime: self.path.clone(),
                source,
            })?;
        Ok(Running {
            action: call.action,
            pid,
            span,
            exit: reaper.watch(pid),
            _call: self.calls.begin(pid),
        })
    }

    /// Runs `runtime <action>` to completion, or kills it after the runtime timeout. Given a
    /// `console`, it also receives the terminal master the runtime sends there, never waiting
    /// on it past the runtime's exit plus a grace.
    pub(crate) async fn run(
        &self,
        reaper: &Reaper,
        call: Call<'_>,
        console: Option<&ConsoleSocket>,
    ) -> Result<Invocation, MonitorError> {
        let running = self.start(reaper, call)?;
        let deadline = Instant::now().checked_add(self.timeout);
        let Some(console) = console else {
            return running.wait(deadline).await;
        };
        let mut exit = std::pin::pin!(running.wait(deadline));
        let mut receive = std::pin::pin!(console.receive());
        let mut terminal = None;
        // A runtime that fails may hang up on the console socket first: its own error, once
        // it has exited, says more than the console's.
        let mut console_error = None;
        let mut invocation = loop {
            tokio::select! {
                fd = &mut receive, if terminal.is_none() && console_error.is_none() => match fd {
                    Ok(fd) => terminal = Some(fd),
                    Err(err) => console_error = Some(err),
                },
                invocation = &mut exit => break invocation?,
            }
        };
        if !invocation.succeeded() {
            return Ok(invocation);
        }
        if let Some(err) = console_error {
            return Err(MonitorError::Console(err));
        }
        if terminal.is_none() {
            // The runtime sends the master before it exits; allow for the order of our reads.
            let received = tokio::time::timeout(CONSOLE_GRACE, receive)
                .await
                .map_err(|_| {
                    MonitorError::Console(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the runtime exited without sending a terminal",
                    ))
                })?;
            terminal = Some(received.map_err(MonitorError::Console)?);
        }
        invocation.terminal = terminal;
        Ok(invocation)
    }
}

/// An exited runtime, its exit code recorded on its span.
fn finished(action: &'static str, span: tracing::Span, status: ExitStatus) -> Invocation {
    span.record("runtime.exit_code", status.code());
    Invocation {
        action,
        span,
        status,
        output: Vec::new(),
        terminal: None,
    }
}

/// The error of a failed runtime, with its `output`, reported on its span.
pub(crate) fn runtime_error(
    span: &tracing::Span,
    action: &'static str,
    status: ExitStatus,
    output: &[u8],
) -> MonitorError {
    let err = MonitorError::RuntimeFailed {
        action,
        status,
        stderr: String::from_utf8_lossy(output).into_owned(),
    };
    tracing::error!(parent: span, error = %err, "runtime failed");
    err
}

/// The monitor's ends of the pipes a runtime (and then the process it starts) gets as stdio.
#[derive(Debug)]
pub(crate) struct Pipes {
    pub(crate) stdout: PipeReader,
    pub(crate) stderr: PipeReader,
    /// The write end of the input pipe, if one was asked for.
    pub(crate) stdin: Option<OwnedFd>,
}

impl Pipes {
    /// Output pipes, and an input pipe if `stdin` (otherwise input is /dev/null); returns the
    /// monitor's ends and the runtime's.
    pub(crate) fn new(stdin: bool) -> Result<(Self, RuntimeStdio), MonitorError> {
        let (stdout, stdout_w) = stdio::output_pipe().map_err(MonitorError::Pipe)?;
        let (stderr, stderr_w) = stdio::output_pipe().map_err(MonitorError::Pipe)?;
        let mut runtime_stdio = RuntimeStdio::piped_output(stdout_w, stderr_w);
        let stdin = match stdin {
            true => {
                let (read, write) = sys::pipe().map_err(MonitorError::Pipe)?;
                runtime_stdio.stdin = read.into();
                Some(write)
            }
            false => None,
        };
        let pipes = Self {
            stdout,
            stderr,
            stdin,
        };
        Ok((pipes, runtime_stdio))
    }

    /// The input pipe, registered with the async runtime.
    pub(crate) fn take_stdin(&mut self) -> Result<Option<pipe::Sender>, MonitorError> {
        self.stdin
            .take()
            .map(pipe::Sender::from_owned_fd)
            .transpose()
            .map_err(MonitorError::Pipe)
    }

    /// What a runtime that has exited wrote to the output pipes (all of it is there by then):
    /// its error output first.
    pub(crate) fn runtime_output(&mut self) -> Vec<u8> {
        let mut output = stdio::read_available(&mut self.stderr);
        output.extend(stdio::read_available(&mut self.stdout));
        output
    }
}
