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
use std::rc::Rc;

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use crate::logs::Stream;

/// Largest output payload in one packet.
const PAYLOAD: usize = 8191;
/// Packets queued per client before it counts as too slow.
const CLIENT_QUEUE: usize = 1024;
/// The end-of-output packet.
const DONE: [u8; 1] = [0];

type Packet = Rc<[u8]>;

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

    fn subscribe(&self) -> mpsc::Receiver<Packet> {
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

    async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
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

    fn close(&self) {
        self.0.borrow_mut().take();
    }
}

/// Serves one attach client until the output ends or the client leaves.
pub(crate) async fn serve_client(
    attachments: &Attachments,
    stdin: &Stdin,
    connection: AsyncFd<File>,
    stop_after_stdin_eof: bool,
) -> io::Result<()> {
    let mut output = attachments.subscribe();
    let mut input_open = true;
    let mut buf = vec![0; PAYLOAD + 1];
    loop {
        tokio::select! {
            packet = output.recv() => {
                let Some(packet) = packet else { return Ok(()) };
                send_packet(&connection, &packet).await?;
                if *packet == DONE {
                    return Ok(());
                }
            }
            guard = connection.readable(), if input_open => {
                let mut guard = guard?;
                match guard.try_io(|fd| fd.get_ref().read(&mut buf)) {
                    Ok(Ok(0)) => {
                        input_open = false;
                        if stop_after_stdin_eof {
                            stdin.close();
                            return Ok(());
                        }
                    }
                    Ok(Ok(n)) => stdin.write_all(&buf[..n]).await?,
                    Ok(Err(err)) => return Err(err),
                    Err(_would_block) => {}
                }
            }
        }
    }
}

async fn send_packet(connection: &AsyncFd<File>, packet: &[u8]) -> io::Result<()> {
    loop {
        let mut guard = connection.writable().await?;
        match guard.try_io(|fd| fd.get_ref().write(packet)) {
            Ok(result) => return result.map(drop),
            Err(_would_block) => {}
        }
    }
}
