//! Handlers with `runtime_type = "oci"`: one C conmon per container, started with conmon's
//! command line as CRI-O does, so the per-pod and per-container models can be compared.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::error::ShimError;
use crate::poll;
use crate::runtime::{ContainerStatus, OciRuntime};

/// How long `runtime create` under conmon may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// One container to run under conmon.
#[derive(Debug, Clone)]
pub struct ConmonContainer<'a> {
    /// Container ID.
    pub id: &'a str,
    /// OCI bundle.
    pub bundle: &'a Path,
    /// CRI log file.
    pub log_path: &'a Path,
    /// Directory conmon writes `<id>` exit files to.
    pub exit_dir: &'a Path,
    /// Directory for conmon's pidfile and attach socket.
    pub state_dir: &'a Path,
}

/// Creates the container under a new conmon (`monitor`) and waits until the runtime reports
/// it created; returns conmon's PID.
///
/// # Errors
/// conmon failing to start, or the container not appearing in time.
pub async fn create(
    monitor: &Path,
    runtime: &OciRuntime,
    container: &ConmonContainer<'_>,
) -> Result<u32, ShimError> {
    let spawn_error = |message: String| ShimError::Spawn {
        monitor: monitor.to_owned(),
        message,
    };
    let pidfile: PathBuf = container.state_dir.join("conmon.pid");
    let mut command = tokio::process::Command::new(monitor);
    command
        .args([
            "--cid",
            container.id,
            "--cuuid",
            container.id,
            "--name",
            container.id,
        ])
        .arg("--runtime")
        .arg(&runtime.path)
        .arg("--runtime-arg")
        .arg(format!("--root={}", runtime.root.display()))
        .arg("--bundle")
        .arg(container.bundle)
        .arg("--container-pidfile")
        .arg(container.bundle.join("pidfile"))
        .arg("--conmon-pidfile")
        .arg(&pidfile)
        .arg("--log-path")
        .arg(container.log_path)
        .arg("--exit-dir")
        .arg(container.exit_dir)
        .arg("--socket-dir-path")
        .arg(container.state_dir);
    if runtime.systemd_cgroup {
        command.arg("--systemd-cgroup");
    }
    let output = command
        .envs(conmon_telemetry::propagation::to_env())
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|err| spawn_error(err.to_string()))?;
    if !output.status.success() {
        return Err(spawn_error(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    // conmon daemonizes before `runtime create` is done (an engine would wait on its sync pipe).
    let created = poll::until(CREATE_TIMEOUT, || async {
        match runtime.state(container.id).await {
            Ok(Some(ContainerStatus::Created)) => Some(Ok(())),
            Ok(_) => None,
            Err(err) => Some(Err(err)),
        }
    })
    .await;
    created.ok_or(ShimError::Timeout {
        what: "container creation under conmon",
        after: CREATE_TIMEOUT,
    })??;
    let content = std::fs::read_to_string(&pidfile)
        .map_err(|err| spawn_error(format!("read {}: {err}", pidfile.display())))?;
    content
        .trim()
        .parse()
        .map_err(|_| spawn_error(format!("conmon pidfile holds {content:?}")))
}
