//! The runtime-shim's errors: spawning, connecting, the monitor's own failures and timeouts
//! are told apart.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a runtime-shim operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The monitor binary could not be started or exited with an error.
    #[error("spawn monitor '{}': {message}", monitor.display())]
    Spawn {
        /// The monitor binary.
        monitor: PathBuf,
        /// What went wrong (the monitor's own error output when it has any).
        message: String,
    },
    /// The monitor's socket could not be reached.
    #[error("connect to monitor socket '{}'", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The monitor reported a failure (its message says what failed).
    #[error("monitor: {message}")]
    Remote {
        /// The monitor's error text.
        message: String,
        /// Whether the monitor does not implement the call.
        unimplemented: bool,
    },
    /// A request could not be encoded (e.g. a non-UTF-8 path).
    #[error(transparent)]
    Encode(#[from] conmon_proto::types::EncodeError),
    /// The connection broke or a message was malformed.
    #[error("rpc transport")]
    Transport(#[source] capnp::Error),
    /// An operation did not finish in time.
    #[error("{what} did not finish within {after:?}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// The OCI runtime, called directly, failed.
    #[error("runtime {action} {id} failed ({status}): {}", stderr.trim_end())]
    Runtime {
        /// The subcommand.
        action: &'static str,
        /// The container.
        id: String,
        /// How the runtime exited.
        status: String,
        /// Its error output.
        stderr: String,
    },
    /// The OCI runtime, called directly, answered with output this crate cannot read.
    #[error("runtime {action} {id}: unexpected output: {message}")]
    RuntimeOutput {
        /// The subcommand.
        action: &'static str,
        /// The container.
        id: String,
        /// What was wrong with it.
        message: String,
    },
    /// An exit file holds something other than an exit code.
    #[error("exit file '{}' holds {content:?}, not an exit code", path.display())]
    ExitFile {
        /// The file.
        path: PathBuf,
        /// What it holds.
        content: String,
    },
    /// The monitor could not be placed in its cgroup, or its cgroup not removed.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    /// A local file operation (lock, run directory) failed.
    #[error("{what} '{}'", path.display())]
    Io {
        /// What was attempted.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ShimError {
    /// For `map_err`: an io error while doing `what` on `path`.
    pub(crate) fn io(
        what: &'static str,
        path: &Path,
    ) -> impl FnOnce(std::io::Error) -> Self + use<> {
        let path = path.to_owned();
        move |source| Self::Io { what, path, source }
    }
}

impl From<capnp::Error> for ShimError {
    fn from(err: capnp::Error) -> Self {
        match err.kind {
            capnp::ErrorKind::Failed | capnp::ErrorKind::Unimplemented => Self::Remote {
                message: err
                    .extra
                    .strip_prefix("remote exception: ")
                    .unwrap_or(&err.extra)
                    .to_owned(),
                unimplemented: err.kind == capnp::ErrorKind::Unimplemented,
            },
            _ => Self::Transport(err),
        }
    }
}

impl From<std::str::Utf8Error> for ShimError {
    fn from(err: std::str::Utf8Error) -> Self {
        Self::Transport(err.into())
    }
}
