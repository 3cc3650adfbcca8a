//! Pod operations: one monitor per pod, started on demand and reused across processes.

use std::time::Duration;

use super::types::PodInfo;
use super::{Engine, EngineError, list_dir};
use crate::cgroup::{CgroupError, CgroupParent, Placement};
use crate::dbus;
use crate::error::ShimError;
use crate::monitor::{self, MonitorSpec, PodMonitor};

/// The file in a pod's directory holding its cgroup parent.
const CGROUP_PARENT: &str = "cgroup-parent";

/// Grace period of each container when a whole pod is stopped.
const POD_STOP_GRACE: Duration = Duration::from_secs(10);

impl Engine {
    /// Ensures the pod's monitor runs, spawning it if needed; `None` for a handler that runs
    /// conmon per container (the pod is then just its directory).
    ///
    /// # Errors
    /// An invalid name, or the monitor failing to start.
    pub async fn pod_run(&self, pod: &str) -> Result<Option<PodMonitor>, EngineError> {
        self.pod_run_in(pod, None).await
    }

    /// [`Self::pod_run`] for a pod whose cgroup parent is `cgroup_parent` (CRI's
    /// `cgroup_parent`: an absolute cgroup path with cgroupfs, a slice with systemd). A pod
    /// keeps the parent it was first run with; its busybox containers and, with
    /// `monitor_cgroup = "pod"`, its monitor go under it.
    ///
    /// # Errors
    /// An invalid name or parent, a parent other than the pod's, or the monitor failing to
    /// start or to be placed.
    pub async fn pod_run_in(
        &self,
        pod: &str,
        cgroup_parent: Option<&str>,
    ) -> Result<Option<PodMonitor>, EngineError> {
        let dir = self.pod_dir(pod)?;
        std::fs::create_dir_all(&dir).map_err(ShimError::io("create", &dir))?;
        let parent = self.settle_cgroup_parent(pod, cgroup_parent)?;
        if !self.pod_handler() {
            return Ok(None);
        }
        let mut spec = MonitorSpec::for_handler(&self.handler_name, &self.handler, &self.config);
        spec.placement = Placement::resolve(
            self.config.cgroup_manager,
            &self.handler.monitor_cgroup,
            parent.as_ref(),
            pod,
            dbus::system_bus_address(),
        )?;
        let monitor = monitor::ensure_monitor(&spec, &self.run_dir(pod)?).await?;
        if monitor.spawned {
            tracing::info!(pod, pid = monitor.pid, "pod monitor started");
        } else {
            tracing::info!(pod, pid = monitor.pid, "pod monitor already running");
        }
        Ok(Some(monitor))
    }

    /// The pod's cgroup parent, if it was given one.
    ///
    /// # Errors
    /// An invalid name, or an unreadable or invalid stored parent.
    pub fn cgroup_parent(&self, pod: &str) -> Result<Option<CgroupParent>, EngineError> {
        let path = self.pod_dir(pod)?.join(CGROUP_PARENT);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(CgroupParent::parse(
                self.config.cgroup_manager,
                &text,
            )?)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(ShimError::io("read", &path)(err).into()),
        }
    }

    /// The pod's cgroup parent, storing `requested` if the pod has none yet.
    fn settle_cgroup_parent(
        &self,
        pod: &str,
        requested: Option<&str>,
    ) -> Result<Option<CgroupParent>, EngineError> {
        let existing = self.cgroup_parent(pod)?;
        let Some(requested) = requested else {
            return Ok(existing);
        };
        let parent = CgroupParent::parse(self.config.cgroup_manager, requested)?;
        match existing {
            Some(existing) if existing != parent => Err(CgroupError::ParentConflict {
                pod: pod.to_owned(),
                existing: existing.to_string(),
                requested: requested.to_owned(),
            }
            .into()),
            Some(existing) => Ok(Some(existing)),
            None => {
                let path = self.pod_dir(pod)?.join(CGROUP_PARENT);
                std::fs::write(&path, requested).map_err(ShimError::io("write", &path))?;
                Ok(Some(parent))
            }
        }
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
        let run_dir = self.run_dir(pod)?;
        monitor::shutdown_monitor(&run_dir).await?;
        monitor::release_cgroups(&run_dir).await?;
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
