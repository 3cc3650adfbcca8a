//! What an engine does with the OCI runtime directly, as CRI-O does with a pod monitor:
//! start, stop (signal, grace period, SIGKILL), kill, delete and state.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use crate::error::ShimError;

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
                .map_err(|source| ShimError::Io {
                    what: "run runtime",
                    path: self.path.clone(),
                    source,
                })?;
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

    /// The container's status (`created`, `running`, `stopped`, ...); `None` when the runtime
    /// does not know it.
    pub async fn state(&self, id: &str) -> Result<Option<String>, ShimError> {
        match self.run("state", id, &[id]).await {
            Ok(json) => Ok(json
                .split("\"status\":")
                .nth(1)
                .and_then(|rest| rest.split('"').nth(1))
                .map(str::to_owned)),
            Err(ShimError::Runtime { stderr, .. }) if stderr.contains("does not exist") => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Stops the container: SIGTERM, then SIGKILL if `exit_file` has not appeared within
    /// `grace`. Returns the exit code from the exit file.
    pub async fn stop(
        &self,
        id: &str,
        exit_file: &Path,
        grace: Duration,
    ) -> Result<String, ShimError> {
        if let Ok(code) = std::fs::read_to_string(exit_file) {
            return Ok(code);
        }
        if let Err(err) = self.kill(id, "TERM").await {
            // Already stopped: its exit file says how.
            tracing::debug!(error = %err, "SIGTERM not delivered");
        }
        if let Some(code) = wait_for_file(exit_file, grace).await {
            return Ok(code);
        }
        tracing::info!(
            container_id = id,
            ?grace,
            "container ignored SIGTERM; killing it"
        );
        self.kill(id, "KILL").await?;
        wait_for_file(exit_file, Duration::from_secs(10))
            .await
            .ok_or(ShimError::Timeout {
                what: "container exit after SIGKILL",
                after: Duration::from_secs(10),
            })
    }
}

/// Polls for `path` to exist and returns its contents.
pub async fn wait_for_file(path: &Path, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(contents) = std::fs::read_to_string(path) {
            return Some(contents);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
