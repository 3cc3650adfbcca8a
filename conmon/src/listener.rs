//! The RPC socket, bound so that runtime directories of any length work.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::UnixListener;
use std::path::Path;

/// Binds a Unix stream socket at `path`, replacing a stale one.
///
/// `sun_path` holds at most 107 bytes, and engines use deep runtime directories. Binding through
/// `/proc/self/fd/<dirfd>/<name>` after opening the parent directory keeps the address short
/// while the socket lands at the real path.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path has no file name",
        ));
    };
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)?;
    let short = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    UnixListener::bind(short)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn binds_where_the_path_exceeds_sun_path() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(100)).join("e".repeat(40));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join("conmon.sock");
        assert!(path.as_os_str().len() > 108);
        let _listener = bind(&path).unwrap();
        // Rebinding replaces the (now stale-looking) socket file.
        drop(_listener);
        let _listener = bind(&path).unwrap();
        let dir_fd = std::fs::File::open(&deep).unwrap();
        let short = format!("/proc/self/fd/{}/conmon.sock", dir_fd.as_raw_fd());
        UnixStream::connect(short).unwrap();
    }
}
