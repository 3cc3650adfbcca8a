//! Files at paths a client gave. Opening one never blocks the monitor's only thread (a FIFO or
//! a device would), never follows a symbolic link in the last component (that would write
//! wherever the link points), and yields a regular file only.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// Opens the regular file at `path` with `options`, refusing symlinks and other file types.
pub(crate) fn open_regular(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    let file = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(explain)?;
    require_regular(&file)?;
    Ok(file)
}

/// Opens `path` for reading without blocking, following links (as `/proc/<pid>/ns/*` are),
/// and refuses anything but a regular file (namespace files are).
pub(crate) fn open_regular_following(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    require_regular(&file)?;
    Ok(file)
}

fn require_regular(file: &File) -> io::Result<()> {
    let kind = file.metadata()?.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {what}, not a regular file"),
    ))
}

/// Says what the errors of `O_NOFOLLOW | O_NONBLOCK` opens mean.
fn explain(err: io::Error) -> io::Error {
    match err.raw_os_error() {
        Some(libc::ELOOP) => io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a symbolic link, which is not followed",
        ),
        Some(libc::ENXIO) => io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a FIFO or device without a reader, not a regular file",
        ),
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_options() -> OpenOptions {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        options
    }

    #[test]
    fn regular_files_open_and_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        open_regular(&mut write_options(), &path).unwrap();
        assert!(path.is_file());
    }

    #[test]
    fn symlinks_fifos_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = open_regular(&mut write_options(), &link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");

        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let err = open_regular(&mut write_options(), &fifo).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        let err = open_regular_following(&fifo).unwrap_err();
        assert!(err.to_string().contains("is a FIFO"), "{err}");

        let err = open_regular_following(dir.path()).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
    }

    #[test]
    fn namespace_files_are_regular() {
        open_regular_following(Path::new("/proc/self/ns/net")).unwrap();
    }
}
