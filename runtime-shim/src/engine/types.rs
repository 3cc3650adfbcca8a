//! What engine operations take and report.

use std::path::PathBuf;

use crate::runtime::ContainerStatus;

/// Where a new container's bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleSource {
    /// An existing OCI bundle.
    Path(PathBuf),
    /// A busybox bundle written into the container's directory, running this command (an
    /// empty one sleeps forever).
    Busybox(Vec<String>),
}

/// How a new container's stdio is set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stdio {
    /// Keep its stdin open (for attach).
    pub interactive: bool,
    /// Run it on a terminal.
    pub tty: bool,
}

/// A container as [`Engine::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Its pod.
    pub pod: String,
    /// The container.
    pub id: String,
    /// What the runtime says of it; `None` when the runtime does not know it.
    pub status: Option<ContainerStatus>,
    /// Its exit code, once it exited.
    pub exit_code: Option<i32>,
}

/// A pod as [`Engine::pod_list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// The pod.
    pub name: String,
    /// Its monitor's PID, when one answers.
    pub monitor_pid: Option<u32>,
    /// How many containers it has.
    pub containers: usize,
}
