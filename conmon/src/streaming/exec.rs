//! A streaming exec session: `runtime exec` started when the client connects, its stdio carried
//! over the websocket (a terminal or pipes), its exit reported as a Kubernetes `Status`.
//!
//! Output is read until end of file after the exit, so nothing the command wrote is lost. The
//! session is attachable (`attachContainer` with its session ID) while it runs. A client that
//! disconnects takes its command with it: the process is killed, so nothing is left running
//! that no one can reach.

use std::collections::BTreeMap;
use std::rc::Rc;

use tokio::time::Instant;

use super::channel;
use super::{Channels, ClientGone, ClientMessage, ServeExec, apply_input};
use crate::attach::Endpoint;
use crate::error::{MonitorError, error_chain};
use crate::exec::{DRAIN_AFTER_EXIT, ExecStart, KILL_WAIT, StartedExec, kill_command};
use crate::logs::Stream;
use crate::monitor::Monitor;
use crate::reaper::ExitStatus;
use crate::stdio::{self, PipeReader};

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
    let result = async {
        channels.greet(request.stdout, request.stderr).await?;
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
                    let read = ReadOutcome { stream: Stream::Stdout, wanted: request.stdout, read, buf: &out_buf };
                    stdout_open = forward(channels, &process.io, read).await?;
                }
                read = read_stderr(process.stderr.as_ref(), &mut err_buf), if stderr_open => {
                    let read = ReadOutcome { stream: Stream::Stderr, wanted: request.stderr, read, buf: &err_buf };
                    stderr_open = forward(channels, &process.io, read).await?;
                }
                message = channels.receive() => match message {
                    ClientMessage::Binary(bytes) => {
                        let Some(incoming) = channel::incoming(channels.protocol, &bytes) else { continue };
                        // A terminal stays open for the output; only a pipe can signal the end.
                        apply_input(&process.io, incoming, &mut stdin_open, !request.tty).await;
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
        kill_command(process.pid);
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
struct ReadOutcome<'a> {
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
    read: ReadOutcome<'_>,
) -> Result<bool, ClientGone> {
    let data = match read.read {
        Ok(0) => return Ok(false),
        Ok(n) => &read.buf[..n],
        Err(err) => {
            tracing::warn!(stream = ?read.stream, error = %err, "read exec output");
            return Ok(false);
        }
    };
    io.attachments.broadcast(read.stream, data);
    if read.wanted {
        let channel = channel::output_channel(read.stream);
        channels.send(channel::frame(channel, data)).await?;
    }
    Ok(true)
}
