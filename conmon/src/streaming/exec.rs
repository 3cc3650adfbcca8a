//! A streaming exec session: `runtime exec` started when the client connects, its stdio carried
//! over the websocket (a terminal or pipes), its exit reported as a Kubernetes `Status`.
//!
//! Output is read until end of file after the exit, so nothing the command wrote is lost. The
//! session is attachable (`attachContainer` with its session ID) while it runs. A client that
//! disconnects takes its command with it: the process is killed, so nothing is left running
//! that no one can reach.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::channel::{self, Incoming};
use super::{Channels, ClientGone, ClientMessage, ServeExec};
use crate::attach::Endpoint;
use crate::error::{MonitorError, error_chain};
use crate::exec::{ExecStart, StartedExec};
use crate::logs::Stream;
use crate::monitor::Monitor;
use crate::reaper::ExitStatus;
use crate::stdio::{self, PipeReader};
use crate::sys;

/// How long output is still read after the command exited, when a process it left behind
/// keeps its output open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How long a killed command may take to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(5);

pub(super) async fn run(
    monitor: &Rc<Monitor>,
    request: ServeExec,
    session_id: &str,
    mut channels: Channels,
) {
    let container = match monitor.running_container(&request.id) {
        Ok(container) => container,
        Err(err) => return fail(channels, &err).await,
    };
    let start = ExecStart {
        id: &request.id,
        command: &request.command,
        cgroup_manager: request.cgroup_manager,
        env: &BTreeMap::new(),
        terminal: request.tty,
        stdin: request.stdin,
    };
    let process = match monitor.start_exec(&start).await {
        Ok(process) => process,
        Err(err) => return fail(channels, &err).await,
    };
    tracing::info!(pid = process.pid, command = ?request.command, tty = request.tty, "exec started");
    container.add_exec_session(session_id, process.io.clone());
    let io = process.io.clone();
    let served = serve(&request, process, &mut channels).await;
    container.remove_exec_session(session_id);
    io.finish();
    if let Ok(status) = served {
        tracing::info!(exit_code = status.code(), "exec exited");
        channels
            .finish(Some(channel::exit_status(status.code())))
            .await;
    }
}

async fn fail(channels: Channels, err: &MonitorError) {
    let message = error_chain(err);
    tracing::error!(error = %message, "exec failed");
    channels
        .finish(Some(channel::internal_error(&message)))
        .await;
}

/// Carries the process's stdio until it exited and its output ended. A client that leaves
/// first gets its process killed.
async fn serve(
    request: &ServeExec,
    mut process: StartedExec,
    channels: &mut Channels,
) -> Result<ExitStatus, ClientGone> {
    let mut out_buf = vec![0; stdio::READ_CHUNK];
    let mut err_buf = vec![0; stdio::READ_CHUNK];
    let mut stdout_open = true;
    let mut stderr_open = process.stderr.is_some();
    let mut stdin_open = request.stdin;
    let mut status = None;
    let mut drain_until = None;
    let greeted = channels.greet(request.stdout, request.stderr).await;
    let result = async {
        greeted?;
        loop {
            if let Some(status) = status
                && !stdout_open
                && !stderr_open
            {
                return Ok(status);
            }
            let drained = async {
                match drain_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = stdio::read_chunk(&process.stdout, &mut out_buf), if stdout_open => {
                    let output = Output { stream: Stream::Stdout, wanted: request.stdout, read, buf: &out_buf };
                    stdout_open = forward(channels, &process.io, output).await?;
                }
                read = read_stderr(process.stderr.as_ref(), &mut err_buf), if stderr_open => {
                    let output = Output { stream: Stream::Stderr, wanted: request.stderr, read, buf: &err_buf };
                    stderr_open = forward(channels, &process.io, output).await?;
                }
                message = channels.receive() => match message {
                    ClientMessage::Binary(bytes) => {
                        let Some(incoming) = channel::incoming(channels.protocol, &bytes) else { continue };
                        // A terminal stays open for the output; only a pipe can signal the end.
                        input(&process.io, incoming, &mut stdin_open, !request.tty).await;
                    }
                    ClientMessage::Ignored => {}
                    ClientMessage::Gone => return Err(ClientGone),
                },
                exited = &mut process.exit, if status.is_none() => {
                    // Only shutdown drops the reaper's sender; the container goes with it.
                    status = Some(exited.unwrap_or(ExitStatus::Signaled(libc::SIGKILL)));
                    drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
                }
                () = drained => {
                    tracing::warn!("output still open after the exec exited; ending the session");
                    stdout_open = false;
                    stderr_open = false;
                }
            }
        }
    }
    .await;
    if result.is_err() && status.is_none() {
        tracing::info!(pid = process.pid, "streaming client left; killing its exec");
        if let Err(err) = sys::kill(process.pid, libc::SIGKILL) {
            tracing::warn!(pid = process.pid, error = %err, "kill exec");
        }
        if tokio::time::timeout(KILL_WAIT, process.exit).await.is_err() {
            tracing::warn!(pid = process.pid, "killed exec not reaped in time");
        }
    }
    result
}

async fn read_stderr(stderr: Option<&PipeReader>, buf: &mut [u8]) -> std::io::Result<usize> {
    match stderr {
        Some(stderr) => stdio::read_chunk(stderr, buf).await,
        None => std::future::pending().await,
    }
}

/// The outcome of one read of an output stream.
struct Output<'a> {
    stream: Stream,
    /// Whether the client asked for this stream.
    wanted: bool,
    read: std::io::Result<usize>,
    buf: &'a [u8],
}

/// Sends what was read to the client (if it asked for that stream) and to attach clients;
/// returns whether the stream is still open.
async fn forward(
    channels: &mut Channels,
    io: &Endpoint,
    output: Output<'_>,
) -> Result<bool, ClientGone> {
    let data = match output.read {
        Ok(0) => return Ok(false),
        Ok(n) => &output.buf[..n],
        Err(err) => {
            tracing::warn!(stream = ?output.stream, error = %err, "read exec output");
            return Ok(false);
        }
    };
    io.attachments.broadcast(output.stream, data);
    if output.wanted {
        let channel = match output.stream {
            Stream::Stdout => channel::STDOUT,
            Stream::Stderr => channel::STDERR,
        };
        channels.send(channel::frame(channel, data)).await?;
    }
    Ok(true)
}

/// Applies a client's message to the process: input, a resize, or the end of input (which
/// closes the process's stdin if `close_stdin`).
pub(super) async fn input(
    io: &Endpoint,
    incoming: Incoming<'_>,
    stdin_open: &mut bool,
    close_stdin: bool,
) {
    match incoming {
        Incoming::Data {
            channel: channel::STDIN,
            data,
        } if *stdin_open => {
            if let Err(err) = io.stdin.write_all(data).await {
                tracing::info!(error = %err, "write to stdin; input closed");
                *stdin_open = false;
            }
        }
        Incoming::Data {
            channel: channel::RESIZE,
            data,
        } => match channel::resize(data) {
            Ok((width, height)) => match io.resize(width, height) {
                Ok(true) => tracing::debug!(width, height, "terminal resized"),
                Ok(false) => tracing::debug!("resize without a terminal ignored"),
                Err(err) => tracing::warn!(error = %err, "resize terminal"),
            },
            Err(message) => tracing::warn!(%message, "resize ignored"),
        },
        Incoming::Close(channel::STDIN) if *stdin_open => {
            *stdin_open = false;
            if close_stdin {
                io.stdin.close();
            }
        }
        Incoming::Data { channel, .. } | Incoming::Close(channel) => {
            tracing::debug!(channel, "client message ignored");
        }
    }
}
