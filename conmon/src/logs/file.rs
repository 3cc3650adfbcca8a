//! A log file (CRI or JSON lines) with its size limit and reopening for rotation.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::error::LogError;
use super::render;
use crate::caller_path;
use crate::stream::Stream;

/// The record format of a log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileFormat {
    /// CRI lines (kubelet's format).
    Cri,
    /// JSON lines.
    Json,
}

#[derive(Debug)]
pub(super) struct LogFile {
    format: FileFormat,
    path: PathBuf,
    file: File,
    max_size: u64,
    /// Bytes in the current file, for `max_size`.
    written: u64,
}

impl LogFile {
    pub(super) fn create(format: FileFormat, path: &Path, max_size: u64) -> Result<Self, LogError> {
        let open_error = |source| LogError::Open {
            path: path.to_owned(),
            source,
        };
        // Append mode and truncation do not combine in one open: truncate right after.
        let file =
            caller_path::open_regular(&mut open_options(format), path).map_err(open_error)?;
        file.set_len(0).map_err(open_error)?;
        Ok(Self {
            format,
            path: path.to_owned(),
            file,
            max_size,
            written: 0,
        })
    }

    pub(super) fn reopen(&mut self) -> Result<(), LogError> {
        let open_error = |source| LogError::Open {
            path: self.path.clone(),
            source,
        };
        let file = caller_path::open_regular(&mut open_options(self.format), &self.path)
            .map_err(open_error)?;
        let size = file.metadata().map_err(open_error)?.len();
        self.file = file;
        self.written = size;
        Ok(())
    }

    /// Writes the records of `chunk` piece by piece ([`render::pieces`]); when pieces fail,
    /// the first failure is returned, with the bytes every failed piece dropped.
    pub(super) fn write(
        &mut self,
        stream: Stream,
        chunk: &[u8],
        time: SystemTime,
        buf: &mut Vec<u8>,
    ) -> Result<(), LogError> {
        let mut failed = None;
        for piece in render::pieces(chunk) {
            if let Err(err) = self.write_piece(stream, piece, time, buf) {
                failed = Some(match (failed, err) {
                    (None, err) => err,
                    (
                        Some(LogError::Dropped {
                            path,
                            bytes,
                            source,
                        }),
                        LogError::Dropped { bytes: more, .. },
                    ) => LogError::Dropped {
                        path,
                        bytes: bytes + more,
                        source,
                    },
                    (Some(first), _) => first,
                });
            }
        }
        failed.map_or(Ok(()), Err)
    }

    fn write_piece(
        &mut self,
        stream: Stream,
        chunk: &[u8],
        time: SystemTime,
        buf: &mut Vec<u8>,
    ) -> Result<(), LogError> {
        buf.clear();
        let mut records = Vec::new();
        match self.format {
            FileFormat::Cri => render::cri(buf, &mut records, stream, chunk, time),
            FileFormat::Json => render::json(buf, &mut records, stream, chunk, time),
        }
        if self.max_size == 0 {
            self.written = self.written.saturating_add(buf.len() as u64);
            return self.append(buf, &records);
        }
        // With a size limit, each record decides on its own whether the file starts over.
        let mut start = 0;
        let mut pending = 0;
        for &end in &records {
            let len = (end - pending) as u64;
            if self.written > 0 && self.written.saturating_add(len) > self.max_size {
                // Everything before this record is discarded by the truncation: skip writing it.
                start = pending;
                self.truncate()?;
            }
            self.written = self.written.saturating_add(len);
            pending = end;
        }
        let ends: Vec<usize> = records
            .iter()
            .filter(|&&end| end > start)
            .map(|end| end - start)
            .collect();
        self.append(&buf[start..], &ends)
    }

    /// Appends `bytes`, the records ending at `ends`, whole or not at all: when the file
    /// system fails a write (full, say), a record written in part is cut off again, so the
    /// file always ends with a whole record and writing later resumes cleanly.
    fn append(&mut self, bytes: &[u8], ends: &[usize]) -> Result<(), LogError> {
        let mut done = 0;
        while done < bytes.len() {
            match self.file.write(&bytes[done..]) {
                Ok(0) => {
                    return Err(self.rollback(
                        bytes,
                        ends,
                        done,
                        std::io::ErrorKind::WriteZero.into(),
                    ));
                }
                Ok(n) => done += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(self.rollback(bytes, ends, done, err)),
            }
        }
        Ok(())
    }

    /// After `done` bytes of `bytes` were written and then `source` failed the rest: cuts the
    /// file back to the last whole record and counts what was dropped.
    fn rollback(
        &mut self,
        bytes: &[u8],
        ends: &[usize],
        done: usize,
        source: std::io::Error,
    ) -> LogError {
        let kept = ends
            .iter()
            .copied()
            .take_while(|&end| end <= done)
            .last()
            .unwrap_or(0);
        let dropped = bytes.len() - kept;
        self.written = self.written.saturating_sub(dropped as u64);
        if done > kept {
            let cut = self
                .file
                .metadata()
                .and_then(|meta| self.file.set_len(meta.len() - (done - kept) as u64));
            if let Err(err) = cut {
                tracing::warn!(path = %self.path.display(), error = %err, "cut off a partial log record");
            }
        }
        LogError::Dropped {
            path: self.path.clone(),
            bytes: dropped,
            source,
        }
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

fn open_options(format: FileFormat) -> OpenOptions {
    let mut options = OpenOptions::new();
    // CRI logs may hold secrets and are read by the engine as root: owner-only, as kubelet expects.
    let mode = if format == FileFormat::Cri {
        0o600
    } else {
        0o644
    };
    options.create(true).append(true).mode(mode);
    options
}
