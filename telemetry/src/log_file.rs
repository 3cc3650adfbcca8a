//! A bounded log file: where a process's log lines go when journald was asked for but does not
//! run (CRI-O starts its pod monitor with `--log-driver systemd` and stdio on /dev/null, so on
//! a host without journald the lines would otherwise vanish).
//!
//! The file is rotated once it would grow past its limit: it is renamed to `<name>.1`
//! (replacing the older one) and a new file is started, so at most twice the limit is kept.
//! Records are never split across the two files.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tracing_subscriber::fmt::MakeWriter;

/// Size at which the fallback log file is rotated.
pub const MAX_LOG_FILE_BYTES: u64 = 1 << 20;

/// A log file rotated at a size limit; one writer at a time.
#[derive(Debug)]
pub struct RotatingFile {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
}

impl RotatingFile {
    /// Opens (appending) or creates `path`, owner-only; a symbolic link there is refused, never
    /// followed.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Self> {
        let file = open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            state: Mutex::new(State {
                path: path.to_path_buf(),
                file,
                size,
                max_bytes,
            }),
        })
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.lock().path.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A writer that panicked left whole records behind: the file stays usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

impl State {
    fn rotate(&mut self) -> io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, old)?;
        self.file = open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// One record being written; the file is locked while it lives.
#[derive(Debug)]
pub struct Record<'a>(MutexGuard<'a, State>);

impl Write for Record<'_> {
    /// Writes `buf` whole, into a fresh file if it would take the current one past the limit.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let state = &mut *self.0;
        let len = buf.len() as u64;
        if state.size > 0 && state.size.saturating_add(len) > state.max_bytes {
            state.rotate()?;
        }
        state.file.write_all(buf)?;
        state.size = state.size.saturating_add(len);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = Record<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Record(self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_records(file: &RotatingFile, records: &[&str]) {
        for record in records {
            file.make_writer().write_all(record.as_bytes()).unwrap();
        }
    }

    #[test]
    fn rotates_whole_records_and_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conmond.log");
        let file = RotatingFile::open(&path, 10).unwrap();
        write_records(&file, &["aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n"]);
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "eeee\n");
        assert_eq!(read(&dir.path().join("conmond.log.1")), "cccc\ndddd\n");
        assert!(!dir.path().join("conmond.log.2").exists());
    }

    #[test]
    fn a_record_over_the_limit_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conmond.log");
        let file = RotatingFile::open(&path, 4).unwrap();
        write_records(&file, &["a long record\n"]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a long record\n");
    }

    #[test]
    fn appends_to_what_an_earlier_run_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conmond.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let file = RotatingFile::open(&path, 12).unwrap();
        write_records(&file, &["now\n", "later\n"]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "later\n");
        let old = std::fs::read_to_string(dir.path().join("conmond.log.1")).unwrap();
        assert_eq!(old, "earlier\nnow\n");
    }

    #[test]
    fn a_symlink_in_its_place_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        let path = dir.path().join("conmond.log");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(RotatingFile::open(&path, 10).is_err());
        assert!(!target.exists());
    }
}
