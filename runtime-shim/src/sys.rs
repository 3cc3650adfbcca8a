//! The runtime-shim's only unsafe code: signalling monitor processes and connecting to attach
//! sockets.
#![allow(
    unsafe_code,
    reason = "this module is the crate's inventory of unsafe code"
)]

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;

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

/// Connects a SOCK_SEQPACKET socket to the Unix socket `name` in the directory open at `dir`
/// (through `/proc/self/fd`, so the full path may exceed `sun_path`).
pub(crate) fn seqpacket_connect(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    let mut target = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    target.extend_from_slice(name.as_bytes());
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid empty address.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    // One byte stays zero: the terminating NUL.
    if target.len() >= address.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket name too long",
        ));
    }
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (slot, byte) in address.sun_path.iter_mut().zip(&target) {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: socket takes integer arguments only.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket succeeded, so `fd` is open and owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let length = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `address` is a valid, NUL-terminated sockaddr_un of `length` bytes that lives
    // for the call.
    let rc = unsafe { libc::connect(socket.as_raw_fd(), (&raw const address).cast(), length) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}
