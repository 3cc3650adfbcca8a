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

    /// Reads the PID; the file is removed by a task of its own, which runs once the caller
    /// yields. Removing it truncates an inode (~0.1 ms on a disk filesystem), which an
    /// exec-sync's reply need not wait for; if the task never runs, dropping it removes the file.
    /// Must be called on a `LocalSet`.
    pub(crate) fn take(self) -> Result<u32, MonitorError> {
        let pid = read(&self.0);
        crate::tasks::spawn_local(async move { drop(self) });
        pid
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

    #[tokio::test]
    async fn exec_pidfile_is_read_once_and_removed_after_the_caller_yields()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("exec-0.pid");
        std::fs::write(&path, " 42\n")?;
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                assert_eq!(ExecPidfile::new(path.clone()).take()?, 42);
                assert!(path.exists(), "removed before the caller yielded");
                tokio::task::yield_now().await;
                assert!(!path.exists());
                Ok::<_, MonitorError>(())
            })
            .await?;
        // A removal that never ran (the monitor stopping) still removes the file.
        std::fs::write(&path, "43")?;
        let stopping = tokio::task::LocalSet::new();
        stopping
            .run_until(async { ExecPidfile::new(path.clone()).take() })
            .await?;
        drop(stopping);
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
