//! Kernel notifications the OOM watcher waits on: an eventfd (cgroup v1's
//! `cgroup.event_control`) and inotify (cgroup v2's `memory.events`).

use std::io;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::path::Path;

/// A non-blocking, close-on-exec eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes an initial value and flags only.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A non-blocking, close-on-exec inotify instance watching `path` for modification and
/// removal.
pub(crate) fn watch_file(path: &Path) -> io::Result<OwnedFd> {
    // SAFETY: inotify_init1 takes flags only.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and is owned by nobody else.
    let inotify = unsafe { OwnedFd::from_raw_fd(fd) };
    let path =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let mask = libc::IN_MODIFY | libc::IN_DELETE_SELF | libc::IN_IGNORED;
    // SAFETY: a NUL-terminated path and a descriptor owned above.
    let rc = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), mask) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(inotify)
}
