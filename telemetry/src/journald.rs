//! A minimal client of journald's native protocol ([`SOCKET`]), for log lines of a process
//! ([`LogOutput::Journald`](crate::LogOutput)) and for container logs.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// journald's native-protocol socket.
pub const SOCKET: &str = "/run/systemd/journal/socket";

/// An unbound datagram socket connected to journald.
#[derive(Debug)]
pub struct Journald {
    socket: UnixDatagram,
    buf: Vec<u8>,
}

impl Journald {
    /// Connects to the local journald; fails when journald does not run here.
    pub fn connect() -> io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(SOCKET)?;
        Ok(Self {
            socket,
            buf: Vec::new(),
        })
    }

    /// Sends one entry (`fields` are journal field names and values). Values may hold any
    /// bytes, newlines included (the binary-safe form of the protocol is used for those).
    pub fn send(&mut self, fields: &[(&str, &[u8])]) -> io::Result<()> {
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

/// Sends each formatted log line to the journal as one entry, with a priority from its level.
#[derive(Debug)]
pub(crate) struct LineWriter {
    journald: Mutex<Journald>,
    identifier: &'static [u8],
}

impl LineWriter {
    pub(crate) fn new(journald: Journald, identifier: &'static str) -> Self {
        Self {
            journald: Mutex::new(journald),
            identifier: identifier.as_bytes(),
        }
    }

    fn entry(&self, priority: &'static [u8]) -> Entry<'_> {
        Entry {
            writer: self,
            priority,
            buf: Vec::new(),
        }
    }
}

impl<'a> MakeWriter<'a> for LineWriter {
    type Writer = Entry<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        self.entry(b"6")
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        self.entry(match *meta.level() {
            Level::ERROR => b"3",
            Level::WARN => b"4",
            Level::INFO => b"6",
            Level::DEBUG | Level::TRACE => b"7",
        })
    }
}

/// One log line being formatted; sent when dropped.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    writer: &'a LineWriter,
    priority: &'static [u8],
    buf: Vec<u8>,
}

impl Write for Entry<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        let message = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        if let Ok(mut journald) = self.writer.journald.lock() {
            // A log line that cannot be delivered has nowhere else to go.
            let _ = journald.send(&[
                ("MESSAGE", message),
                ("PRIORITY", self.priority),
                ("SYSLOG_IDENTIFIER", self.writer.identifier),
            ]);
        }
    }
}
