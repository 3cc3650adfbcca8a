//! The PID files the runtime writes (`--pid-file`) for the processes it starts.

use std::path::{Path, PathBuf};

use crate::error::MonitorError;

/// Reads a PID written by the runtime (surrounding whitespace is tolerated).
pub(crate) fn read(path: &Path) -> Result<u32, MonitorError> {
    let content = std::fs::read_to_string(path).map_err(|source| MonitorError::ReadPidfile {
        path: path.to_owned(),
        source,
    })?;
    content
        .trim()
        .parse()
        .map_err(|_| MonitorError::ParsePidfile {
            path: path.to_owned(),
            content,
        })
}

/// The monitor's own pidfile for one `runtime exec`: removed once read, or when dropped unread
/// (the runtime failed), so none are left behind in the runtime directory.
#[derive(Debug)]
pub(crate) struct ExecPidfile(PathBuf);

impl ExecPidfile {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self(path)
    }

    /// The path to pass as `--pid-file`.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Reads the PID and removes the file.
    pub(crate) fn take(self) -> Result<u32, MonitorError> {
        read(&self.0)
    }
}

impl Drop for ExecPidfile {
    fn drop(&mut self) {
        // Best effort: the file may not exist (the runtime failed before writing it).
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_pidfile_is_read_once_and_removed() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("exec-0.pid");
        std::fs::write(&path, " 42\n")?;
        assert_eq!(ExecPidfile::new(path.clone()).take()?, 42);
        assert!(!path.exists());
        Ok(())
    }

    #[test]
    fn unread_exec_pidfile_is_removed_too() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("exec-1.pid");
        std::fs::write(&path, "x")?;
        let pidfile = ExecPidfile::new(path.clone());
        assert!(matches!(
            read(pidfile.path()),
            Err(MonitorError::ParsePidfile { .. })
        ));
        drop(pidfile);
        assert!(!path.exists());
        Ok(())
    }
}
