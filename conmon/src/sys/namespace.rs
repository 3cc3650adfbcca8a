//! The namespace holder: a forked child that unshares a pod's namespaces, so that the monitor
//! (still in the host's mount namespace) can bind-mount them, and the mount calls that pin and
//! unpin them.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd as _, OwnedFd};

/// What the holder sends the monitor, one 8-byte record per message: the kind, the failed
/// step and index (for [`HolderMessage::Failed`]), a zero byte, then an errno in native byte
/// order.
pub(crate) const RECORD_LEN: usize = 8;

/// The holder's messages, by their first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HolderMessage {
    /// The user namespace exists; the holder waits for its ID maps (a byte from the monitor).
    UserNamespaceReady,
    /// Every namespace exists and every sysctl is set; the holder waits for a byte from the
    /// monitor (or its hang-up), then exits.
    Ready {
        /// The PID (in the monitor's namespace) of the new PID namespace's init, if one was
        /// created. It lives until the monitor's end of the channel closes.
        init: Option<u32>,
    },
    /// A step failed; the holder exits.
    Failed {
        /// The step.
        step: HolderStep,
        /// Which namespace of [`HolderPlan::namespaces`] for [`HolderStep::Unshare`], which
        /// sysctl for [`HolderStep::Sysctl`].
        index: u8,
        /// The system call's error.
        errno: i32,
    },
}

/// The steps of the holder that can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HolderStep {
    /// `unshare(CLONE_NEWUSER)`.
    UnshareUser,
    /// Waiting for the monitor to write the ID maps.
    AwaitMaps,
    /// `unshare` of the other namespaces.
    Unshare,
    /// Writing one sysctl.
    Sysctl,
    /// Forking the PID namespace's init.
    StartInit,
}

const USER_READY: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

impl HolderStep {
    fn code(self) -> u8 {
        match self {
            Self::UnshareUser => 1,
            Self::AwaitMaps => 2,
            Self::Unshare => 3,
            Self::Sysctl => 4,
            Self::StartInit => 5,
        }
    }
}

impl HolderMessage {
    /// Decodes a record; `None` for anything the holder does not send.
    pub(crate) fn parse(record: &[u8]) -> Option<Self> {
        let record: [u8; RECORD_LEN] = record.try_into().ok()?;
        let errno = i32::from_ne_bytes([record[4], record[5], record[6], record[7]]);
        match record[0] {
            USER_READY => Some(Self::UserNamespaceReady),
            READY => Some(Self::Ready {
                init: u32::try_from(errno).ok().filter(|pid| *pid != 0),
            }),
            FAILED => {
                let step = [
                    HolderStep::UnshareUser,
                    HolderStep::AwaitMaps,
                    HolderStep::Unshare,
                    HolderStep::Sysctl,
                    HolderStep::StartInit,
                ]
                .into_iter()
                .find(|step| step.code() == record[1])?;
                Some(Self::Failed {
                    step,
                    index: record[2],
                    errno,
                })
            }
            _ => None,
        }
    }
}

/// What the holder is to do.
#[derive(Debug)]
pub(crate) struct HolderPlan<'a> {
    /// Create a user namespace first and wait for its ID maps.
    pub(crate) user: bool,
    /// `CLONE_NEW*` flags of the other namespaces, each unshared on its own (so a failure
    /// names its namespace), inside the user namespace if any.
    pub(crate) namespaces: &'a [libc::c_int],
    /// `/proc/sys/...` files and the values to write, in the new namespaces.
    pub(crate) sysctls: &'a [(CString, Vec<u8>)],
}

/// Forks the holder. It talks over `channel`, its end of a SOCK_SEQPACKET pair: records as
/// described at [`RECORD_LEN`] out (the last four bytes of [`HolderMessage::Ready`] carry the
/// init's PID), one byte in when the ID maps are written, and one byte in when the monitor has
/// pinned the namespaces. Returns its PID; the caller must reap it, and the init's too.
pub(crate) fn spawn_namespace_holder(plan: &HolderPlan<'_>, channel: &OwnedFd) -> io::Result<u32> {
    let channel = channel.as_raw_fd();
    // SAFETY: the child runs only `hold_namespaces`, which makes async-signal-safe system
    // calls on memory that was allocated before the fork and ends in `_exit`; so no lock or
    // allocator state another thread of this process held at the fork is ever touched.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => hold_namespaces(plan, channel),
        pid => Ok(pid.unsigned_abs()),
    }
}

/// The holder's whole life. Only async-signal-safe calls: this runs in a fork of a process
/// that may have other threads.
fn hold_namespaces(plan: &HolderPlan<'_>, channel: libc::c_int) -> ! {
    let fail = |step: HolderStep, index: usize| -> ! {
        // Reads errno, without allocating.
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let mut record = [
            FAILED,
            step.code(),
            index.try_into().unwrap_or(u8::MAX),
            0,
            0,
            0,
            0,
            0,
        ];
        record[4..].copy_from_slice(&errno.to_ne_bytes());
        send(channel, &record);
        // SAFETY: `_exit` never returns and has no preconditions.
        unsafe { libc::_exit(1) }
    };
    // Blocking every signal keeps the handlers the monitor installed (which write to the
    // monitor's own pipes) from running here.
    let all = signal_set(None);
    // SAFETY: sets this thread's mask from a filled set; the old mask is not asked for.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut()) };
    // The monitor's descriptors (its RPC socket, containers' pipes) are not the holder's to
    // keep open; `channel` stays open.
    let kept = channel.unsigned_abs();
    if kept > 3 {
        // SAFETY: close_range closes descriptors of this process that no code here uses.
        unsafe { libc::syscall(libc::SYS_close_range, 3, kept - 1, 0) };
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, kept + 1, u32::MAX, 0) };
    if plan.user {
        // SAFETY: unshare takes flags only.
        if unsafe { libc::unshare(libc::CLONE_NEWUSER) } == -1 {
            fail(HolderStep::UnshareUser, 0);
        }
        send(channel, &[USER_READY, 0, 0, 0, 0, 0, 0, 0]);
        let mut byte = [0u8; 1];
        // SAFETY: reads at most one byte into `byte`.
        if unsafe { libc::recv(channel, byte.as_mut_ptr().cast(), 1, 0) } != 1 {
            fail(HolderStep::AwaitMaps, 0);
        }
    }
    for (index, flag) in plan.namespaces.iter().enumerate() {
        // SAFETY: unshare takes flags only.
        if unsafe { libc::unshare(*flag) } == -1 {
            fail(HolderStep::Unshare, index);
        }
    }
    for (index, (path, value)) in plan.sysctls.iter().enumerate() {
        if !write_file(path, value) {
            fail(HolderStep::Sysctl, index);
        }
    }
    // A new PID namespace lives only while its first process, its init, does.
    let mut init: libc::pid_t = 0;
    if plan.namespaces.contains(&libc::CLONE_NEWPID) {
        // SAFETY: as in `spawn_namespace_holder`: the child runs `pod_init` only.
        match unsafe { libc::fork() } {
            -1 => fail(HolderStep::StartInit, 0),
            0 => pod_init(channel),
            pid => init = pid,
        }
    }
    let mut ready = [READY, 0, 0, 0, 0, 0, 0, 0];
    ready[4..].copy_from_slice(&init.to_ne_bytes());
    send(channel, &ready);
    let mut byte = [0u8; 1];
    // SAFETY: reads at most one byte into `byte`: the monitor's go-ahead, or EOF.
    unsafe { libc::recv(channel, byte.as_mut_ptr().cast(), 1, 0) };
    // SAFETY: `_exit` never returns and has no preconditions.
    unsafe { libc::_exit(0) }
}

/// PID 1 of the pod's PID namespace: reaps what is orphaned in it, and ends (taking the
/// namespace's processes with it) when the monitor's end of `channel` closes, so that a
/// monitor that died leaves no namespace behind.
fn pod_init(channel: libc::c_int) -> ! {
    extern "C" fn wake(_: libc::c_int) {}
    // SAFETY: sigaction is plain old data; all-zero is a valid empty action.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = wake as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installs a handler that does nothing, only so that SIGCHLD interrupts ppoll.
    unsafe { libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()) };
    let all_but_sigchld = signal_set(Some(libc::SIGCHLD));
    loop {
        // SAFETY: waitpid with a null status pointer reaps without reporting.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        let mut watch = libc::pollfd {
            fd: channel,
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one pollfd, no timeout, and a signal mask that lets only SIGCHLD in.
        let rc = unsafe { libc::ppoll(&mut watch, 1, std::ptr::null(), &all_but_sigchld) };
        if rc > 0 && watch.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
            // SAFETY: `_exit` never returns and has no preconditions.
            unsafe { libc::_exit(0) }
        }
    }
}

/// Every signal, but `except`.
fn signal_set(except: Option<libc::c_int>) -> libc::sigset_t {
    // SAFETY: sigset_t is plain old data; sigfillset initialises it below.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: fills the local set.
    unsafe { libc::sigfillset(&mut set) };
    if let Some(signal) = except {
        // SAFETY: edits the local set with a valid signal number.
        unsafe { libc::sigdelset(&mut set, signal) };
    }
    set
}

fn send(channel: libc::c_int, record: &[u8]) {
    // SAFETY: sends `record`'s bytes; a failure is seen by the monitor as a missing message.
    unsafe { libc::send(channel, record.as_ptr().cast(), record.len(), 0) };
}

/// Writes `value` to the file at `path` in one call, as sysctl files want.
fn write_file(path: &CString, value: &[u8]) -> bool {
    // SAFETY: `path` is NUL-terminated; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd == -1 {
        return false;
    }
    // SAFETY: writes `value`'s bytes to the descriptor just opened.
    let written = unsafe { libc::write(fd, value.as_ptr().cast(), value.len()) };
    // SAFETY: closes the descriptor opened above, once.
    unsafe { libc::close(fd) };
    usize::try_from(written).is_ok_and(|n| n == value.len())
}

/// A connected SOCK_SEQPACKET pair, close-on-exec: (monitor's end, holder's end).
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills the two-element array on success.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and is owned by nobody else.
    let ours = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above.
    let theirs = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((ours, theirs))
}

/// Bind-mounts the file `source` onto the file open at `target` (an `O_PATH` descriptor, so
/// that no symbolic link is followed on the way).
pub(crate) fn bind_mount(source: &CString, target: BorrowedFd<'_>) -> io::Result<()> {
    let target = proc_fd_path(target);
    // SAFETY: both paths are NUL-terminated; a bind mount reads no filesystem type or data.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Detaches the mount at `path`, without following a symbolic link there.
pub(crate) fn unmount(path: &CString) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated.
    let rc = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn proc_fd_path(fd: BorrowedFd<'_>) -> CString {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    CString::new(path).unwrap_or_default()
}
