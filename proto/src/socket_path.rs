//! Unix socket addresses of any length.
//!
//! `sun_path` holds at most 107 bytes, and engines use deep runtime directories. Every socket
//! the monitor binds and every socket a client connects to goes through [`SocketPath`]:
//! `/proc/self/fd/<dirfd>/<name>` after opening the parent directory keeps the address short
//! while the socket lands at the real path.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

/// A short address for a socket at a path of any length; valid while this value lives (it
/// holds the directory open).
#[derive(Debug)]
pub struct SocketPath {
    _dir: File,
    short: PathBuf,
}

impl SocketPath {
    /// The address of the socket at `path`, to bind or connect to.
    ///
    /// # Errors
    /// A path without a file name, or a parent directory that cannot be opened.
    pub fn new(path: &Path) -> io::Result<Self> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "socket path has no file name",
            ));
        };
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(dir)?;
        let short = Path::new("/proc/self/fd")
            .join(dir.as_raw_fd().to_string())
            .join(name);
        Ok(Self { _dir: dir, short })
    }

    /// The address of a socket about to be bound at `path`. A stale socket there (one nobody
    /// listens on) is removed; anything else at `path` is left alone and is an error.
    ///
    /// # Errors
    /// As [`SocketPath::new`]; `AlreadyExists` when `path` is not a socket, `AddrInUse` when
    /// something listens on it; a stale socket that cannot be removed.
    pub fn replacing(path: &Path) -> io::Result<Self> {
        let address = Self::new(path)?;
        match std::fs::symlink_metadata(path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(address),
            Err(err) => return Err(err),
            Ok(found) if !found.file_type().is_socket() => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a socket",
                ));
            }
            Ok(_) => {}
        }
        if address.listened_on()? {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "is a socket in use",
            ));
        }
        match std::fs::remove_file(path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(address),
        }
    }

    /// Whether something listens on the socket (of any type). The probe does not block: a
    /// listener with a full backlog counts as listening.
    fn listened_on(&self) -> io::Result<bool> {
        let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        probe.set_nonblocking(true)?;
        match probe.connect(&SockAddr::unix(&self.short)?) {
            Ok(()) => Ok(true),
            Err(err) if err.raw_os_error() == Some(libc::ECONNREFUSED) => Ok(false),
            // A listener of another type (EPROTOTYPE) or a full backlog (EAGAIN).
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::EPROTOTYPE | libc::EAGAIN | libc::EINPROGRESS)
                ) =>
            {
                Ok(true)
            }
            Err(err) => Err(err),
        }
    }

    /// The short path, for `bind` or `connect`.
    pub fn get(&self) -> &Path {
        &self.short
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn binds_where_the_path_exceeds_sun_path() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let deep = dir.path().join("d".repeat(100)).join("e".repeat(40));
        std::fs::create_dir_all(&deep)?;
        let path = deep.join("conmon.sock");
        assert!(path.as_os_str().len() > 108);
        let bind = |path| UnixListener::bind(SocketPath::replacing(path)?.get());
        let listener = bind(&path)?;
        // Rebinding replaces the (now stale-looking) socket file.
        drop(listener);
        let _listener = bind(&path)?;
        UnixStream::connect(SocketPath::new(&path)?.get())?;
        Ok(())
    }

    #[test]
    fn only_a_stale_socket_is_replaced() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("regular");
        std::fs::write(&file, "keep")?;
        let err = SocketPath::replacing(&file).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&file)?, "keep");

        let path = dir.path().join("sock");
        let live = UnixListener::bind(&path)?;
        let err = SocketPath::replacing(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(live);
        // Closed: the socket file is stale now.
        SocketPath::replacing(&path)?;
        assert!(!path.exists());
        Ok(())
    }

    #[test]
    fn a_path_without_a_name_is_refused() {
        let err = SocketPath::new(Path::new("/")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
