//! The output streams of a supervised process.

/// Which of a process's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (and all terminal output).
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The stream's name in logs: `stdout` or `stderr`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}
