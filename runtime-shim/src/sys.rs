//! The runtime-shim's only unsafe code: signalling monitor processes, passing descriptors,
//! walking cgroup file systems without following links, asking for the effective user id and
//! a terminal's width.
#![allow(
    unsafe_code,
    reason = "this module is the crate's inventory of unsafe code"
)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};

/// The width of the terminal on `fd`, when it is one and says.
pub(crate) fn terminal_columns(fd: BorrowedFd<'_>) -> Option<u16> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which is valid and
    // exclusively borrowed for the call; `fd` is open for as long as it is borrowed.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &raw mut size) };
    (rc == 0 && size.ws_col > 0).then_some(size.ws_col)
}

/// Sends `signal` to process `pid`; `Ok(false)` when the process does not exist.
pub(crate) fn kill(pid: u32, signal: i32) -> io::Result<bool> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kill takes plain integers; a positive pid addresses exactly one process.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Sends `data` with `fds` attached as one SCM_RIGHTS message on a connected Unix socket.
pub(crate) fn send_with_fds(
    socket: std::os::fd::BorrowedFd<'_>,
    data: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> io::Result<()> {
    let raw: Vec<libc::c_int> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let payload = std::mem::size_of_val(raw.as_slice());
    let payload = u32::try_from(payload).map_err(|_| io::Error::other("too many descriptors"))?;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    // u64 elements give the alignment cmsghdr requires.
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain old data; zeroed is a valid empty header.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    if !raw.is_empty() {
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = space;
        // SAFETY: the header's control buffer is set and non-empty; CMSG_FIRSTHDR only
        // computes its first header's address.
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&header) };
        // SAFETY: CMSG_LEN only computes a size.
        let cmsg_len = unsafe { libc::CMSG_LEN(payload) } as usize;
        // SAFETY: the buffer holds CMSG_SPACE(payload) bytes, so the first header fits, and
        // the u64 elements align it.
        let first = unsafe { &mut *cmsg };
        first.cmsg_level = libc::SOL_SOCKET;
        first.cmsg_type = libc::SCM_RIGHTS;
        first.cmsg_len = cmsg_len;
        // SAFETY: CMSG_DATA only computes the payload's address, inside the buffer.
        let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
        // SAFETY: the payload has room for `raw.len()` ints (CMSG_SPACE(payload)); the
        // regions do not overlap; the buffer may not align ints, so copy bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                raw.as_ptr().cast::<u8>(),
                data.cast::<u8>(),
                std::mem::size_of_val(raw.as_slice()),
            );
        }
    }
    // SAFETY: the header points at `data` (only read) and the control buffer built above; the
    // descriptors are borrowed, so open for the call.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &header, libc::MSG_NOSIGNAL) };
    if sent == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Turns a -1 return into the thread's errno.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens `name` (one path component) in `dir`, never following a symlink: the building block
/// of cgroup walks that must not leave `/sys/fs/cgroup`.
pub(crate) fn open_at(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated string, both live for
    // the call; openat only reads them.
    let fd = check(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, 0o644) })?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates directory `name` in `dir`.
pub(crate) fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: as for `open_at`; mkdirat does not follow a symlink in the last component.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

/// Removes the empty directory `name` in `dir`.
pub(crate) fn rmdir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: as for `open_at`; AT_REMOVEDIR removes only a directory, never through a link.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) }).map(drop)
}

/// This process's effective user id (what D-Bus's EXTERNAL authentication claims).
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
