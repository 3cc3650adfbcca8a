//! `attachContainer`: a process's I/O hub served on a SOCK_SEQPACKET socket, in conmon's
//! framing ([`conmon_proto::framing`]): each packet to a client is a type byte (stdout or
//! stderr) and at most 8191 bytes of output; a single 0 byte ends the session once the
//! process's output has ended. Clients send raw stdin bytes. Output produced before a client
//! attached is not replayed; a client too slow to take its packets is detached by the hub.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::rc::Rc;

use opentelemetry::trace::SpanContext;
use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use tokio::io::unix::AsyncFd;
use tracing::Instrument as _;

use crate::gate::Gate;
use crate::io_hub::{Output, ProcessIo, Stdin};
use crate::metrics;
use crate::stream::Stream;
use crate::sys;
use conmon_proto::framing;
use conmon_proto::socket_path::SocketPath;
use conmon_telemetry::propagation;

/// Clients of one attach socket at most.
const MAX_CLIENTS: usize = 16;

/// Serves `io` on a SOCK_SEQPACKET socket at `path` until its output ends; the socket is then
/// removed. `name` says whose stdio it is, in logs. Each client is served in a span that
/// is a child of `origin` (the attach request).
pub(crate) fn serve_socket(
    io: Rc<ProcessIo>,
    path: &Path,
    stop_after_stdin_eof: bool,
    name: String,
    origin: SpanContext,
) -> io::Result<()> {
    let listener = bind_socket(path)?;
    let path = path.to_owned();
    crate::tasks::spawn_local(async move {
        let gate = Gate::new("attach", MAX_CLIENTS);
        loop {
            let accepted = tokio::select! {
                accepted = accept(&listener) => accepted,
                () = io.ended() => break,
            };
            let Some((connection, permit)) = gate.admit(accepted).await else {
                continue;
            };
            let io = io.clone();
            let span = tracing::info_span!(parent: None, "attach client", otel.kind = "server", attach.target = %name);
            propagation::set_parent_context(&span, &origin);
            let client = async move {
                let _active = metrics::attach_client();
                tracing::info!("attach client connected");
                let served = match sys::async_fd(connection) {
                    Ok(connection) => serve_client(&io, connection, stop_after_stdin_eof).await,
                    Err(err) => Err(err),
                };
                match served {
                    Ok(()) => tracing::info!("attach client ended"),
                    Err(err) => tracing::info!(error = %err, "attach client ended"),
                }
                drop(permit);
            };
            crate::tasks::spawn_local(client.instrument(span));
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

/// Binds the attach socket (owner-only), replacing a stale one at `path`.
pub(crate) fn bind_socket(path: &Path) -> io::Result<AsyncFd<File>> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let address = SocketPath::replacing(path)?;
    let listener = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
    listener.set_nonblocking(true)?;
    listener.bind(&SockAddr::unix(address.get())?)?;
    listener.listen(libc::SOMAXCONN)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    sys::async_fd(listener.into())
}

/// Waits for the next client of the attach socket and accepts it, non-blocking like the
/// listener.
pub(crate) async fn accept(listener: &AsyncFd<File>) -> io::Result<OwnedFd> {
    loop {
        let mut ready = listener.readable().await?;
        match SockRef::from(listener.get_ref()).accept() {
            Ok((connection, _)) => {
                connection.set_nonblocking(true)?;
                return Ok(connection.into());
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
            Err(err) => return Err(err),
        }
    }
}

/// Serves one attach client until the output ends or the client leaves.
async fn serve_client(
    io: &ProcessIo,
    connection: AsyncFd<File>,
    stop_after_stdin_eof: bool,
) -> io::Result<()> {
    let stdin = &io.stdin;
    let mut output = io.subscribe();
    let mut input_open = true;
    let mut buf = vec![0; framing::MAX_PACKET];
    let mut packet = Vec::with_capacity(framing::MAX_PACKET);
    loop {
        tokio::select! {
            message = output.recv() => {
                let Some(message) = message else { return Ok(()) };
                let end = encode(&message, &mut packet);
                if let Err(err) = send_packet(&connection, &packet).await {
                    // The client left; what it wrote before leaving is still the container's.
                    if input_open {
                        forward_pending_input(&connection, stdin, &mut buf).await;
                    }
                    return Err(err);
                }
                if end {
                    return Ok(());
                }
            }
            guard = connection.readable(), if input_open => {
                let mut guard = guard?;
                match guard.try_io(|fd| fd.get_ref().read(&mut buf)) {
                    Ok(Ok(0)) => {
                        input_open = false;
                        // The client still gets the output that follows, up to the end.
                        if stop_after_stdin_eof {
                            stdin.close();
                        }
                    }
                    Ok(Ok(n)) => stdin.write_all(&buf[..n]).await?,
                    Ok(Err(err)) => {
                        forward_pending_input(&connection, stdin, &mut buf).await;
                        return Err(err);
                    }
                    Err(_would_block) => {}
                }
            }
            // Once its input ended, a client that leaves is only noticed by its hang-up.
            hung_up = hang_up(&connection), if !input_open => return hung_up,
        }
    }
}

/// Encodes `message` as one packet into `packet`; returns whether it is the end packet.
fn encode(message: &Output, packet: &mut Vec<u8>) -> bool {
    packet.clear();
    match message {
        Output::Data(stream, data) => {
            packet.push(match stream {
                Stream::Stdout => framing::STDOUT,
                Stream::Stderr => framing::STDERR,
            });
            packet.extend_from_slice(data);
            false
        }
        Output::End => {
            packet.push(framing::END);
            true
        }
    }
}

/// Writes the input messages a departed client left queued to the container's stdin. A
/// client that left with output unread makes the kernel report a reset once, ahead of them.
async fn forward_pending_input(connection: &AsyncFd<File>, stdin: &Stdin, buf: &mut [u8]) {
    let mut reset_reported = false;
    loop {
        match connection.get_ref().read(buf) {
            Ok(0) => return,
            Ok(n) => {
                if stdin.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset && !reset_reported => {
                reset_reported = true;
            }
            Err(_) => return,
        }
    }
}

/// Resolves when the peer closed the connection (not just its sending side).
async fn hang_up(connection: &AsyncFd<File>) -> io::Result<()> {
    loop {
        // The writable readiness is only a way to be woken by the next event on the socket;
        // a hang-up sets its closed flag, which is never cleared.
        let mut guard = connection.writable().await?;
        if guard.ready().is_write_closed() {
            return Ok(());
        }
        guard.clear_ready();
    }
}

async fn send_packet(connection: &AsyncFd<File>, packet: &[u8]) -> io::Result<()> {
    // Try first: `hang_up` may have cleared a writable readiness that still holds.
    match connection.get_ref().write(packet) {
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
        result => return result.map(drop),
    }
    loop {
        let mut guard = connection.writable().await?;
        match guard.try_io(|fd| fd.get_ref().write(packet)) {
            Ok(result) => return result.map(drop),
            Err(_would_block) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_carry_conmons_type_bytes() {
        let mut packet = Vec::new();
        let data = Output::Data(Stream::Stderr, Rc::from(&b"oops"[..]));
        assert!(!encode(&data, &mut packet));
        assert_eq!(packet, b"\x03oops");
        assert!(encode(&Output::End, &mut packet));
        assert_eq!(packet, [0]);
    }
}
