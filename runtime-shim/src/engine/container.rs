//! Container operations: create through the pod's monitor (or a conmon per container), start,
//! stop, kill and remove through the runtime, exec and attach through the monitor.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::types::{BundleSource, ContainerInfo, Stdio};
use super::{Engine, EngineError, list_dir, validate_name};
use crate::attach::AttachSocket;
use crate::bundle;
use crate::cgroup;
use crate::client::{Attach, CreateContainer, ExecSync, ExecSyncResult, LogDriver, LogFormat};
use crate::conmon_oci::{self, ConmonContainer};
use crate::error::ShimError;
use crate::runtime::{self, ContainerStatus};

/// How long a container's exit file may trail the end of its output.
const EXIT_FILE_DELAY: Duration = Duration::from_secs(10);

impl Engine {
    /// Creates container `id` in `pod` (starting the pod's monitor if needed); returns the PID
    /// of its init (pod handlers) or of its conmon (oci handlers).
    ///
    /// # Errors
    /// Invalid names, an existing container, bundle, monitor or runtime failures; the
    /// container's directory is removed again on failure.
    pub async fn create(
        &self,
        pod: &str,
        id: &str,
        bundle: BundleSource,
        stdio: Stdio,
    ) -> Result<u32, EngineError> {
        validate_name("container", id)?;
        if self.pod_of(id).is_ok() {
            return Err(EngineError::ContainerExists(id.to_owned()));
        }
        let monitor = self.pod_run(pod).await?;
        let dir = self.container_dir(pod, id)?;
        std::fs::create_dir_all(&dir).map_err(ShimError::io("create", &dir))?;
        let created = async {
            let exits = self.root.join("exits");
            std::fs::create_dir_all(&exits).map_err(ShimError::io("create", &exits))?;
            let cgroups_path = cgroup::container_cgroups_path(
                self.config.cgroup_manager,
                &self.handler.monitor_cgroup,
                self.cgroup_parent(pod)?.as_ref(),
                id,
            );
            let bundle = self.bundle(&dir, bundle, stdio, cgroups_path)?;
            match &monitor {
                Some(monitor) => {
                    let spec = self.create_spec(pod, id, &bundle, stdio)?;
                    Ok(monitor.handle.create_container(spec).await?)
                }
                None => self.create_under_conmon(id, &bundle, &dir).await,
            }
        }
        .await;
        match created {
            Ok(pid) => {
                tracing::info!(container_id = id, pid, "container created");
                Ok(pid)
            }
            Err(err) => {
                if let Err(cleanup) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(container_id = id, error = %cleanup, "remove container directory");
                }
                Err(err)
            }
        }
    }

    /// The container's bundle: `source`'s, or a busybox one written into `dir` (in
    /// `cgroups_path`, under the pod's cgroup parent, when it has one).
    fn bundle(
        &self,
        dir: &Path,
        source: BundleSource,
        stdio: Stdio,
        cgroups_path: Option<String>,
    ) -> Result<PathBuf, EngineError> {
        let command = match source {
            BundleSource::Path(path) => return Ok(path),
            BundleSource::Busybox(command) => command,
        };
        let args: Vec<&str> = if command.is_empty() {
            vec!["sleep", "infinity"]
        } else {
            command.iter().map(String::as_str).collect()
        };
        let runtime = self.handler.runtime_binary(&self.handler_name);
        Ok(bundle::busybox_bundle(
            &dir.join("bundle"),
            &runtime,
            &args,
            |config| {
                if stdio.tty {
                    config["process"]["terminal"] = true.into();
                }
                if let Some(path) = cgroups_path {
                    config["linux"]["cgroupsPath"] = path.into();
                }
            },
        )?)
    }

    fn create_spec(
        &self,
        pod: &str,
        id: &str,
        bundle: &Path,
        stdio: Stdio,
    ) -> Result<CreateContainer, EngineError> {
        // CRI-O's -1 (unlimited) is the protocol's 0.
        let max_size = u64::try_from(self.config.log_size_max).unwrap_or(0);
        Ok(CreateContainer {
            id: id.to_owned(),
            bundle: bundle.to_owned(),
            exit_paths: vec![
                self.exit_file(id)?,
                self.container_dir(pod, id)?.join("exit"),
            ],
            oom_exit_paths: vec![bundle.join("oom")],
            log_drivers: vec![LogDriver {
                format: LogFormat::Cri,
                path: self.log_path(pod, id)?,
                max_size,
            }],
            cgroup_manager: self.config.cgroup_manager,
            stdin: stdio.interactive,
            terminal: stdio.tty,
            ..CreateContainer::default()
        })
    }

    /// `runtime_type = "oci"`: the container gets its own conmon (`monitor_path`).
    async fn create_under_conmon(
        &self,
        id: &str,
        bundle: &Path,
        dir: &Path,
    ) -> Result<u32, EngineError> {
        let container = ConmonContainer {
            id,
            bundle,
            log_path: &dir.join("ctr.log"),
            exit_dir: &self.root.join("exits"),
            state_dir: dir,
        };
        let monitor = self.handler.monitor_binary();
        let pid = conmon_oci::create(&monitor, &self.oci_runtime(), &container).await?;
        tracing::info!(
            container_id = id,
            conmon_pid = pid,
            "container created under conmon"
        );
        Ok(pid)
    }

    /// Starts a created container.
    ///
    /// # Errors
    /// An unknown container or a runtime failure.
    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.pod_of(id)?;
        self.oci_runtime().start(id).await?;
        tracing::info!(container_id = id, "container started");
        Ok(())
    }

    /// Runs `command` in a running container (killed after `timeout`, if given).
    ///
    /// # Errors
    /// An unknown container, a handler without pod monitors, or the monitor failing.
    pub async fn exec(
        &self,
        id: &str,
        timeout: Option<Duration>,
        command: Vec<String>,
    ) -> Result<ExecSyncResult, EngineError> {
        let pod = self.pod_of(id)?;
        let monitor = self.pod_monitor(&pod, "exec").await?;
        let spec = ExecSync {
            id: id.to_owned(),
            command,
            timeout,
            cgroup_manager: self.config.cgroup_manager,
            ..ExecSync::default()
        };
        let result = monitor.handle.exec_sync(spec).await?;
        if result.timed_out {
            tracing::warn!(container_id = id, "command timed out");
        } else {
            tracing::info!(
                container_id = id,
                exit_code = result.exit_code,
                "exec finished"
            );
        }
        Ok(result)
    }

    /// Opens an attach socket to the container (where CRI-O puts it, in the monitor's runtime
    /// directory); with `stdin_once` the container's stdin closes when this client's does.
    ///
    /// # Errors
    /// An unknown container, a handler without pod monitors, or the monitor failing.
    pub async fn attach(&self, id: &str, stdin_once: bool) -> Result<AttachSocket, EngineError> {
        let pod = self.pod_of(id)?;
        let monitor = self.pod_monitor(&pod, "attach").await?;
        let socket_path = self.run_dir(&pod)?.join(id).join("attach");
        let spec = Attach {
            id: id.to_owned(),
            socket_path: socket_path.clone(),
            stop_after_stdin_eof: stdin_once,
            ..Attach::default()
        };
        monitor.handle.attach(spec).await?;
        AttachSocket::connect(&socket_path)
            .map_err(ShimError::io("connect to attach socket", &socket_path))
            .map_err(EngineError::from)
    }

    /// The exit code of a container whose output ended (its exit file follows at once).
    ///
    /// # Errors
    /// No exit file within a grace period, or one that holds no exit code.
    pub async fn exit_code_after_output(&self, id: &str) -> Result<i32, EngineError> {
        runtime::wait_for_exit_file(&self.exit_file(id)?, EXIT_FILE_DELAY)
            .await?
            .ok_or_else(|| EngineError::NoExitFile(id.to_owned()))
    }

    /// The container's CRI log, as stored.
    ///
    /// # Errors
    /// An unknown container or an unreadable log.
    pub fn log(&self, id: &str) -> Result<Vec<u8>, EngineError> {
        let path = self.log_path(&self.pod_of(id)?, id)?;
        Ok(std::fs::read(&path).map_err(ShimError::io("read", &path))?)
    }

    /// Stops a container (SIGTERM, SIGKILL after `grace`; a never-started one is killed at
    /// once) and returns its exit code.
    ///
    /// # Errors
    /// An unknown container, a runtime failure, or no exit file.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<i32, EngineError> {
        self.pod_of(id)?;
        let runtime = self.oci_runtime();
        let exit_file = self.exit_file(id)?;
        let code = if runtime.state(id).await? == Some(ContainerStatus::Created) {
            // Never started: nothing to signal gracefully.
            runtime.kill(id, "KILL").await?;
            runtime.stop(id, &exit_file, Duration::ZERO).await?
        } else {
            runtime.stop(id, &exit_file, grace).await?
        };
        tracing::info!(container_id = id, exit_code = code, "container stopped");
        Ok(code)
    }

    /// Removes a container (killing it if it runs) and its state.
    ///
    /// # Errors
    /// An unknown container, a runtime failure, or state that cannot be removed.
    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let pod = self.pod_of(id)?;
        self.oci_runtime().delete(id).await?;
        // The monitor writes the exit files after the kill; removing the directory under it
        // would race the last of them (pod handlers write one into the container directory).
        let last_exit_file = if self.pod_handler() {
            self.container_dir(&pod, id)?.join("exit")
        } else {
            self.exit_file(id)?
        };
        if runtime::wait_for_exit_file(&last_exit_file, EXIT_FILE_DELAY)
            .await?
            .is_none()
        {
            tracing::warn!(
                container_id = id,
                "no exit file after delete; removing anyway"
            );
        }
        let exit_file = self.exit_file(id)?;
        match std::fs::remove_file(&exit_file) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(ShimError::io("remove", &exit_file)(err).into());
            }
            _ => {}
        }
        let dir = self.container_dir(&pod, id)?;
        std::fs::remove_dir_all(&dir).map_err(ShimError::io("remove", &dir))?;
        tracing::info!(container_id = id, "container removed");
        Ok(())
    }

    /// The containers of `pod` (of every pod for `None`), with their state.
    ///
    /// # Errors
    /// Invalid names, unreadable state or a runtime failure.
    pub async fn list(&self, pod: Option<&str>) -> Result<Vec<ContainerInfo>, EngineError> {
        let pods = match pod {
            Some(pod) => vec![pod.to_owned()],
            None => list_dir(&self.root.join("pods"))?,
        };
        let runtime = self.oci_runtime();
        let mut containers = Vec::new();
        for pod in pods {
            for id in self.pod_containers(&pod)? {
                containers.push(ContainerInfo {
                    status: runtime.state(&id).await?,
                    exit_code: runtime::read_exit_file(&self.exit_file(&id)?)?,
                    pod: pod.clone(),
                    id,
                });
            }
        }
        Ok(containers)
    }
}
