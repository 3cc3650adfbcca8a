//! Failures of the log drivers.

use std::path::PathBuf;

/// Failures of the log drivers; each names the file or socket.
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
    /// Records could not be written (the file system is full, say) and were dropped whole.
    #[error("write log file '{}': {bytes} bytes of whole records dropped", path.display())]
    Dropped {
        /// The log file.
        path: PathBuf,
        /// How many bytes were dropped.
        bytes: usize,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The journald driver was requested but journald is not reachable.
    #[error("journald log driver: cannot connect to journald at {socket}")]
    JournaldConnect {
        /// journald's socket.
        socket: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// journald did not take an entry (it stopped, say); the entry is lost.
    #[error("journald log driver: send to journald at {socket}")]
    JournaldSend {
        /// journald's socket.
        socket: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl LogError {
    /// How many bytes of rendered records a write dropped, if it says.
    pub fn dropped_bytes(&self) -> Option<usize> {
        match self {
            Self::Dropped { bytes, .. } => Some(*bytes),
            _ => None,
        }
    }
}
