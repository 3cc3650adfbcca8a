//! `attachContainer`: a container's output fanned out to the clients of a SOCK_SEQPACKET
//! socket, and their input written to the container's stdin.
//!
//! Framing (conmon's, as conmon-rs uses it): each packet to a client is a type byte (2 stdout,
//! 3 stderr) and at most 8191 bytes of output; a single 0 byte ends the session once the
//! container's output has ended. Clients send raw stdin bytes. Output produced before a client
//! attached is not replayed. A client too slow to take its packets is detached, never stalling
//! the container or other clients.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use opentelemetry::trace::SpanContext;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;

use crate::listener::SocketPath;
use crate::logs::Stream;
use crate::sys;
use conmon_telemetry::propagation;

/// Largest output payload in one packet.
const PAYLOAD: usize = 8191;
/// Packets queued per client before it counts as too slow.
const CLIENT_QUEUE: usize = 1024;
/// The end-of-output packet.
const DONE: [u8; 1] = [0];

pub(crate) type Packet = Rc<[u8]>;

/// What one packet carries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Output<'a> {
    /// Output of one stream.
    Data(Stream, &'a [u8]),
    /// The output has ended.
    Done,
}

/// Reads a packet made by [`Attachments::broadcast`] or [`Attachments::finish`].
pub(crate) fn decode(packet: &[u8]) -> Output<'_> {
    match packet.split_first() {
        Some((2, data)) => Output::Data(Stream::Stdout, data),
        Some((3, data)) => Output::Data(Stream::Stderr, data),
        _ => Output::Done,
    }
}

/// The stdio of a process that clients can attach to: a container or an exec session.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// Who gets the output.
    pub(crate) attachments: Attachments,
    /// Where clients' input goes.
    pub(crate) stdin: Stdin,
    /// The terminal master, for processes on a terminal (resizing).
    pub(crate) terminal: Option<OwnedFd>,
    ended: watch::Sender<bool>,
}

impl Endpoint {
    pub(crate) fn new(stdin: Option<pipe::Sender>, terminal: Option<OwnedFd>) -> Self {
        Self {
            attachments: Attachments::default(),
            stdin: Stdin::new(stdin),
            terminal,
            ended: watch::Sender::new(false),
        }
    }

    /// The process's output has ended: every client gets the end packet, and attach sockets
    /// close.
    pub(crate) fn finish(&self) {
        self.attachments.finish();
        self.ended.send_replace(true);
    }

    /// Resolves once [`Endpoint::finish`] was called.
    pub(crate) async fn ended(&self) {
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// Sets the terminal's size; `Ok(false)` when the process has no terminal.
    pub(crate) fn resize(&self, width: u16, height: u16) -> io::Result<bool> {
        match &self.terminal {
            Some(terminal) => sys::set_window_size(terminal.as_fd(), height, width).map(|()| true),
            None => Ok(false),
        }
    }
}

/// The attach clients of one container.
#[derive(Debug, Default)]
pub(crate) struct Attachments {
    clients: RefCell<Vec<mpsc::Sender<Packet>>>,
}

impl Attachments {
    /// Offers a chunk of output to every client.
    pub(crate) fn broadcast(&self, stream: Stream, chunk: &[u8]) {
        let mut clients = self.clients.borrow_mut();
        if clients.is_empty() {
            return;
        }
        let kind = if stream == Stream::Stdout { 2 } else { 3 };
        for piece in chunk.chunks(PAYLOAD) {
            let mut packet = Vec::with_capacity(piece.len() + 1);
            packet.push(kind);
            packet.extend_from_slice(piece);
            let packet: Packet = packet.into();
            clients.retain(|client| match client.try_send(packet.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!("attach client does not keep up with the output; detached");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
    }

    /// The container's output has ended: every client gets the end packet.
    pub(crate) fn finish(&self) {
        for client in self.clients.borrow_mut().drain(..) {
            let _ = client.try_send(Packet::from(&DONE[..]));
        }
    }

    /// A new client: it gets the output from now on, until [`Attachments::finish`].
    pub(crate) fn subscribe(&self) -> mpsc::Receiver<Packet> {
        let (sender, receiver) = mpsc::channel(CLIENT_QUEUE);
        self.clients.borrow_mut().push(sender);
        receiver
    }
}

/// The container's stdin, shared by its attach clients; closing it ends the container's input.
#[derive(Debug, Default)]
pub(crate) struct Stdin(RefCell<Option<Rc<pipe::Sender>>>);

impl Stdin {
    pub(crate) fn new(sender: Option<pipe::Sender>) -> Self {
        Self(RefCell::new(sender.map(Rc::new)))
    }

    pub(crate) async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        let Some(sender) = self.0.borrow().clone() else {
            return Ok(());
        };
        while !bytes.is_empty() {
            sender.writable().await?;
            match sender.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    pub(crate) fn close(&self) {
        self.0.borrow_mut().take();
    }
}

/// Serves `endpoint` on a SOCK_SEQPACKET socket at `path` until its output ends; the socket is
/// then removed. `name` says whose stdio it is, in logs. Each client is served in a span that
/// is a child of `origin` (the attach request).
pub(crate) fn serve_socket(
    endpoint: Rc<Endpoint>,
    path: &Path,
    stop_after_stdin_eof: bool,
    name: String,
    origin: SpanContext,
) -> io::Result<()> {
    let listener = bind_socket(path)?;
    let path = path.to_owned();
    tokio::task::spawn_local(async move {
        loop {
            tokio::select! {
                guard = listener.readable() => {
                    let Ok(mut guard) = guard else { break };
                    match sys::accept(listener.get_ref().as_fd()) {
                        Ok(connection) => {
                            let endpoint = endpoint.clone();
                            let span = tracing::info_span!(parent: None, "attach client", otel.kind = "server", attach.target = %name);
                            propagation::set_parent_context(&span, &origin);
                            tokio::task::spawn_local(async move {
                                tracing::info!("attach client connected");
                                let served = match sys::async_fd(connection) {
                                    Ok(connection) => serve_client(&endpoint, connection, stop_after_stdin_eof).await,
                                    Err(err) => Err(err),
                                };
                                match served {
                                    Ok(()) => tracing::info!("attach client ended"),
                                    Err(err) => tracing::info!(error = %err, "attach client ended"),
                                }
                            }.instrument(span));
                        }
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                        Err(err) => {
                            tracing::warn!(attach = %name, error = %err, "accept attach client");
                            break;
                        }
                    }
                }
                () = endpoint.ended() => break,
            }
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

/// Binds the attach socket (owner-only), replacing a stale one at `path`.
fn bind_socket(path: &Path) -> io::Result<AsyncFd<File>> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let address = SocketPath::replacing(path)?;
    let listener = sys::seqpacket_listener(address.get())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    sys::async_fd(listener)
}

/// Serves one attach client until the output ends or the client leaves.
async fn serve_client(
    endpoint: &Endpoint,
    connection: AsyncFd<File>,
    stop_after_stdin_eof: bool,
) -> io::Result<()> {
    let stdin = &endpoint.stdin;
    let mut output = endpoint.attachments.subscribe();
    let mut input_open = true;
    let mut buf = vec![0; PAYLOAD + 1];
    loop {
        tokio::select! {
            packet = output.recv() => {
                let Some(packet) = packet else { return Ok(()) };
                if let Err(err) = send_packet(&connection, &packet).await {
                    // The client left; what it wrote before leaving is still the container's.
                    if input_open {
                        forward_pending_input(&connection, stdin, &mut buf).await;
                    }
                    return Err(err);
                }
                if *packet == DONE {
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
