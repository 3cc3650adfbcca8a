//! Pod operations: one monitor per pod, started on demand and reused across processes.

use std::time::Duration;

use super::types::PodInfo;
use super::{Engine, EngineError, list_dir, validate_name};
use crate::error::ShimError;
use crate::monitor::{self, MonitorSpec, PodMonitor};

/// Grace period of each container when a whole pod is stopped.
const POD_STOP_GRACE: Duration = Duration::from_secs(10);

impl Engine {
    /// Ensures the pod's monitor runs, spawning it if needed; `None` for a handler that runs
    /// conmon per container (the pod is then just its directory).
    ///
    /// # Errors
    /// An invalid name, or the monitor failing to start.
    pub async fn pod_run(&self, pod: &str) -> Result<Option<PodMonitor>, EngineError> {
        validate_name("pod", pod)?;
        if !self.pod_handler() {
            let dir = self.pod_dir(pod)?;
            std::fs::create_dir_all(&dir).map_err(ShimError::io("create", &dir))?;
            return Ok(None);
        }
        let spec = MonitorSpec::for_handler(&self.handler_name, &self.handler, &self.config);
        let monitor = monitor::ensure_monitor(&spec, &self.run_dir(pod)?).await?;
        if monitor.spawned {
            tracing::info!(pod, pid = monitor.pid, "pod monitor started");
        } else {
            tracing::info!(pod, pid = monitor.pid, "pod monitor already running");
        }
        Ok(Some(monitor))
    }

    /// The pod's monitor for an operation that needs one.
    pub(super) async fn pod_monitor(
        &self,
        pod: &str,
        operation: &'static str,
    ) -> Result<PodMonitor, EngineError> {
        self.pod_run(pod)
            .await?
            .ok_or(EngineError::NeedsPodHandler(operation))
    }

    /// The pod's containers.
    pub(super) fn pod_containers(&self, pod: &str) -> Result<Vec<String>, EngineError> {
        Ok(list_dir(&self.pod_dir(pod)?.join("containers"))?)
    }

    /// Stops every container of the pod.
    ///
    /// # Errors
    /// An invalid name, or a container failing to stop.
    pub async fn pod_stop(&self, pod: &str) -> Result<(), EngineError> {
        for id in self.pod_containers(pod)? {
            self.stop(&id, POD_STOP_GRACE).await?;
        }
        Ok(())
    }

    /// Removes the pod: its containers, then its monitor, then its state.
    ///
    /// # Errors
    /// An invalid name, or a container, the monitor or the directory failing to go.
    pub async fn pod_rm(&self, pod: &str) -> Result<(), EngineError> {
        for id in self.pod_containers(pod)? {
            self.remove(&id).await?;
        }
        // Only now: a monitor kills whatever it still supervises when signalled.
        monitor::shutdown_monitor(&self.run_dir(pod)?).await?;
        let dir = self.pod_dir(pod)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(ShimError::io("remove", &dir))?;
        }
        tracing::info!(pod, "pod removed");
        Ok(())
    }

    /// Every pod, with its monitor if one answers.
    ///
    /// # Errors
    /// The state directory being unreadable.
    pub async fn pod_list(&self) -> Result<Vec<PodInfo>, EngineError> {
        let mut pods = Vec::new();
        for name in list_dir(&self.root.join("pods"))? {
            let monitor_pid = monitor::probe(&self.run_dir(&name)?)
                .await
                .map(|(_, pid)| pid);
            let containers = self.pod_containers(&name)?.len();
            pods.push(PodInfo {
                name,
                monitor_pid,
                containers,
            });
        }
        Ok(pods)
    }
}
