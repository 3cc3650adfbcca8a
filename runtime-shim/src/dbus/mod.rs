//! A small blocking D-Bus client: enough of the protocol to call systemd's manager and wait for
//! a job's signal. Unix socket addresses, SASL `EXTERNAL` authentication, the `Hello` call,
//! and messages whose bodies the caller marshals with [`Writer`] and reads with [`Reader`].
//!
//! Why not a crate: zbus brings an async runtime layer, serde-based typing and some 40 crates
//! for one call; the `dbus` crate links libdbus (C). This is one method call and one signal.

use std::io::{self, Read as _, Write as _};
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::{Duration, Instant};

pub use self::wire::{Call, Message, Reader, SIGNAL, Writer};
use self::wire::{ERROR, METHOD_RETURN, Value, encode};
use crate::sys;

mod wire;

/// Where the system bus is: `$DBUS_SYSTEM_BUS_ADDRESS`, else the well-known socket.
pub fn system_bus_address() -> String {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .unwrap_or_else(|_| "unix:path=/run/dbus/system_bus_socket".to_owned())
}

/// The largest message accepted (the protocol allows 128 MiB; nothing this client waits for
/// comes near 1 MiB).
const MAX_MESSAGE: usize = 8 << 20;

/// Why a D-Bus exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    /// The address is not a `unix:path=` or `unix:abstract=` one.
    #[error("unsupported D-Bus address '{0}' (only unix:path= and unix:abstract= are)")]
    Address(String),
    /// Nothing listens at the address.
    #[error("connect to D-Bus at '{address}'")]
    Connect {
        /// The bus address.
        address: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The bus refused authentication.
    #[error("D-Bus at '{address}' refused EXTERNAL authentication: {reply}")]
    Auth {
        /// The bus address.
        address: String,
        /// The bus's reply.
        reply: String,
    },
    /// Reading or writing the socket failed.
    #[error("D-Bus connection to '{address}'")]
    Io {
        /// The bus address.
        address: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A message that is not valid D-Bus.
    #[error("malformed D-Bus message from '{address}': {reason}")]
    Malformed {
        /// The bus address.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The callee answered with an error.
    #[error("{member}: {name}: {message}")]
    Remote {
        /// The method called.
        member: String,
        /// The D-Bus error name.
        name: String,
        /// Its message.
        message: String,
    },
    /// No answer in time.
    #[error("no answer from D-Bus at '{address}' within {after:?}")]
    Timeout {
        /// The bus address.
        address: String,
        /// How long was waited.
        after: Duration,
    },
}

/// An authenticated connection to a bus.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    address: String,
    serial: u32,
    deadline: Instant,
    timeout: Duration,
    /// Signals received while waiting for a reply, oldest first.
    signals: Vec<Message>,
}

impl Connection {
    /// Connects to `address`, authenticates and says `Hello`; every later wait on this
    /// connection ends `timeout` from now.
    ///
    /// # Errors
    /// An unsupported address, nothing listening, authentication refused, or no answer.
    pub fn open(address: &str, timeout: Duration) -> Result<Self, DbusError> {
        let stream = connect(address)?;
        let mut connection = Self {
            stream,
            address: address.to_owned(),
            serial: 0,
            deadline: Instant::now() + timeout,
            timeout,
            signals: Vec::new(),
        };
        connection.authenticate()?;
        connection.call(&Call {
            destination: "org.freedesktop.DBus",
            path: "/org/freedesktop/DBus",
            interface: "org.freedesktop.DBus",
            member: "Hello",
            signature: "",
            body: Vec::new(),
        })?;
        Ok(connection)
    }

    fn io_error(&self) -> impl FnOnce(io::Error) -> DbusError + use<> {
        let (address, after) = (self.address.clone(), self.timeout);
        move |source| match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                DbusError::Timeout { address, after }
            }
            _ => DbusError::Io { address, source },
        }
    }

    fn authenticate(&mut self) -> Result<(), DbusError> {
        let uid: String = sys::effective_uid()
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        let hello = format!("\0AUTH EXTERNAL {uid}\r\n");
        self.stream
            .write_all(hello.as_bytes())
            .map_err(self.io_error())?;
        let reply = self.read_line()?;
        if !reply.starts_with("OK ") {
            return Err(DbusError::Auth {
                address: self.address.clone(),
                reply,
            });
        }
        self.stream.write_all(b"BEGIN\r\n").map_err(self.io_error())
    }

    /// One line of the authentication exchange, byte by byte: nothing after it may be read.
    fn read_line(&mut self) -> Result<String, DbusError> {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            if line.len() > 512 {
                return Err(self.malformed("authentication line too long"));
            }
            let mut byte = [0u8];
            self.read_exact(&mut byte)?;
            line.push(byte[0]);
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    fn malformed(&self, reason: &'static str) -> DbusError {
        DbusError::Malformed {
            address: self.address.clone(),
            reason,
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), DbusError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        // A zero timeout would mean "block forever".
        let left = left.max(Duration::from_millis(1));
        self.stream
            .set_read_timeout(Some(left))
            .map_err(self.io_error())?;
        self.stream.read_exact(buf).map_err(self.io_error())
    }

    /// Calls a method and returns its reply; signals that arrive meanwhile are kept for
    /// [`Self::next_signal`].
    ///
    /// # Errors
    /// I/O, a malformed message, no reply in time, or the callee's error reply.
    pub fn call(&mut self, call: &Call<'_>) -> Result<Message, DbusError> {
        self.serial += 1;
        let serial = self.serial;
        let message = encode(serial, call);
        self.stream.write_all(&message).map_err(self.io_error())?;
        loop {
            let message = self.receive()?;
            match message.kind {
                METHOD_RETURN if message.reply_serial == serial => return Ok(message),
                ERROR if message.reply_serial == serial => {
                    let text = if message.signature.starts_with('s') {
                        message.body().string().unwrap_or_default()
                    } else {
                        String::new()
                    };
                    return Err(DbusError::Remote {
                        member: call.member.to_owned(),
                        name: message.error_name,
                        message: text,
                    });
                }
                SIGNAL => self.signals.push(message),
                _ => {}
            }
        }
    }

    /// The next signal (one kept from an earlier call first).
    ///
    /// # Errors
    /// I/O, a malformed message, or none in time.
    pub fn next_signal(&mut self) -> Result<Message, DbusError> {
        if !self.signals.is_empty() {
            return Ok(self.signals.remove(0));
        }
        loop {
            let message = self.receive()?;
            if message.kind == SIGNAL {
                return Ok(message);
            }
        }
    }

    fn receive(&mut self) -> Result<Message, DbusError> {
        let mut fixed = [0u8; 16];
        self.read_exact(&mut fixed)?;
        let big_endian = match fixed[0] {
            b'l' => false,
            b'B' => true,
            _ => return Err(self.malformed("unknown byte order")),
        };
        if fixed[3] != 1 {
            return Err(self.malformed("unknown protocol version"));
        }
        let mut fixed_reader = Reader {
            buf: &fixed,
            pos: 4,
            big_endian,
        };
        let body_len = fixed_reader.u32().map(|n| n as usize);
        let _serial = fixed_reader.u32();
        let fields_len = fixed_reader.u32().map(|n| n as usize);
        let (Some(body_len), Some(fields_len)) = (body_len, fields_len) else {
            return Err(self.malformed("short header"));
        };
        let header_len = (16 + fields_len).next_multiple_of(8);
        if header_len + body_len > MAX_MESSAGE {
            return Err(self.malformed("message too large"));
        }
        let mut rest = vec![0u8; header_len - 16 + body_len];
        self.read_exact(&mut rest)?;
        let mut whole = fixed.to_vec();
        whole.extend_from_slice(&rest);
        let mut message = Message {
            kind: fixed[1],
            big_endian,
            body: whole.split_off(header_len),
            ..Message::default()
        };
        let mut reader = Reader {
            buf: &whole[..16 + fields_len],
            pos: 16,
            big_endian,
        };
        while reader.pos < reader.buf.len() {
            reader.align(8);
            let field = reader
                .header_field()
                .ok_or_else(|| self.malformed("bad header field"))?;
            match field {
                (1, Value::Text(text)) => message.path = text,
                (2, Value::Text(text)) => message.interface = text,
                (3, Value::Text(text)) => message.member = text,
                (4, Value::Text(text)) => message.error_name = text,
                (5, Value::Number(serial)) => message.reply_serial = serial,
                (8, Value::Text(text)) => message.signature = text,
                _ => {}
            }
        }
        Ok(message)
    }
}

fn connect(address: &str) -> Result<UnixStream, DbusError> {
    let unsupported = || DbusError::Address(address.to_owned());
    // Several addresses may be listed; the first one this client can use is taken.
    let mut last_error = None;
    for entry in address.split(';') {
        let Some(params) = entry.strip_prefix("unix:") else {
            continue;
        };
        let socket = params.split(',').find_map(|param| {
            let (key, value) = param.split_once('=')?;
            let value = unescape_address(value)?;
            match key {
                "path" => SocketAddr::from_pathname(value).ok(),
                "abstract" => {
                    use std::os::linux::net::SocketAddrExt as _;
                    SocketAddr::from_abstract_name(value.as_bytes()).ok()
                }
                _ => None,
            }
        });
        let Some(socket) = socket else {
            continue;
        };
        match UnixStream::connect_addr(&socket) {
            Ok(stream) => return Ok(stream),
            Err(source) => last_error = Some(source),
        }
    }
    match last_error {
        Some(source) => Err(DbusError::Connect {
            address: address.to_owned(),
            source,
        }),
        None => Err(unsupported()),
    }
}

/// Address values escape bytes as `%xx`.
fn unescape_address(value: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut bytes = value.bytes();
    while let Some(byte) = bytes.next() {
        if byte == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(byte);
        }
    }
    String::from_utf8(out).ok()
}
