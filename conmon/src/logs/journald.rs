//! A minimal client of journald's native protocol (`/run/systemd/journal/socket`), shared by the
//! container `journald` log driver and conmond's own `--log-driver systemd`.

use std::io;
use std::os::unix::net::UnixDatagram;

const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// An unbound datagram socket connected to journald.
#[derive(Debug)]
pub(crate) struct Journald {
    socket: UnixDatagram,
    buf: Vec<u8>,
}

impl Journald {
    /// Connects to the local journald; fails when journald does not run here.
    pub(crate) fn connect() -> io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(JOURNALD_SOCKET)?;
        Ok(Self {
            socket,
            buf: Vec::new(),
        })
    }

    /// Sends one entry. Values may hold any bytes, newlines included (the binary-safe form of
    /// the protocol is used for those).
    pub(crate) fn send(&mut self, fields: &[(&str, &[u8])]) -> io::Result<()> {
        self.buf.clear();
        for (key, value) in fields {
            self.buf.extend_from_slice(key.as_bytes());
            if value.contains(&b'\n') {
                self.buf.push(b'\n');
                self.buf
                    .extend_from_slice(&(value.len() as u64).to_le_bytes());
            } else {
                self.buf.push(b'=');
            }
            self.buf.extend_from_slice(value);
            self.buf.push(b'\n');
        }
        self.socket.send(&self.buf).map(drop)
    }
}
