//! The client side of a monitor's fd socket (`startFdSocket`): hands descriptors over for
//! later `createContainer` requests, which name them by the slot numbers returned here.

use std::os::fd::{AsFd as _, BorrowedFd};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::sys;

/// Descriptors one request may carry.
pub const MAX_FDS: usize = 253;

/// Why descriptors could not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum FdSocketError {
    /// Connecting, sending or receiving failed.
    #[error("fd socket {}: {what}", path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The monitor refused the request.
    #[error("fd socket: the monitor refused: {0}")]
    Refused(String),
    /// The answer does not fit the request.
    #[error("fd socket: malformed answer ({0})")]
    Malformed(&'static str),
    /// More than [`MAX_FDS`] at once.
    #[error("fd socket: at most {MAX_FDS} descriptors per request, not {0}")]
    TooMany(usize),
}

/// A connection to a monitor's fd socket. Descriptors it passed that no container took are
/// closed by the monitor when it is dropped.
#[derive(Debug)]
pub struct RemoteFds {
    socket: Socket,
    path: PathBuf,
    request_id: u32,
}

impl RemoteFds {
    /// Connects to the fd socket at `path`.
    ///
    /// # Errors
    /// The socket cannot be reached.
    pub fn connect(path: &Path) -> Result<Self, FdSocketError> {
        let io = |what| {
            move |source| FdSocketError::Io {
                path: path.to_owned(),
                what,
                source,
            }
        };
        let socket = Socket::new(Domain::UNIX, Type::SEQPACKET, None).map_err(io("socket"))?;
        socket
            .connect(&SockAddr::unix(path).map_err(io("address"))?)
            .map_err(io("connect"))?;
        Ok(Self {
            socket,
            path: path.to_owned(),
            request_id: 0,
        })
    }

    /// Hands `fds` over (the monitor gets copies); returns their slot numbers, in order.
    ///
    /// # Errors
    /// I/O failures, too many descriptors, or the monitor's refusal with its reason.
    pub fn send(&mut self, fds: &[BorrowedFd<'_>]) -> Result<Vec<u64>, FdSocketError> {
        if fds.len() > MAX_FDS {
            return Err(FdSocketError::TooMany(fds.len()));
        }
        if fds.is_empty() {
            return Ok(Vec::new());
        }
        self.request_id = self.request_id.wrapping_add(1).max(1);
        let header = (u64::from(self.request_id) << 32) | fds.len() as u64;
        self.request(&header.to_le_bytes(), fds)?;
        let mut answer = vec![0u8; 8 * (MAX_FDS + 1) + 1024];
        let len = self.receive(&mut answer)?;
        let words = answer[..len].chunks_exact(8);
        let mut words = words.map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()));
        let echoed = words
            .next()
            .ok_or(FdSocketError::Malformed("shorter than 8 bytes"))?;
        if echoed >> 32 != u64::from(self.request_id) {
            return Err(FdSocketError::Malformed("another request's id"));
        }
        if echoed & 0xffff_ffff == 0xffff_ffff {
            return Err(FdSocketError::Refused(
                String::from_utf8_lossy(&answer[8..len]).into_owned(),
            ));
        }
        let slots: Vec<u64> = words.collect();
        if echoed != header || slots.len() != fds.len() || len % 8 != 0 {
            return Err(FdSocketError::Malformed("not one slot per descriptor"));
        }
        Ok(slots)
    }

    /// Asks the monitor to close what this connection passed and no container took.
    ///
    /// # Errors
    /// The request could not be sent.
    pub fn close_unused(&mut self) -> Result<(), FdSocketError> {
        self.request(&0u64.to_le_bytes(), &[])
    }

    fn request(&self, header: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), FdSocketError> {
        sys::send_with_fds(self.socket.as_fd(), header, fds).map_err(|source| FdSocketError::Io {
            path: self.path.clone(),
            what: "send",
            source,
        })
    }

    fn receive(&self, buf: &mut [u8]) -> Result<usize, FdSocketError> {
        use std::io::Read as _;
        (&self.socket)
            .read(buf)
            .map_err(|source| FdSocketError::Io {
                path: self.path.clone(),
                what: "receive",
                source,
            })
    }
}
