//! Terminal containers: runc creates the pseudo-terminal and passes its master to the monitor
//! over a console socket (`--console-socket`); the monitor owns the master from then on.

use std::io;
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

impl ConsoleSocket {
    /// Listens on a fresh socket in the temporary directory (its path must fit `sun_path`,
    /// since runc connects by path). Only the owner may connect.
    pub(crate) fn bind() -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "conmond-term-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        let listener = UnixListener::bind(SocketPath::new(&path)?.get())?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
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
        // Best effort: a leftover socket in the temporary directory is harmless.
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
