//! Terminal containers: runc creates the pseudo-terminal and passes its master to the monitor
//! over a console socket (`--console-socket`); the monitor owns the master from then on.

use std::io;
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;
use tokio::net::unix::pipe;

use crate::io_hub::ProcessIo;
use crate::sys;
use conmon_proto::socket_path::SocketPath;

/// A listening console socket, removed when dropped.
#[derive(Debug)]
pub(crate) struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

/// Longest console socket path: runc connects by path, which must fit `sun_path`.
const MAX_SOCKET_PATH: usize = 107;
/// Length of a console socket's name: 16 random hex digits and `.sock`.
const SOCKET_NAME_LEN: usize = 21;

/// The monitor's private directory for console sockets (mode 0700): `term/` in the runtime
/// directory when socket paths there fit `sun_path`, else a fresh directory with an
/// unpredictable name in the temporary directory. Nobody else can create, replace or connect
/// to a socket in it.
pub(crate) fn console_dir(runtime_dir: &Path) -> io::Result<PathBuf> {
    let preferred = runtime_dir.join("term");
    if preferred.as_os_str().len() + 1 + SOCKET_NAME_LEN <= MAX_SOCKET_PATH {
        match std::fs::create_dir(&preferred) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => return Err(err),
            _ => {}
        }
        // The runtime directory is the engine's and ours; still, never trust a link there.
        if !std::fs::symlink_metadata(&preferred)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("'{}' is not a directory", preferred.display()),
            ));
        }
        std::fs::set_permissions(&preferred, std::fs::Permissions::from_mode(0o700))?;
        return Ok(preferred);
    }
    let name = format!("conmond-{}", conmon_telemetry::ids::random_hex(8)?);
    let private = std::env::temp_dir().join(name);
    // Created exclusively: a directory someone planted there makes this fail, not ours.
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    Ok(private)
}

impl ConsoleSocket {
    /// Listens on a fresh socket with an unpredictable name in `dir` (see [`console_dir`]).
    pub(crate) fn bind(dir: &Path) -> io::Result<Self> {
        let name = format!("{}.sock", conmon_telemetry::ids::random_hex(8)?);
        let path = dir.join(name);
        let listener = UnixListener::bind(SocketPath::new(&path)?.get())?;
        Ok(Self { listener, path })
    }

    /// The path to pass as `--console-socket`.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the runtime to connect and send the terminal master.
    pub(crate) async fn receive(&self) -> io::Result<OwnedFd> {
        let (stream, _) = self.listener.accept().await?;
        loop {
            stream.readable().await?;
            match sys::recv_fd(stream.as_fd()) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                result => return result,
            }
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        // Best effort: a leftover socket in the monitor's own directory is harmless.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes over the terminal master of a process: the reader of its output, and its stdio
/// I/O hub (input through the master if `stdin`, resizing).
pub(crate) fn take_over(master: OwnedFd, stdin: bool) -> io::Result<(pipe::Receiver, ProcessIo)> {
    let control = master.try_clone()?;
    sys::set_nonblocking(master.as_fd())?;
    // A terminal is not a FIFO, but reads and writes the same way; readiness comes from epoll.
    let input = match stdin {
        true => Some(pipe::Sender::from_owned_fd_unchecked(control.try_clone()?)?),
        false => None,
    };
    let output = pipe::Receiver::from_owned_fd_unchecked(master)?;
    Ok((output, ProcessIo::new(input, Some(control))))
}
