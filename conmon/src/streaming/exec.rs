//! A streaming exec session: `runtime exec` started when the client connects, its stdio carried
//! over the websocket (a terminal or pipes), its exit reported as a Kubernetes `Status`.
//!
//! Output is read until end of file after the exit, so nothing the command wrote is lost. The
//! session is attachable (`attachContainer` with its session ID) while it runs. A client that
//! disconnects takes its command with it: the process is killed, so nothing is left running
//! that no one can reach. [`serve`] meets the process only through [`StartedExec`] (its exit,
//! its output readers, its I/O hub) and the kill function it is given, so it runs on fakes too.

use std::collections::BTreeMap;
use std::rc::Rc;

use tokio::io::AsyncRead;
use tokio::time::Instant;

use super::channel::{Channels, ClientGone, ClientMessage, apply_input};
use super::protocol;
use crate::error::{MonitorError, error_chain};
use crate::exec::{DRAIN_AFTER_EXIT, ExecStart, KILL_WAIT, StartedExec, kill_command};
use crate::io_hub::ProcessIo;
use crate::monitor::Monitor;
use crate::reaper::ExitStatus;
use crate::stdio;
use crate::stream::Stream;
use conmon_proto::types::ServeExec;

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
    let served = serve(&request, process, kill_command, &mut channels).await;
    container.remove_exec_session(session_id);
    io.finish();
    report(channels, served).await;
}

async fn fail(channels: Channels, err: &MonitorError) {
    let message = error_chain(err);
    tracing::error!(error = %message, "exec failed");
    let status = protocol::internal_error(channels.protocol, &message);
    channels.finish(Some(status)).await;
}

/// Ends the session with the process's exit status; a client that left gets nothing.
async fn report(channels: Channels, served: Result<ExitStatus, ClientGone>) {
    if let Ok(status) = served {
        tracing::info!(exit_code = status.code(), "exec exited");
        let status = protocol::exit_status(channels.protocol, status.code());
        channels.finish(status).await;
    }
}

/// Carries the process's stdio until it exited and its output ended. A client that leaves
/// first gets its process killed with `kill`.
async fn serve<R: AsyncRead + Unpin>(
    request: &ServeExec,
    mut process: StartedExec<R>,
    kill: impl FnOnce(u32),
    channels: &mut Channels,
) -> Result<ExitStatus, ClientGone> {
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
                read = stdio::read_owned(&mut process.stdout), if stdout_open => {
                    let read = ReadOutcome { stream: Stream::Stdout, wanted: request.stdout, read };
                    stdout_open = forward(channels, &process.io, read).await?;
                }
                read = read_stderr(process.stderr.as_mut()), if stderr_open => {
                    let read = ReadOutcome { stream: Stream::Stderr, wanted: request.stderr, read };
                    stderr_open = forward(channels, &process.io, read).await?;
                }
                message = channels.receive() => match message {
                    ClientMessage::Input(incoming) => {
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
        kill(process.pid);
        if tokio::time::timeout(KILL_WAIT, process.exit).await.is_err() {
            tracing::warn!(pid = process.pid, "killed exec not reaped in time");
        }
    }
    result
}

async fn read_stderr<R: AsyncRead + Unpin>(
    stderr: Option<&mut R>,
) -> std::io::Result<Option<Vec<u8>>> {
    match stderr {
        Some(stderr) => stdio::read_owned(stderr).await,
        None => std::future::pending().await,
    }
}

/// The outcome of one read of an output stream.
struct ReadOutcome {
    stream: Stream,
    /// Whether the client asked for this stream.
    wanted: bool,
    read: std::io::Result<Option<Vec<u8>>>,
}

/// Sends what was read to the client (if it asked for that stream) and to the process's other
/// subscribers; returns whether the stream is still open.
async fn forward(
    channels: &mut Channels,
    io: &ProcessIo,
    read: ReadOutcome,
) -> Result<bool, ClientGone> {
    let data = match &read.read {
        Ok(None) => return Ok(false),
        Ok(Some(data)) => data.as_slice(),
        Err(err) => {
            tracing::warn!(stream = ?read.stream, error = %err, "read exec output");
            return Ok(false);
        }
    };
    io.broadcast(read.stream, data);
    if read.wanted {
        let channel = protocol::output_channel(read.stream);
        channels.send_frame(channel, data).await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use futures::{SinkExt as _, StreamExt as _};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
    use tokio::net::unix::pipe;
    use tokio::sync::oneshot;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::{Bytes, Message};

    use super::super::channel::Transport;
    use super::super::protocol::Protocol;
    use super::*;
    use conmon_proto::types::CgroupManager;

    const PID: u32 = 42;

    fn request() -> ServeExec {
        ServeExec {
            id: "c".into(),
            command: vec!["cat".into()],
            tty: false,
            stdin: true,
            stdout: true,
            stderr: true,
            cgroup_manager: CgroupManager::Cgroupfs,
        }
    }

    /// A v5 websocket over an in-memory pipe: the session's channels and the client's end.
    async fn connect() -> (Channels, WebSocketStream<DuplexStream>) {
        let (server, client) = tokio::io::duplex(64 * 1024);
        let server: Box<dyn Transport> = Box::new(server);
        let socket = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (Channels::websocket(socket, Protocol::V5), client)
    }

    /// The fake command's ends: its exit, its input (a real pipe) and its two outputs.
    struct Command {
        exit: oneshot::Sender<ExitStatus>,
        stdin: pipe::Receiver,
        stdout: DuplexStream,
        stderr: DuplexStream,
    }

    /// A started exec whose OS side is [`Command`].
    fn fake() -> (StartedExec<DuplexStream>, Command) {
        let (exit, exited) = oneshot::channel();
        let (stdin_tx, stdin) = pipe::pipe().expect("a pipe");
        let (stdout, stdout_reader) = tokio::io::duplex(1024);
        let (stderr, stderr_reader) = tokio::io::duplex(1024);
        let process = StartedExec {
            pid: PID,
            exit: exited,
            stdout: stdout_reader,
            stderr: Some(stderr_reader),
            io: Rc::new(ProcessIo::new(Some(stdin_tx), None)),
        };
        let command = Command {
            exit,
            stdin,
            stdout,
            stderr,
        };
        (process, command)
    }

    /// The next binary message the client gets.
    async fn next_binary(client: &mut WebSocketStream<DuplexStream>) -> Vec<u8> {
        loop {
            match client.next().await {
                Some(Ok(Message::Binary(bytes))) => return bytes.to_vec(),
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
    }

    async fn send(client: &mut WebSocketStream<DuplexStream>, bytes: &'static [u8]) {
        let message = Message::Binary(Bytes::from_static(bytes));
        client.send(message).await.expect("session is listening");
    }

    #[tokio::test(start_paused = true)]
    async fn exec_session_carries_stdio_and_reports_the_exit_status() {
        let (mut channels, mut client) = connect().await;
        let (process, command) = fake();
        let Command {
            exit,
            mut stdin,
            mut stdout,
            mut stderr,
        } = command;
        let killed = Cell::new(None);
        let request = request();
        let session = async {
            let kill = |pid| killed.set(Some(pid));
            let served = serve(&request, process, kill, &mut channels).await;
            report(channels, served).await;
        };
        let client_side = async {
            assert_eq!(
                next_binary(&mut client).await,
                [protocol::STDOUT],
                "greeting"
            );
            send(&mut client, b"\x00hello\n").await;
            // v5's close signal for stdin ends the command's input.
            send(&mut client, &[255, protocol::STDIN]).await;
            let mut input = Vec::new();
            stdin.read_to_end(&mut input).await.unwrap();
            assert_eq!(input, b"hello\n");

            stdout.write_all(b"out").await.unwrap();
            assert_eq!(next_binary(&mut client).await, b"\x01out");
            stderr.write_all(b"err").await.unwrap();
            assert_eq!(next_binary(&mut client).await, b"\x02err");

            exit.send(ExitStatus::Exited(3)).unwrap();
            drop((stdout, stderr));
            let status = next_binary(&mut client).await;
            assert_eq!(status[0], protocol::STATUS);
            let status: serde_json::Value = serde_json::from_slice(&status[1..]).unwrap();
            assert_eq!(status["reason"], "NonZeroExitCode");
            assert_eq!(status["details"]["causes"][0]["message"], "3");
            let Some(Ok(Message::Close(Some(close)))) = client.next().await else {
                panic!("no close frame");
            };
            assert_eq!(close.reason, "done");
        };
        tokio::join!(session, client_side);
        assert_eq!(killed.get(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn exec_output_is_read_to_the_end_after_the_exit() {
        let (mut channels, mut client) = connect().await;
        let (process, command) = fake();
        let served = async { serve(&request(), process, |_| {}, &mut channels).await };
        let client_side = async {
            next_binary(&mut client).await;
            command.exit.send(ExitStatus::Exited(0)).unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut stdout = command.stdout;
            stdout.write_all(b"late").await.unwrap();
            assert_eq!(next_binary(&mut client).await, b"\x01late");
            drop((stdout, command.stderr));
        };
        let (served, ()) = tokio::join!(served, client_side);
        assert_eq!(served.ok(), Some(ExitStatus::Exited(0)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_leaves_takes_its_exec_with_it() {
        let (mut channels, mut client) = connect().await;
        let (process, command) = fake();
        let exit = Cell::new(Some(command.exit));
        let killed = Cell::new(None);
        let kill = |pid| {
            killed.set(Some(pid));
            if let Some(exit) = exit.take() {
                let _ = exit.send(ExitStatus::Signaled(libc::SIGKILL));
            }
        };
        let served = async { serve(&request(), process, kill, &mut channels).await };
        let client_side = async {
            next_binary(&mut client).await;
            client.close(None).await.unwrap();
        };
        let (served, ()) = tokio::join!(served, client_side);
        assert!(matches!(served, Err(ClientGone)));
        assert_eq!(killed.get(), Some(PID));
    }
}
