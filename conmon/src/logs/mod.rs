//! Container log drivers: CRI (the kubelet format), JSON lines and journald.
//!
//! File output is written as it is read, one chunk at a time, with no cross-chunk line
//! buffering: a line split across two reads becomes a `P` (partial) record followed by an `F`
//! record, which CRI readers join. The journald driver holds the start of a line back until
//! its end (see [`journal`]). Either way a log is complete as soon as the container's pipes
//! reach end of file and [`LogSet::finish`] has run.

mod error;
mod file;
mod journal;
mod name;
mod render;
mod timestamp;

use std::time::SystemTime;

pub use self::error::LogError;
use self::file::{FileFormat, LogFile};
use self::journal::JournalLog;
pub(crate) use self::name::container_name;
pub use crate::stream::Stream;
pub use conmon_proto::types::{LogDriver, LogFormat};

/// All log drivers of one container, fed by both of its output streams.
#[derive(Debug)]
pub struct LogSet {
    drivers: Vec<Driver>,
    /// Scratch buffer the records of one chunk are rendered into.
    buf: Vec<u8>,
}

#[derive(Debug)]
enum Driver {
    File(LogFile),
    Journald(JournalLog),
}

impl LogSet {
    /// Opens (creating or truncating) every driver's file and connects to journald if asked
    /// to, for container `container_id` (named `name` in the journal, if it has a name).
    pub fn open(
        container_id: &str,
        name: Option<&str>,
        configs: &[LogDriver],
    ) -> Result<Self, LogError> {
        let drivers = configs
            .iter()
            .map(|config| match config.format {
                LogFormat::Journald => {
                    JournalLog::connect(container_id, name).map(Driver::Journald)
                }
                LogFormat::Cri => LogFile::create(FileFormat::Cri, &config.path, config.max_size)
                    .map(Driver::File),
                LogFormat::Json => LogFile::create(FileFormat::Json, &config.path, config.max_size)
                    .map(Driver::File),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            drivers,
            buf: Vec::new(),
        })
    }

    /// Whether any driver is configured.
    pub fn is_empty(&self) -> bool {
        self.drivers.is_empty()
    }

    /// Records one chunk read from `stream` at `time`. Every driver gets the chunk even if an
    /// earlier one failed; the first failure is returned.
    pub fn write(
        &mut self,
        stream: Stream,
        chunk: &[u8],
        time: SystemTime,
    ) -> Result<(), LogError> {
        let mut result = Ok(());
        for driver in &mut self.drivers {
            let written = match driver {
                Driver::File(file) => file.write(stream, chunk, time, &mut self.buf),
                Driver::Journald(journal) => journal.write(stream, chunk),
            };
            if result.is_ok() {
                result = written;
            }
        }
        result
    }

    /// Writes out what drivers hold of a last line, once the output has ended.
    pub fn finish(&mut self) -> Result<(), LogError> {
        let mut result = Ok(());
        for driver in &mut self.drivers {
            if let Driver::Journald(journal) = driver {
                for stream in [Stream::Stdout, Stream::Stderr] {
                    let finished = journal.finish(stream);
                    if result.is_ok() {
                        result = finished;
                    }
                }
            }
        }
        result
    }

    /// Reopens every file at its path, for log rotation: the engine renames the file, then asks
    /// for a reopen, and new output goes to a fresh file at the original path. A file that was
    /// not renamed is appended to, never truncated, so a reopen cannot lose lines.
    pub fn reopen(&mut self) -> Result<(), LogError> {
        for driver in &mut self.drivers {
            if let Driver::File(file) = driver {
                file.reopen()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, 5_000)
    }

    /// A CRI log set writing `ctr.log` in a new directory.
    fn cri_set(max_size: u64) -> (tempfile::TempDir, LogSet, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let config = LogDriver {
            format: LogFormat::Cri,
            path: path.clone(),
            max_size,
        };
        (dir, LogSet::open("ctr", None, &[config]).unwrap(), path)
    }

    #[test]
    fn cri_lines_are_tagged_full_or_partial() {
        let (_dir, mut logs, path) = cri_set(0);
        logs.write(Stream::Stdout, b"hello\npart", at(0)).unwrap();
        logs.write(Stream::Stderr, b"ial\n\nend", at(1)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "1970-01-01T00:00:00.000005Z stdout F hello\n\
             1970-01-01T00:00:00.000005Z stdout P part\n\
             1970-01-01T00:00:01.000005Z stderr F ial\n\
             1970-01-01T00:00:01.000005Z stderr F \n\
             1970-01-01T00:00:01.000005Z stderr P end\n"
        );
    }

    #[test]
    fn cri_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let (_dir, _logs, path) = cri_set(0);
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn max_size_starts_the_file_over_and_keeps_the_newest_lines() {
        // Each record is 39 bytes: 27 timestamp + " stdout F " + "x\n".
        let (_dir, mut logs, path) = cri_set(100);
        logs.write(Stream::Stdout, b"a\nb\nc\nd\ne\n", at(0))
            .unwrap();
        // The content of each record: its last character.
        let contents = || {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.len() as u64 <= 100, "{text}");
            text.lines()
                .map(|l| l[l.len() - 1..].to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(contents(), ["e"]);
        logs.write(Stream::Stdout, b"f\n", at(0)).unwrap();
        assert_eq!(contents(), ["e", "f"]);
    }

    #[test]
    fn record_larger_than_max_size_is_still_written_whole() {
        let (_dir, mut logs, path) = cri_set(10);
        logs.write(Stream::Stdout, b"0123456789abcdef\n", at(0))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(" stdout F 0123456789abcdef\n"), "{text}");
    }

    #[test]
    fn reopen_after_rename_starts_a_new_file_and_keeps_the_old_one() {
        let (dir, mut logs, path) = cri_set(0);
        logs.write(Stream::Stdout, b"old\n", at(0)).unwrap();
        let rotated = dir.path().join("ctr.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        logs.reopen().unwrap();
        logs.write(Stream::Stdout, b"new\n", at(0)).unwrap();
        assert!(
            std::fs::read_to_string(&rotated)
                .unwrap()
                .ends_with("F old\n")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("F new\n") && !text.contains("old"), "{text}");
    }

    #[test]
    fn reopen_without_rename_loses_nothing() {
        let (_dir, mut logs, path) = cri_set(0);
        logs.write(Stream::Stdout, b"one\n", at(0)).unwrap();
        logs.reopen().unwrap();
        logs.write(Stream::Stdout, b"two\n", at(0)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    #[test]
    fn json_records_keep_whitespace_and_mark_partials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.json");
        let config = LogDriver {
            format: LogFormat::Json,
            path: path.clone(),
            max_size: 0,
        };
        let mut logs = LogSet::open("ctr", None, &[config]).unwrap();
        logs.write(Stream::Stderr, b"  hello \"q\"\ntail", at(7))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"timestamp\":7,\"pipe\":\"stderr\",\"message\":\"  hello \\\"q\\\"\"}\n\
             {\"timestamp\":7,\"pipe\":\"stderr\",\"message\":\"tail\",\"partial\":true}\n"
        );
    }

    #[test]
    fn missing_directory_names_the_path() {
        let config = LogDriver {
            format: LogFormat::Cri,
            path: PathBuf::from("/nonexistent/dir/c.log"),
            max_size: 0,
        };
        let err = LogSet::open("c", None, &[config]).unwrap_err();
        assert_eq!(err.to_string(), "open log file '/nonexistent/dir/c.log'");
    }
}
