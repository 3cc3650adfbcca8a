//! Where a pod monitor runs: `monitor_cgroup` of a pod handler under `[crio.runtime]
//! cgroup_manager`, as CRI-O places conmon-rs.
//!
//! - cgroupfs: `""` leaves the monitor in the engine's cgroups; `"pod"` moves it into
//!   `<pod cgroup parent>/crio-conmon-<pod>`; an absolute path moves it into that cgroup.
//!   Missing directories are created ([`fs`]) and removed with the pod.
//! - systemd: a transient scope `crio-conmon-<pod>.scope` in the slice (`""`: `system.slice`,
//!   `"pod"`: the pod's parent slice), made by systemd over D-Bus ([`systemd`]).

pub mod fs;
pub mod systemd;

use std::fmt;
use std::path::PathBuf;

use conmon_proto::types::CgroupManager;

pub use self::systemd::SystemdError;

/// The prefix of every cgroup and unit runtime-shim names, CRI-O's (`crio-<id>`,
/// `crio-conmon-<id>`), so tools that know CRI-O's layout find the monitors.
pub const PREFIX: &str = "crio";

/// An absolute cgroup path: `/` or `/`-separated plain names (no `.`, `..` or empty ones).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CgroupPath(String);

impl CgroupPath {
    /// Parses `text`.
    ///
    /// # Errors
    /// [`CgroupError::InvalidPath`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, CgroupError> {
        let invalid = |reason| CgroupError::InvalidPath {
            path: text.to_owned(),
            reason,
        };
        let Some(rest) = text.strip_prefix('/') else {
            return Err(invalid("not absolute"));
        };
        if text.contains('\0') {
            return Err(invalid("contains a NUL byte"));
        }
        if !rest.is_empty()
            && rest
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(invalid("empty, '.' or '..' component"));
        }
        Ok(Self(text.to_owned()))
    }

    /// The path's components below the root.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// This path with `name` (a plain name) appended.
    fn join(&self, name: &str) -> Self {
        Self(format!("{}/{name}", self.0.trim_end_matches('/')))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A handler's `monitor_cgroup`, read once; which values work depends on the manager.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MonitorCgroup {
    /// `""`: cgroupfs leaves the monitor where it starts; systemd uses `system.slice`.
    #[default]
    Default,
    /// `"pod"`: the pod's cgroup parent.
    Pod,
    /// An absolute cgroup path (cgroupfs).
    Path(CgroupPath),
    /// A systemd slice, `NAME.slice`.
    Slice(String),
}

impl MonitorCgroup {
    /// Parses a `monitor_cgroup` value.
    ///
    /// # Errors
    /// A value that is neither `""`, `"pod"`, an absolute path nor a slice, as a message.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "" => Ok(Self::Default),
            "pod" => Ok(Self::Pod),
            _ if text.starts_with('/') => CgroupPath::parse(text)
                .map(Self::Path)
                .map_err(|err| err.to_string()),
            _ if is_slice(text) => Ok(Self::Slice(text.to_owned())),
            _ => Err(format!(
                "'{text}' is not \"pod\", an absolute cgroup path or a systemd slice (NAME.slice)"
            )),
        }
    }

    /// Whether `manager` can place a monitor here. Like CRI-O, cgroupfs takes `system.slice`
    /// (CRI-O's default for every manager) as `""`.
    pub fn works_with(&self, manager: CgroupManager) -> bool {
        match (self, manager) {
            (Self::Default | Self::Pod, _) => true,
            (Self::Path(_), manager) => manager == CgroupManager::Cgroupfs,
            (Self::Slice(slice), CgroupManager::Cgroupfs) => slice == DEFAULT_SLICE,
            (Self::Slice(_), CgroupManager::Systemd) => true,
        }
    }
}

impl fmt::Display for MonitorCgroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => Ok(()),
            Self::Pod => f.write_str("pod"),
            Self::Path(path) => path.fmt(f),
            Self::Slice(slice) => f.write_str(slice),
        }
    }
}

/// The slice of monitors with `monitor_cgroup = ""` under systemd (CRI-O's default).
pub const DEFAULT_SLICE: &str = "system.slice";

/// How `crio.conf` spells `manager`.
pub(crate) fn manager_name(manager: CgroupManager) -> &'static str {
    match manager {
        CgroupManager::Cgroupfs => "cgroupfs",
        CgroupManager::Systemd => "systemd",
    }
}

/// A slice unit name: systemd's unit name characters, ending in `.slice`.
fn is_slice(text: &str) -> bool {
    text.strip_suffix(".slice").is_some_and(|name| {
        !name.is_empty()
            && text.len() <= 255
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-' | '\\'))
    })
}

/// A pod's cgroup parent (CRI's `cgroup_parent`): where its containers' cgroups go, and its
/// monitor's with `monitor_cgroup = "pod"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupParent {
    /// cgroupfs: an absolute cgroup path.
    Path(CgroupPath),
    /// systemd: a slice.
    Slice(String),
}

impl CgroupParent {
    /// Parses `text` as a parent under `manager`.
    ///
    /// # Errors
    /// [`CgroupError::InvalidParent`] when it is not an absolute path (cgroupfs) or a slice
    /// (systemd).
    pub fn parse(manager: CgroupManager, text: &str) -> Result<Self, CgroupError> {
        match manager {
            CgroupManager::Cgroupfs => CgroupPath::parse(text).map(Self::Path),
            CgroupManager::Systemd if is_slice(text) => Ok(Self::Slice(text.to_owned())),
            CgroupManager::Systemd => Err(CgroupError::InvalidParent {
                parent: text.to_owned(),
                expected: "a systemd slice (NAME.slice)",
            }),
        }
    }

    /// The OCI `linux.cgroupsPath` of container `id` under this parent, as CRI-O builds it.
    pub fn container_cgroups_path(&self, id: &str) -> String {
        match self {
            Self::Path(path) => path.join(&format!("{PREFIX}-{id}")).0,
            Self::Slice(slice) => format!("{slice}:{PREFIX}:{id}"),
        }
    }
}

impl fmt::Display for CgroupParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(path) => path.fmt(f),
            Self::Slice(slice) => f.write_str(slice),
        }
    }
}

/// The `linux.cgroupsPath` of a busybox container `id` of a pod: under the pod's parent when
/// it has one; else, when cgroupfs moves the monitor to a path of its own, under CRI-O's
/// default parent `/crio` (runc's default would nest the container in the monitor's cgroup);
/// else none, runc's default.
pub fn container_cgroups_path(
    manager: CgroupManager,
    monitor_cgroup: &MonitorCgroup,
    parent: Option<&CgroupParent>,
    id: &str,
) -> Option<String> {
    match (parent, manager, monitor_cgroup) {
        (Some(parent), _, _) => Some(parent.container_cgroups_path(id)),
        (None, CgroupManager::Cgroupfs, MonitorCgroup::Path(_)) => Some(
            CgroupParent::Path(CgroupPath(DEFAULT_PARENT.to_owned())).container_cgroups_path(id),
        ),
        (None, _, _) => None,
    }
}

/// CRI-O's cgroupfs parent of containers whose pod has none.
const DEFAULT_PARENT: &str = "/crio";

/// Where a new monitor goes, resolved from the handler, the manager and the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Where it starts (the engine's cgroups).
    Inherit,
    /// cgroupfs: into this cgroup in every hierarchy.
    Cgroupfs(CgroupPath),
    /// systemd: a transient scope.
    Scope {
        /// The D-Bus address of systemd's bus.
        bus: String,
        /// `crio-conmon-<pod>.scope`.
        unit: String,
        /// Its slice.
        slice: String,
    },
}

impl Placement {
    /// Where `monitor_cgroup` under `manager` puts the monitor of `pod` (whose cgroup parent
    /// is `parent`, if it has one); systemd is reached at `bus`.
    ///
    /// # Errors
    /// `"pod"` for a pod without a cgroup parent; a value the manager cannot place.
    pub fn resolve(
        manager: CgroupManager,
        monitor_cgroup: &MonitorCgroup,
        parent: Option<&CgroupParent>,
        pod: &str,
        bus: String,
    ) -> Result<Self, CgroupError> {
        let unit_name = format!("{PREFIX}-conmon-{pod}");
        let unsupported = || CgroupError::Unsupported {
            monitor_cgroup: monitor_cgroup.clone(),
            manager,
        };
        let scope = |slice: &str| Self::Scope {
            bus: bus.clone(),
            unit: format!("{unit_name}.scope"),
            slice: slice.to_owned(),
        };
        match (manager, monitor_cgroup, parent) {
            (_, MonitorCgroup::Pod, None) => Err(CgroupError::NoPodParent(pod.to_owned())),
            (CgroupManager::Cgroupfs, MonitorCgroup::Default, _) => Ok(Self::Inherit),
            (CgroupManager::Cgroupfs, MonitorCgroup::Slice(_), _) => {
                if monitor_cgroup.works_with(manager) {
                    Ok(Self::Inherit)
                } else {
                    Err(unsupported())
                }
            }
            (CgroupManager::Cgroupfs, MonitorCgroup::Path(path), _) => {
                Ok(Self::Cgroupfs(path.clone()))
            }
            (_, MonitorCgroup::Pod, Some(CgroupParent::Path(path))) => {
                Ok(Self::Cgroupfs(path.join(&unit_name)))
            }
            (_, MonitorCgroup::Pod, Some(CgroupParent::Slice(slice))) => Ok(scope(slice)),
            (CgroupManager::Systemd, MonitorCgroup::Default, _) => Ok(scope(DEFAULT_SLICE)),
            (CgroupManager::Systemd, MonitorCgroup::Slice(slice), _) => Ok(scope(slice)),
            (CgroupManager::Systemd, MonitorCgroup::Path(_), _) => Err(unsupported()),
        }
    }
}

/// Why a monitor could not be placed (or its cgroups removed); each names the cgroup and the
/// controller (hierarchy) involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup path that is not absolute or has `.`/`..`/empty components.
    #[error("invalid cgroup path '{path}': {reason}")]
    InvalidPath {
        /// The path given.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A pod cgroup parent the manager cannot use.
    #[error("invalid cgroup parent '{parent}': expected {expected}")]
    InvalidParent {
        /// The parent given.
        parent: String,
        /// What the manager takes.
        expected: &'static str,
    },
    /// `monitor_cgroup = "pod"` for a pod that has no cgroup parent.
    #[error(
        "monitor_cgroup = \"pod\" needs the cgroup parent of pod '{0}' \
         (runtime-shim pod run --cgroup-parent)"
    )]
    NoPodParent(String),
    /// A `monitor_cgroup` the manager cannot place a monitor in.
    #[error(
        "monitor_cgroup '{monitor_cgroup}' does not work with cgroup_manager = \"{}\"",
        manager_name(*manager)
    )]
    Unsupported {
        /// The value.
        monitor_cgroup: MonitorCgroup,
        /// The manager.
        manager: CgroupManager,
    },
    /// The pod already has another cgroup parent.
    #[error("pod '{pod}' has cgroup parent '{existing}', not '{requested}'")]
    ParentConflict {
        /// The pod.
        pod: String,
        /// The parent it has.
        existing: String,
        /// The parent asked for.
        requested: String,
    },
    /// `/proc/self/mountinfo` could not be read.
    #[error("read /proc/self/mountinfo")]
    Mountinfo(#[source] std::io::Error),
    /// No cgroup hierarchy is mounted under `/sys/fs/cgroup`.
    #[error("no cgroup hierarchy is mounted under /sys/fs/cgroup")]
    NoHierarchy,
    /// A hierarchy is mounted from a subtree that does not hold the cgroup.
    #[error("cgroup {cgroup} is outside the {controller} hierarchy's mount of {root}")]
    OutsideMount {
        /// The cgroup.
        cgroup: CgroupPath,
        /// The hierarchy's controllers.
        controller: String,
        /// The subtree its mount shows.
        root: String,
    },
    /// A cgroup file system operation failed.
    #[error("{action} cgroup {cgroup} ({controller} hierarchy at {})", mount.display())]
    Fs {
        /// What was attempted.
        action: &'static str,
        /// The cgroup.
        cgroup: CgroupPath,
        /// The hierarchy's controllers (`unified` for cgroup v2).
        controller: String,
        /// Where the hierarchy is mounted.
        mount: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The record of the cgroups runtime-shim created could not be read or written.
    #[error("cgroup record '{}': {message}", path.display())]
    Record {
        /// The record file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// systemd could not make the scope.
    #[error(transparent)]
    Systemd(#[from] SystemdError),
}

#[cfg(test)]
mod tests;
