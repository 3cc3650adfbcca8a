//! The only module with `unsafe` code: thin, documented wrappers over the Linux system calls
//! that std does not expose. Every wrapper is safe to call; each unsafe block argues why.
#![allow(
    unsafe_code,
    reason = "this module is the crate's inventory of unsafe code"
)]

use std::io;
use std::os::fd::{AsFd as _, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Which side of a [`fork`] the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ForkResult {
    /// The original process; carries the child's PID.
    Parent(u32),
    /// The new process.
    Child,
}

/// Forks the process.
///
/// Must be called while the process has a single thread (before any runtime is built): the
/// child only inherits the calling thread, so locks held by other threads would stay locked.
pub(crate) fn fork() -> io::Result<ForkResult> {
    // SAFETY: the caller guarantees the process is single-threaded, so the child starts with a
    // consistent heap and no locks held by vanished threads.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(ForkResult::Child),
        pid => Ok(ForkResult::Parent(pid.unsigned_abs())),
    }
}

/// Leaves the process immediately with `code`, without running atexit handlers or destructors.
/// Used by the forking parent, whose copies of buffers and handles belong to the child now.
pub(crate) fn exit_immediately(code: i32) -> ! {
    // SAFETY: `_exit` never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Makes this process the child subreaper, so orphaned descendants (container init processes
/// once `runc create` exits, `runc exec -d` processes) are reparented to it and can be waited for.
pub(crate) fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer argument and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every descriptor above stderr. Inherited descriptors (an engine's sockets or lock files)
/// would otherwise stay open for the monitor's whole life and leak into containers.
pub(crate) fn close_inherited_fds() -> io::Result<()> {
    // SAFETY: close_range only closes descriptors; nothing in this single-threaded process owns
    // a descriptor above 2 yet, so no Rust object is left with a dangling fd.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3, u32::MAX, 0) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates a pipe whose both ends are close-on-exec; returns `(read, write)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so fds[0] is a new descriptor owned by nobody else.
    let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above, for fds[1].
    let write = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((read, write))
}

/// Asks the kernel to grow a pipe's buffer to `bytes` (capped by `/proc/sys/fs/pipe-max-size`).
pub(crate) fn set_pipe_size(fd: BorrowedFd<'_>, bytes: i32) -> io::Result<()> {
    // SAFETY: F_SETPIPE_SZ on a borrowed, open pipe descriptor takes an integer.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How a reaped process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitStatus {
    /// It called exit with this status.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

/// Reaps one exited child of this process (or, as subreaper, of an orphaned descendant) without
/// blocking. `Ok(None)` means no child has exited right now, or there are no children at all.
pub(crate) fn reap_one() -> io::Result<Option<(u32, WaitStatus)>> {
    let mut status = 0;
    // SAFETY: `status` is a valid int for waitpid to fill; WNOHANG never blocks.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    match pid {
        0 => Ok(None),
        -1 => {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ECHILD) {
                Ok(None)
            } else {
                Err(err)
            }
        }
        pid => {
            let wait_status = if libc::WIFSIGNALED(status) {
                WaitStatus::Signaled(libc::WTERMSIG(status))
            } else {
                WaitStatus::Exited(libc::WEXITSTATUS(status))
            };
            Ok(Some((pid.unsigned_abs(), wait_status)))
        }
    }
}

/// Sends `signal` to process `pid`. A process that is already gone is not an error.
pub(crate) fn kill(pid: u32, signal: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kill takes plain integers; a positive pid addresses exactly one process.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == -1 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            return Err(err);
        }
    }
    Ok(())
}

/// Sets the file mode creation mask; returns the previous one.
pub(crate) fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask only swaps an integer attribute of the process and cannot fail.
    unsafe { libc::umask(mask) }
}

/// Receives one file descriptor sent with SCM_RIGHTS on a connected Unix stream socket (how
/// runc hands over a terminal's master through `--console-socket`).
pub(crate) fn recv_fd(socket: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut data = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // Room for one control message carrying one descriptor, aligned as cmsghdr requires.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain old data; zeroed is a valid empty header.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: header points at live buffers (iov, control) sized as declared above.
    let received =
        unsafe { libc::recvmsg(socket.as_raw_fd(), &mut header, libc::MSG_CMSG_CLOEXEC) };
    if received == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: header was filled by recvmsg; CMSG_FIRSTHDR only reads its control fields.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&header) };
    if cmsg.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no file descriptor received",
        ));
    }
    // SAFETY: cmsg is non-null and points into `control`, which recvmsg filled.
    let message = unsafe { &*cmsg };
    if message.cmsg_level != libc::SOL_SOCKET || message.cmsg_type != libc::SCM_RIGHTS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected control message",
        ));
    }
    // SAFETY: cmsg is a valid SCM_RIGHTS header inside `control`; CMSG_DATA only computes the
    // address of its payload.
    let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
    // SAFETY: an SCM_RIGHTS payload holds at least one int at `data`, possibly unaligned.
    let fd = unsafe { std::ptr::read_unaligned(data) };
    // SAFETY: the kernel just installed `fd` in this process for us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets a terminal's window size (the kernel then sends SIGWINCH to its foreground group).
pub(crate) fn set_window_size(terminal: BorrowedFd<'_>, rows: u16, columns: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for the call.
    let rc = unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Moves the calling thread into the network namespace open at `namespace`. The thread stays
/// there: only threads that end right after should call this.
pub(crate) fn enter_network_namespace(namespace: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns takes a borrowed, open descriptor and a namespace type; it changes only the
    // calling thread.
    let rc = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Switches `fd` to non-blocking mode.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL on a borrowed, open descriptor.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL on a borrowed, open descriptor with flags derived from F_GETFL.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Registers `fd` (made non-blocking) with the async runtime, as a `File` for read and write.
pub(crate) fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<std::fs::File>> {
    set_nonblocking(fd.as_fd())?;
    // SAFETY: the AsyncFd takes ownership of the File; a File's descriptor stays open and
    // unchanged until it is dropped, which happens only when the AsyncFd is.
    unsafe { tokio::io::unix::AsyncFd::register(std::fs::File::from(fd)) }.map_err(io::Error::from)
}

/// A listening SOCK_SEQPACKET Unix socket at `path` (bound through the parent directory's
/// descriptor, so any path length works), close-on-exec and non-blocking.
pub(crate) fn seqpacket_listener(
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt as _;
    // SAFETY: socket takes integer arguments only.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket succeeded, so `fd` is a new descriptor owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let short = format!("/proc/self/fd/{}/", dir.as_raw_fd());
    let mut path = short.into_bytes();
    path.extend_from_slice(name.as_bytes());
    // SAFETY: sockaddr_un is plain old data; zeroed is a valid empty address.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if path.len() >= address.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket name too long",
        ));
    }
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (slot, byte) in address.sun_path.iter_mut().zip(&path) {
        *slot = *byte as libc::c_char;
    }
    let length = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `address` is a valid, NUL-terminated sockaddr_un of `length` bytes.
    let rc = unsafe { libc::bind(socket.as_raw_fd(), (&raw const address).cast(), length) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listen takes integer arguments only.
    if unsafe { libc::listen(socket.as_raw_fd(), libc::SOMAXCONN) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// Accepts one connection on a listening socket (non-blocking, close-on-exec).
pub(crate) fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers ask accept4 not to report the peer address.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: accept4 succeeded, so `fd` is a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
