//! The client side of a monitor's attach socket (`attachContainer`): SOCK_SEQPACKET packets of
//! one type byte (2 stdout, 3 stderr) and at most 8191 bytes of output, and a single 0 byte
//! once the output has ended; raw input bytes the other way, shut down for end of input.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use conmon_proto::framing;
use conmon_proto::socket_path::SocketPath;
use socket2::{Domain, SockAddr, Socket, Type};

/// Largest packet either side sends (the monitor reads input in messages of this size).
const PACKET: usize = framing::MAX_PACKET;

/// A connection to an attach socket.
#[derive(Debug)]
pub struct AttachSocket {
    /// A SOCK_SEQPACKET socket. `UnixDatagram` performs the same message-at-a-time send, recv,
    /// timeout and shutdown calls a seqpacket socket takes.
    socket: UnixDatagram,
}

/// One packet from the monitor.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Container output on stdout (all output, on a terminal).
    Stdout(&'a [u8]),
    /// Container output on stderr.
    Stderr(&'a [u8]),
    /// The output has ended.
    Done,
    /// The monitor closed the connection.
    Closed,
}

impl AttachSocket {
    /// Connects to the attach socket at `path` (which may exceed `sun_path`).
    ///
    /// # Errors
    /// A path without a parent or file name, or a failed connect.
    pub fn connect(path: &Path) -> io::Result<Self> {
        let address = SocketPath::new(path)?;
        let socket = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
        socket.connect(&SockAddr::unix(address.get())?)?;
        Ok(Self {
            socket: UnixDatagram::from(OwnedFd::from(socket)),
        })
    }

    /// A second handle on the same connection (one thread writes while another reads).
    ///
    /// # Errors
    /// Out of descriptors.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            socket: self.socket.try_clone()?,
        })
    }

    /// Fails reads that wait longer than `timeout` (`None`: wait forever).
    ///
    /// # Errors
    /// A zero timeout.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_read_timeout(timeout)
    }

    /// Sends input for the container's stdin.
    ///
    /// # Errors
    /// The connection failed.
    pub fn send_input(&self, bytes: &[u8]) -> io::Result<()> {
        for message in bytes.chunks(PACKET) {
            self.socket.send(message)?;
        }
        Ok(())
    }

    /// Ends this client's input (with `stopAfterStdinEof`, the container's).
    ///
    /// # Errors
    /// The connection failed.
    pub fn close_input(&self) -> io::Result<()> {
        self.socket.shutdown(std::net::Shutdown::Write)
    }

    /// Receives the next packet into `buf`.
    ///
    /// # Errors
    /// The connection failed, the read timed out, or the packet is not conmon's framing.
    pub fn receive<'b>(&self, buf: &'b mut [u8; PACKET]) -> io::Result<Packet<'b>> {
        let n = self.socket.recv(buf)?;
        match &buf[..n] {
            [] => Ok(Packet::Closed),
            [framing::END] => Ok(Packet::Done),
            [framing::STDOUT, data @ ..] => Ok(Packet::Stdout(data)),
            [framing::STDERR, data @ ..] => Ok(Packet::Stderr(data)),
            [kind, ..] => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("attach packet of unknown type {kind}"),
            )),
        }
    }

    /// Writes the output to `stdout` and `stderr` until it ends; returns whether the monitor
    /// said the output ended (rather than just closing).
    ///
    /// # Errors
    /// Reading the socket or writing the output failed.
    pub fn copy_output(
        &self,
        stdout: &mut impl Write,
        stderr: &mut impl Write,
    ) -> io::Result<bool> {
        let mut buf = [0; PACKET];
        loop {
            match self.receive(&mut buf)? {
                Packet::Stdout(data) => {
                    stdout.write_all(data)?;
                    stdout.flush()?;
                }
                Packet::Stderr(data) => {
                    stderr.write_all(data)?;
                    stderr.flush()?;
                }
                Packet::Done => return Ok(true),
                Packet::Closed => return Ok(false),
            }
        }
    }

    /// Sends everything `input` yields, then ends the input.
    ///
    /// # Errors
    /// Reading `input` or the connection failed.
    pub fn copy_input(&self, mut input: impl Read) -> io::Result<()> {
        let mut buf = [0; PACKET];
        loop {
            match input.read(&mut buf) {
                Ok(0) => return self.close_input(),
                Ok(n) => self.send_input(&buf[..n])?,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }
}
