//! Errors of the monitor's operations, as reported to RPC clients.

use std::path::PathBuf;

use crate::logs::LogError;
use crate::reaper::ExitStatus;

/// Why a monitor operation failed. Expected outcomes (a non-zero exit, an exec timeout) are
/// results, not errors.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The request names a container this monitor does not supervise.
    #[error("container '{0}' not found")]
    UnknownContainer(String),
    /// The request names an exec session the container does not have (any more).
    #[error("container '{id}' has no exec session '{session}'")]
    UnknownExecSession {
        /// Container ID.
        id: String,
        /// Exec session ID.
        session: String,
    },
    /// A container with this ID is being created or is running.
    #[error("container id '{0}' is already in use")]
    ContainerExists(String),
    /// The container exited; it can no longer run processes.
    #[error("container '{id}' is not running (exited with code {exit_code})")]
    ContainerExited {
        /// Container ID.
        id: String,
        /// Its exit code.
        exit_code: i32,
    },
    /// A runtime call took longer than the runtime timeout; it was killed.
    #[error("runtime {action} did not finish within the runtime timeout; it was killed")]
    RuntimeTimedOut {
        /// The runtime subcommand.
        action: &'static str,
    },
    /// A request field is missing or malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The fd socket could not be started.
    #[error("start the fd socket at {}", path.display())]
    FdSocket {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `createNamespaces` failed.
    #[error(transparent)]
    Namespaces(#[from] crate::namespaces::NamespaceError),
    /// A log driver could not be set up or reopened.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Creating the pipes for a child's stdio failed.
    #[error("create stdio pipes")]
    Pipe(#[source] std::io::Error),
    /// The runtime binary could not be started.
    #[error("spawn runtime '{}'", runtime.display())]
    SpawnRuntime {
        /// The runtime binary.
        runtime: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The runtime ran and failed; its own error output is included.
    #[error("runtime {action} failed with exit code {}: {}", status.code(), stderr.trim_end())]
    RuntimeFailed {
        /// The runtime subcommand (create, exec).
        action: &'static str,
        /// How the runtime exited.
        status: ExitStatus,
        /// What the runtime wrote to stderr and stdout.
        stderr: String,
    },
    /// The PID file the runtime should have written could not be read.
    #[error("read runtime pidfile '{}'", path.display())]
    ReadPidfile {
        /// The pidfile.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The runtime's PID file did not hold a PID.
    #[error("runtime pidfile '{}' holds {content:?}, not a PID", path.display())]
    ParsePidfile {
        /// The pidfile.
        path: PathBuf,
        /// What it held.
        content: String,
    },
    /// The terminal of a terminal container could not be set up.
    #[error("receive the container's terminal from the runtime")]
    Console(#[source] std::io::Error),
    /// A terminal operation on a container without one.
    #[error("container '{0}' has no terminal")]
    NoTerminal(String),
    /// The attach socket could not be created.
    #[error("create attach socket '{}'", path.display())]
    AttachSocket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Resizing the terminal failed.
    #[error("resize terminal")]
    Resize(#[source] std::io::Error),
    /// The network namespace of a port-forward request could not be opened.
    #[error("open network namespace '{}'", path.display())]
    NetworkNamespace {
        /// The namespace path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Too many streaming URLs are waiting to be opened.
    #[error("too many streaming sessions waiting to be opened (at most {0})")]
    TooManyStreams(usize),
    /// The streaming server could not be started.
    #[error("start the streaming server")]
    Streaming(#[source] std::io::Error),
    /// The monitor is shutting down and lost track of a process it waited for.
    #[error("monitor is shutting down")]
    ShuttingDown,
}

/// Renders an error with all its causes, `outer: inner: innermost`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_joins_every_cause() {
        let err = MonitorError::ReadPidfile {
            path: "/b/pidfile".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(
            error_chain(&err),
            "read runtime pidfile '/b/pidfile': entity not found"
        );
    }

    #[test]
    fn runtime_failure_carries_its_stderr() {
        let err = MonitorError::RuntimeFailed {
            action: "create",
            status: ExitStatus::Exited(1),
            stderr: "exec: \"invalid\": executable file not found in $PATH\n".into(),
        };
        assert_eq!(
            err.to_string(),
            "runtime create failed with exit code 1: exec: \"invalid\": executable file not found in $PATH"
        );
    }
}
