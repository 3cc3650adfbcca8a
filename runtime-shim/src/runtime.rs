//! What an engine does with the OCI runtime directly, as CRI-O does with a pod monitor:
//! start, stop (signal, grace period, SIGKILL), kill, delete and state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tracing::Instrument as _;

use crate::error::ShimError;
use crate::poll;

/// How long a container may take to exit after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// A container's status as the runtime reports it (`runc state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// `runtime create` is in progress.
    Creating,
    /// Created, not started.
    Created,
    /// Its init runs.
    Running,
    /// Frozen.
    Paused,
    /// Its init exited.
    Stopped,
}

impl std::fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Creating => "creating",
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        })
    }
}

/// The part of `runc state`'s JSON this crate reads.
#[derive(Debug, Deserialize)]
struct State {
    status: ContainerStatus,
}

/// An OCI runtime binary with its state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRuntime {
    /// The runtime binary.
    pub path: PathBuf,
    /// Its `--root`.
    pub root: PathBuf,
    /// Whether containers use the systemd cgroup driver (`--systemd-cgroup`).
    pub systemd_cgroup: bool,
}

impl OciRuntime {
    async fn run(
        &self,
        action: &'static str,
        id: &str,
        args: &[&str],
    ) -> Result<String, ShimError> {
        let span = tracing::info_span!(
            "runtime",
            otel.name = format!("runtime {action}"),
            container.id = id
        );
        async {
            let mut command = tokio::process::Command::new(&self.path);
            command.arg("--root").arg(&self.root);
            if self.systemd_cgroup {
                command.arg("--systemd-cgroup");
            }
            let output = command
                .arg(action)
                .args(args)
                .envs(conmon_telemetry::propagation::to_env())
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .map_err(ShimError::io("run runtime", &self.path))?;
            if !output.status.success() {
                let err = ShimError::Runtime {
                    action,
                    id: id.to_owned(),
                    status: output.status.to_string(),
                    stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                };
                tracing::error!(error = %err, "runtime failed");
                return Err(err);
            }
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        .instrument(span)
        .await
    }

    /// Starts a created container.
    pub async fn start(&self, id: &str) -> Result<(), ShimError> {
        self.run("start", id, &[id]).await.map(drop)
    }

    /// Sends `signal` (e.g. `TERM`) to the container's init.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), ShimError> {
        self.run("kill", id, &[id, signal]).await.map(drop)
    }

    /// Deletes the container, killing it if needed.
    pub async fn delete(&self, id: &str) -> Result<(), ShimError> {
        self.run("delete", id, &["--force", id]).await.map(drop)
    }

    /// The container's status; `None` when the runtime does not know it.
    ///
    /// # Errors
    /// The runtime failing otherwise, or answering with JSON that has no known status.
    pub async fn state(&self, id: &str) -> Result<Option<ContainerStatus>, ShimError> {
        match self.run("state", id, &[id]).await {
            Ok(json) => serde_json::from_str::<State>(&json)
                .map(|state| Some(state.status))
                .map_err(|err| ShimError::RuntimeOutput {
                    action: "state",
                    id: id.to_owned(),
                    message: err.to_string(),
                }),
            Err(ShimError::Runtime { stderr, .. }) if stderr.contains("does not exist") => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Stops the container: SIGTERM, then SIGKILL if `exit_file` has not appeared within
    /// `grace`. Returns the exit code from the exit file.
    ///
    /// # Errors
    /// The runtime failing to kill, the exit file not appearing or holding no exit code.
    pub async fn stop(
        &self,
        id: &str,
        exit_file: &Path,
        grace: Duration,
    ) -> Result<i32, ShimError> {
        if let Some(code) = read_exit_file(exit_file)? {
            return Ok(code);
        }
        if let Err(err) = self.kill(id, "TERM").await {
            // Already stopped: its exit file says how.
            tracing::debug!(error = %err, "SIGTERM not delivered");
        }
        if let Some(code) = wait_for_exit_file(exit_file, grace).await? {
            return Ok(code);
        }
        tracing::info!(
            container_id = id,
            ?grace,
            "container ignored SIGTERM; killing it"
        );
        self.kill(id, "KILL").await?;
        wait_for_exit_file(exit_file, KILL_TIMEOUT)
            .await?
            .ok_or(ShimError::Timeout {
                what: "container exit after SIGKILL",
                after: KILL_TIMEOUT,
            })
    }
}

/// The exit code in a monitor's exit file; `None` while there is no such file.
///
/// # Errors
/// The file being unreadable or holding something other than an exit code.
pub fn read_exit_file(path: &Path) -> Result<Option<i32>, ShimError> {
    let content = match std::fs::read_to_string(path) {
        Ok(content) => content,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ShimError::io("read exit file", path)(source)),
    };
    content
        .trim()
        .parse()
        .map(Some)
        .map_err(|_| ShimError::ExitFile {
            path: path.to_owned(),
            content,
        })
}

/// Waits up to `timeout` for the exit file at `path`; `None` when it did not appear.
///
/// # Errors
/// As [`read_exit_file`].
pub async fn wait_for_exit_file(path: &Path, timeout: Duration) -> Result<Option<i32>, ShimError> {
    poll::until(timeout, || async { read_exit_file(path).transpose() })
        .await
        .transpose()
}
