//! Failures of the log drivers.

use std::path::PathBuf;

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
