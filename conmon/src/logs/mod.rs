//! Container log drivers: CRI (the kubelet format), JSON lines and journald.
//!
//! Output is written as it is read, one chunk at a time, with no cross-chunk line buffering: a
//! line split across two reads becomes a `P` (partial) record followed by an `F` record, which
//! CRI readers join. Nothing is held back, so a log is complete as soon as the container's
//! pipes reach end of file.

mod timestamp;

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use conmon_proto::types::{LogDriver, LogFormat};
use conmon_telemetry::journald::Journald;

/// Which of the container's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (and all terminal output).
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// Failures of the log drivers; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file could not be created or opened.
    #[error("open log file '{}'", path.display())]
    Open {
        /// The log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing or truncating the log file failed.
    #[error("write log file '{}'", path.display())]
    Write {
        /// The log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The journald driver was requested but journald is not reachable.
    #[error("journald log driver: journald socket not reachable")]
    Journald(#[source] std::io::Error),
}

/// All log drivers of one container, fed by both of its output streams.
#[derive(Debug)]
pub struct LogSet {
    container_id: String,
    drivers: Vec<Driver>,
    /// Scratch buffer the records of one chunk are rendered into.
    buf: Vec<u8>,
}

#[derive(Debug)]
enum Driver {
    File(LogFile),
    Journald(Journald),
}

#[derive(Debug)]
struct LogFile {
    format: LogFormat,
    path: PathBuf,
    file: File,
    max_size: u64,
    /// Bytes in the current file, for `max_size`.
    written: u64,
}

impl LogSet {
    /// Opens (creating or truncating) every driver's file.
    pub fn open(container_id: &str, configs: &[LogDriver]) -> Result<Self, LogError> {
        let drivers = configs
            .iter()
            .map(|config| match config.format {
                LogFormat::Journald => Journald::connect()
                    .map(Driver::Journald)
                    .map_err(LogError::Journald),
                format => LogFile::create(format, &config.path, config.max_size).map(Driver::File),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            container_id: container_id.to_owned(),
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
                Driver::Journald(journald) => {
                    write_journald(journald, &self.container_id, stream, chunk)
                }
            };
            if result.is_ok() {
                result = written;
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

impl LogFile {
    fn create(format: LogFormat, path: &Path, max_size: u64) -> Result<Self, LogError> {
        let open_error = |source| LogError::Open {
            path: path.to_owned(),
            source,
        };
        // Append mode and truncation do not combine in one open: truncate right after.
        let file = open_options(format).open(path).map_err(open_error)?;
        file.set_len(0).map_err(open_error)?;
        Ok(Self {
            format,
            path: path.to_owned(),
            file,
            max_size,
            written: 0,
        })
    }

    fn reopen(&mut self) -> Result<(), LogError> {
        let open_error = |source| LogError::Open {
            path: self.path.clone(),
            source,
        };
        let file = open_options(self.format)
            .open(&self.path)
            .map_err(open_error)?;
        let size = file.metadata().map_err(open_error)?.len();
        self.file = file;
        self.written = size;
        Ok(())
    }

    fn write(
        &mut self,
        stream: Stream,
        chunk: &[u8],
        time: SystemTime,
        buf: &mut Vec<u8>,
    ) -> Result<(), LogError> {
        buf.clear();
        let mut records = Vec::new();
        match self.format {
            LogFormat::Cri => render_cri(buf, &mut records, stream, chunk, time),
            LogFormat::Json => render_json(buf, &mut records, stream, chunk, time),
            LogFormat::Journald => unreachable!("journald is not a file driver"),
        }
        if self.max_size == 0 {
            self.written = self.written.saturating_add(buf.len() as u64);
            return self.append(buf);
        }
        // With a size limit, each record decides on its own whether the file starts over.
        let mut start = 0;
        let mut pending = 0;
        for end in records {
            let len = (end - pending) as u64;
            if self.written > 0 && self.written.saturating_add(len) > self.max_size {
                // Everything before this record is discarded by the truncation: skip writing it.
                start = pending;
                self.truncate()?;
            }
            self.written = self.written.saturating_add(len);
            pending = end;
        }
        self.append(&buf[start..])
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        self.file
            .write_all(bytes)
            .map_err(|source| LogError::Write {
                path: self.path.clone(),
                source,
            })
    }

    fn truncate(&mut self) -> Result<(), LogError> {
        self.written = 0;
        // The file is opened in append mode, so writes continue at the new end (offset 0).
        self.file.set_len(0).map_err(|source| LogError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

fn open_options(format: LogFormat) -> OpenOptions {
    let mut options = OpenOptions::new();
    // CRI logs may hold secrets and are read by the engine as root: owner-only, as kubelet expects.
    let mode = if format == LogFormat::Cri {
        0o600
    } else {
        0o644
    };
    options.create(true).append(true).mode(mode);
    options
}

/// Splits a chunk into line segments: each ends with `\n`, except possibly the last one.
fn segments(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    chunk.split_inclusive(|&b| b == b'\n')
}

/// Renders CRI records into `buf`, pushing the end offset of each record onto `records`.
fn render_cri(
    buf: &mut Vec<u8>,
    records: &mut Vec<usize>,
    stream: Stream,
    chunk: &[u8],
    time: SystemTime,
) {
    let mut prefix = Vec::with_capacity(48);
    timestamp::write_rfc3339_nano(&mut prefix, time);
    prefix.push(b' ');
    prefix.extend_from_slice(stream.name().as_bytes());
    buf.reserve(chunk.len() + prefix.len() + 4);
    for segment in segments(chunk) {
        buf.extend_from_slice(&prefix);
        if segment.ends_with(b"\n") {
            buf.extend_from_slice(b" F ");
            buf.extend_from_slice(segment);
        } else {
            buf.extend_from_slice(b" P ");
            buf.extend_from_slice(segment);
            buf.push(b'\n');
        }
        records.push(buf.len());
    }
}

#[derive(serde::Serialize)]
struct JsonRecord<'a> {
    timestamp: u64,
    pipe: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    partial: bool,
}

/// Renders JSON records (`timestamp` in Unix seconds, `pipe`, `message` without its newline,
/// and `partial: true` for a segment that did not end a line).
fn render_json(
    buf: &mut Vec<u8>,
    records: &mut Vec<usize>,
    stream: Stream,
    chunk: &[u8],
    time: SystemTime,
) {
    let timestamp = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    for segment in segments(chunk) {
        let (line, partial) = match segment.strip_suffix(b"\n") {
            Some(line) => (line, false),
            None => (segment, true),
        };
        let message = String::from_utf8_lossy(line);
        let record = JsonRecord {
            timestamp,
            pipe: stream.name(),
            message: &message,
            partial,
        };
        // Serializing plain strings and integers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, &record);
        buf.push(b'\n');
        records.push(buf.len());
    }
}

fn write_journald(
    journald: &mut Journald,
    container_id: &str,
    stream: Stream,
    chunk: &[u8],
) -> Result<(), LogError> {
    // Priorities as C conmon uses them: info for stdout, error for stderr.
    let priority: &[u8] = if stream == Stream::Stdout { b"6" } else { b"3" };
    for segment in segments(chunk) {
        let (line, partial) = match segment.strip_suffix(b"\n") {
            Some(line) => (line, false),
            None => (segment, true),
        };
        let mut fields = vec![
            ("MESSAGE", line),
            ("PRIORITY", priority),
            ("CONTAINER_ID_FULL", container_id.as_bytes()),
            ("CONTAINER_STREAM", stream.name().as_bytes()),
            ("SYSLOG_IDENTIFIER", b"conmond".as_slice()),
        ];
        if partial {
            fields.push(("CONTAINER_PARTIAL_MESSAGE", b"true".as_slice()));
        }
        journald.send(&fields).map_err(LogError::Journald)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, 5_000)
    }

    fn cri_set(dir: &Path, max_size: u64) -> (LogSet, PathBuf) {
        let path = dir.join("ctr.log");
        let config = LogDriver {
            format: LogFormat::Cri,
            path: path.clone(),
            max_size,
        };
        (LogSet::open("ctr", &[config]).unwrap(), path)
    }

    #[test]
    fn cri_lines_are_tagged_full_or_partial() {
        let dir = tempfile::tempdir().unwrap();
        let (mut logs, path) = cri_set(dir.path(), 0);
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
        let dir = tempfile::tempdir().unwrap();
        let (_logs, path) = cri_set(dir.path(), 0);
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn max_size_starts_the_file_over_and_keeps_the_newest_lines() {
        let dir = tempfile::tempdir().unwrap();
        // Each record is 39 bytes: 27 timestamp + " stdout F " + "x\n".
        let (mut logs, path) = cri_set(dir.path(), 100);
        logs.write(Stream::Stdout, b"a\nb\nc\nd\ne\n", at(0))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let contents: Vec<&str> = text.lines().map(|l| &l[l.len() - 1..]).collect();
        assert_eq!(contents, ["e"]);
        assert!(text.len() as u64 <= 100);
        logs.write(Stream::Stdout, b"f\n", at(0)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let contents: Vec<&str> = text.lines().map(|l| &l[l.len() - 1..]).collect();
        assert_eq!(contents, ["e", "f"]);
    }

    #[test]
    fn record_larger_than_max_size_is_still_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (mut logs, path) = cri_set(dir.path(), 10);
        logs.write(Stream::Stdout, b"0123456789abcdef\n", at(0))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(" stdout F 0123456789abcdef\n"), "{text}");
    }

    #[test]
    fn reopen_after_rename_starts_a_new_file_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut logs, path) = cri_set(dir.path(), 0);
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
        let dir = tempfile::tempdir().unwrap();
        let (mut logs, path) = cri_set(dir.path(), 0);
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
        let mut logs = LogSet::open("ctr", &[config]).unwrap();
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
        let err = LogSet::open("c", &[config]).unwrap_err();
        assert_eq!(err.to_string(), "open log file '/nonexistent/dir/c.log'");
    }
}
