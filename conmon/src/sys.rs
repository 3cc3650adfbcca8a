//! The only module with `unsafe` code: thin, documented wrappers over the Linux system calls
//! that std does not expose. Each unsafe block argues why it is sound; the wrappers are safe to
//! call except [`fork`] (use [`fork_single_threaded`], which checks its precondition; see its
//! `# Safety` section).
#![allow(
    unsafe_code,
    reason = "this module is the crate's inventory of unsafe code"
)]

use std::io;
use std::os::fd::{AsFd as _, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

mod fds;
mod namespace;
mod notify;
pub(crate) use fds::{Received, map_fds_at_exec, recv_fd, recv_with_fds};
pub(crate) use namespace::{
    HolderMessage, HolderPlan, HolderStep, RECORD_LEN, bind_mount, seqpacket_pair,
    spawn_namespace_holder, unmount,
};
pub(crate) use notify::{eventfd, watch_file};

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
/// # Safety
/// The process must have a single thread (call it before any runtime or other thread is
/// started): the child inherits only the calling thread, so a lock another thread holds (in
/// the allocator, say) would stay locked in the child forever.
unsafe fn fork() -> io::Result<ForkResult> {
    // SAFETY: the caller guarantees the process is single-threaded, so the child starts with a
    // consistent heap and no locks held by vanished threads.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(ForkResult::Child),
        pid => Ok(ForkResult::Parent(pid.unsigned_abs())),
    }
}

/// Forks the process, after checking it has a single thread ([`fork`]'s precondition); an
/// error names the thread count otherwise.
pub(crate) fn fork_single_threaded() -> io::Result<ForkResult> {
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "cannot fork with {threads} threads running"
        )));
    }
    // SAFETY: this thread is the only one, and only a thread of this process could start
    // another; so the process is still single-threaded at the fork.
    unsafe { fork() }
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

/// Leaves no descriptor inherited from the parent open above stderr. An engine's sockets,
/// pipes or lock files would otherwise stay open for the monitor's whole life (a parent
/// waiting for EOF on a pipe would never see it). When there are any, they are all marked
/// close-on-exec and this program is executed again (same PID, arguments and environment),
/// so the kernel closes them and no object of ours is left owning a closed number. Returns
/// only when there was nothing to close.
pub(crate) fn shed_inherited_fds() -> io::Result<()> {
    use std::os::unix::process::CommandExt as _;
    if !has_fds_above_stderr()? {
        return Ok(());
    }
    // SAFETY: with CLOSE_RANGE_CLOEXEC, close_range closes nothing; it only sets FD_CLOEXEC.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    let mut args = std::env::args_os();
    let mut again = std::process::Command::new("/proc/self/exe");
    if let Some(name) = args.next() {
        again.arg0(name);
    }
    Err(again.args(args).exec())
}

/// Names the process (`comm`, at most 15 bytes) after the file name of `program`, as the kernel
/// names it at exec.
pub(crate) fn set_process_name(program: &std::path::Path) {
    let Some(name) = program.file_name() else {
        return;
    };
    let mut bytes = name.as_encoded_bytes().to_vec();
    bytes.truncate(15);
    let Ok(name) = std::ffi::CString::new(bytes) else {
        return;
    };
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
}

/// Whether the process has a descriptor above stderr besides the one listing them.
fn has_fds_above_stderr() -> io::Result<bool> {
    let mut above_stderr = 0;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let name = entry?.file_name();
        if name
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|fd| fd > 2)
        {
            above_stderr += 1;
        }
    }
    // The directory being read is open too.
    Ok(above_stderr > 1)
}

/// Whether the file system holding `path` is read-only, and the bytes available on it to an
/// unprivileged writer.
pub(crate) fn fs_space(path: &std::path::Path) -> io::Result<(bool, u64)> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: statvfs is plain old data; zeroed is a valid value to be overwritten.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stats` a valid statvfs, both live for the
    // call.
    if unsafe { libc::statvfs(path.as_ptr(), &raw mut stats) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let read_only = stats.f_flag & libc::ST_RDONLY != 0;
    Ok((read_only, stats.f_bavail.saturating_mul(stats.f_frsize)))
}

/// Whether `file` is a network namespace (`NS_GET_NSTYPE`).
pub(crate) fn is_network_namespace(file: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the descriptor's namespace.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), libc::NS_GET_NSTYPE) };
    match kind {
        -1 => match io::Error::last_os_error() {
            // Not a namespace file at all.
            err if err.raw_os_error() == Some(libc::ENOTTY) => Ok(false),
            err => Err(err),
        },
        kind => Ok(kind == libc::CLONE_NEWNET),
    }
}

/// Sends `signal` to every process of process group `pgid` (a runtime and what it started);
/// a group that no longer exists is not an error.
pub(crate) fn kill_group(pgid: u32, signal: i32) -> io::Result<()> {
    let pgid =
        libc::pid_t::try_from(pgid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kill takes plain integers; a negative pid addresses one process group.
    let rc = unsafe { libc::kill(-pgid, signal) };
    if rc == -1 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            return Err(err);
        }
    }
    Ok(())
}

/// Returns the allocator's free memory at the top of the heap and in free pages to the system,
/// after a container's buffers were released (glibc keeps it otherwise).
pub(crate) fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// Sends one byte with `fds` attached as SCM_RIGHTS.
    fn send_fds(socket: &UnixStream, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let raw: Vec<libc::c_int> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let payload = std::mem::size_of_val(raw.as_slice());
        let mut data = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = [0u64; 16];
        // SAFETY: msghdr is plain old data; zeroed is a valid empty header.
        let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a size.
        header.msg_controllen = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
        // SAFETY: header's control fields describe the live `control` buffer.
        let first = unsafe { libc::CMSG_FIRSTHDR(&header) };
        // SAFETY: the buffer holds a whole header for `payload` bytes, so `first` is non-null.
        let cmsg = unsafe { &mut *first };
        cmsg.cmsg_level = libc::SOL_SOCKET;
        cmsg.cmsg_type = libc::SCM_RIGHTS;
        // SAFETY: CMSG_LEN only computes a size.
        cmsg.cmsg_len = unsafe { libc::CMSG_LEN(payload as u32) } as usize;
        // SAFETY: CMSG_DATA computes the payload address inside the control buffer.
        let target = unsafe { libc::CMSG_DATA(cmsg) };
        // SAFETY: the payload has room for `payload` bytes; the source is `raw`.
        unsafe { std::ptr::copy_nonoverlapping(raw.as_ptr().cast(), target, payload) };
        // SAFETY: header points at live buffers sized as declared.
        if unsafe { libc::sendmsg(socket.as_raw_fd(), &header, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
    }

    #[test]
    fn recv_fd_takes_the_one_descriptor_sent() -> io::Result<()> {
        let (a, b) = UnixStream::pair()?;
        let (read, _write) = pipe()?;
        send_fds(&a, &[read.as_fd()])?;
        let received = recv_fd(b.as_fd())?;
        assert_ne!(received.as_raw_fd(), read.as_raw_fd());
        Ok(())
    }

    #[test]
    fn recv_fd_refuses_and_closes_several_descriptors() -> io::Result<()> {
        let (a, b) = UnixStream::pair()?;
        let (read, write) = pipe()?;
        let before = open_fds();
        send_fds(&a, &[read.as_fd(), write.as_fd()])?;
        let err = recv_fd(b.as_fd()).unwrap_err();
        assert!(err.to_string().contains("more than one"), "{err}");
        // Other tests run in parallel threads and open descriptors too: allow for them.
        assert!(open_fds() <= before + 1, "received descriptors leaked");
        Ok(())
    }

    #[test]
    fn recv_fd_reports_truncated_control_data() -> io::Result<()> {
        let (a, b) = UnixStream::pair()?;
        let (read, _write) = pipe()?;
        // More descriptors than the receiver's control buffer holds.
        let many: Vec<BorrowedFd<'_>> = (0..20).map(|_| read.as_fd()).collect();
        send_fds(&a, &many)?;
        let err = recv_fd(b.as_fd()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        Ok(())
    }
}
