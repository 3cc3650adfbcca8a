//! Files written atomically (exit and OOM markers, the pidfile): engines watch for these files
//! to appear, so a reader must never see a half-written one. Each is written to a temporary file
//! in the same directory and renamed into place. The temporary file has an unpredictable name
//! and is created exclusively, so nothing planted there (a symlink to a victim, say) is ever
//! written through.
//!
//! The file is visible before it is durable: an engine waits for it to appear, and a sync can
//! stall for as long as the file system has dirty data to write first (hundreds of
//! milliseconds on a busy ext4). [`Written::sync`] makes it durable afterwards.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// A file in place, complete for every reader, not yet synced to disk.
#[derive(Debug)]
#[must_use = "sync the file, or say why its durability does not matter"]
pub(crate) struct Written {
    file: File,
    path: PathBuf,
}

impl Written {
    /// Syncs the file's contents and its directory entry to disk.
    pub(crate) fn sync(self) -> io::Result<()> {
        self.file.sync_all()?;
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    }

    /// The path the file was written to.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Atomically replaces `path` with a file holding `contents` (mode 0644).
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<Written> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", conmon_telemetry::ids::random_hex(8)?));
    let temp = path.with_file_name(temp_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(&temp)?;
    let result = file
        .write_all(contents)
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(err) = result {
        // Best effort: a leftover temporary file is harmless but untidy.
        let _ = std::fs::remove_file(&temp);
        return Err(err);
    }
    Ok(Written {
        file,
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn writes_exact_contents_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit");
        write_atomic(&path, b"137").unwrap().sync().unwrap();
        let written = write_atomic(&path, b"0").unwrap();
        assert_eq!(written.path(), path);
        written.sync().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"0");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let err = write_atomic(Path::new("/nonexistent/dir/exit"), b"0").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
