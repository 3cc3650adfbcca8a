//! Descriptors passed over Unix sockets (SCM_RIGHTS), and into a child at exec.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;

/// Receives one file descriptor sent with SCM_RIGHTS on a connected Unix stream socket (how
/// runc hands over a terminal's master through `--console-socket`). Every descriptor that
/// arrives is owned at once, so none leaks: a message with more than one, or whose control data
/// was truncated, is an error and closes what did arrive.
pub(crate) fn recv_fd(socket: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // Room for a few descriptors, so that a sender of more is told apart from a truncation.
    let received = recv_with_fds(socket, &mut [0u8; 64], 12)?;
    if received.fds_truncated {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "control message truncated: more descriptors were sent than expected",
        ));
    }
    let mut fds = received.fds;
    match (fds.pop(), fds.is_empty()) {
        (Some(fd), true) => Ok(fd),
        (None, _) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no file descriptor received",
        )),
        (Some(_), false) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "more than one file descriptor received",
        )),
    }
}

/// Takes ownership of every descriptor in the SCM_RIGHTS messages of `header`, which recvmsg
/// filled.
fn received_fds(header: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: header was filled by recvmsg; CMSG_FIRSTHDR only reads its control fields.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(header) };
    while !cmsg.is_null() {
        // SAFETY: cmsg is non-null and points at a header inside the control buffer.
        let message = unsafe { &*cmsg };
        if message.cmsg_level == libc::SOL_SOCKET && message.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN only computes the header's size plus 0.
            let header_len = unsafe { libc::CMSG_LEN(0) } as usize;
            let count =
                message.cmsg_len.saturating_sub(header_len) / std::mem::size_of::<libc::c_int>();
            // SAFETY: cmsg is a valid SCM_RIGHTS header; CMSG_DATA only computes the address
            // of its payload.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
            for index in 0..count {
                // SAFETY: `index < count`, so the offset stays inside the payload.
                let slot = unsafe { data.add(index) };
                // SAFETY: `slot` points at one of the payload's ints, possibly unaligned.
                let fd = unsafe { std::ptr::read_unaligned(slot) };
                // SAFETY: the kernel just installed `fd` in this process for us; nobody else
                // owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: both point into the buffer recvmsg filled; CMSG_NXTHDR bounds-checks
        // against the header's control length and returns null past the end.
        cmsg = unsafe { libc::CMSG_NXTHDR(header, cmsg) };
    }
    fds
}

/// A message received with [`recv_with_fds`].
#[derive(Debug)]
pub(crate) struct Received {
    /// Bytes of data.
    pub(crate) len: usize,
    /// The message was longer than the buffer.
    pub(crate) truncated: bool,
    /// More descriptors were sent than fit: those that did not are closed by the kernel.
    pub(crate) fds_truncated: bool,
    /// Every descriptor that arrived, owned.
    pub(crate) fds: Vec<OwnedFd>,
}

/// Receives one message and up to `max_fds` descriptors on a Unix socket, without waiting.
/// Every descriptor that arrives is owned at once, so none leaks whatever the message holds.
pub(crate) fn recv_with_fds(
    socket: BorrowedFd<'_>,
    data: &mut [u8],
    max_fds: usize,
) -> io::Result<Received> {
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // u64 elements give the alignment cmsghdr requires.
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(u32::try_from(max_fds * 4).unwrap_or(u32::MAX)) };
    let mut control = vec![0u64; (space as usize).div_ceil(8)];
    // SAFETY: msghdr is plain old data; zeroed is a valid empty header.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = control.len() * 8;
    // SAFETY: header points at live buffers (iov, control) sized as declared above.
    let received = unsafe {
        libc::recvmsg(
            socket.as_raw_fd(),
            &mut header,
            libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
        )
    };
    if received == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(Received {
        len: received.unsigned_abs(),
        truncated: header.msg_flags & libc::MSG_TRUNC != 0,
        fds_truncated: header.msg_flags & libc::MSG_CTRUNC != 0,
        fds: received_fds(&header),
    })
}

/// Makes `command`'s child get `fds` as descriptors 3, 4, … in order (they are dup'ed over in
/// the child between fork and exec; the caller keeps its own).
pub(crate) fn map_fds_at_exec(command: &mut Command, fds: &[BorrowedFd<'_>]) {
    use std::os::unix::process::CommandExt as _;
    if fds.is_empty() {
        return;
    }
    let sources: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let first_free = 3 + RawFd::try_from(sources.len()).unwrap_or(RawFd::MAX - 3);
    let hook = move || {
        // Out of the way first: a source may sit where another one goes.
        let mut moved = [0 as RawFd; 256];
        for (slot, source) in moved.iter_mut().zip(&sources) {
            // SAFETY: F_DUPFD_CLOEXEC duplicates an open descriptor; no memory is touched.
            let fd = unsafe { libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, first_free) };
            if fd == -1 {
                return Err(io::Error::last_os_error());
            }
            *slot = fd;
        }
        for (target, fd) in (3..).zip(&moved[..sources.len().min(256)]) {
            // SAFETY: dup2 onto a descriptor number; the copy is not close-on-exec.
            if unsafe { libc::dup2(*fd, target) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec and makes only async-signal-safe calls
    // (fcntl, dup2) on a fixed-size array and on memory allocated before the fork; it does not
    // allocate.
    unsafe { command.pre_exec(hook) };
}
