//! What a container engine does with pods and containers, as CRI-O does with a pod monitor:
//! the operations behind the `runtime-shim` command line and its demo, callable from any
//! program.
//!
//! State lives on disk under a root directory, so separate processes work together:
//! `<root>/pods/<pod>/run` is the monitor's runtime directory,
//! `<root>/pods/<pod>/cgroup-parent` the pod's cgroup parent if it was given one,
//! `<root>/pods/<pod>/containers/<id>` holds a container's bundle and CRI log, and
//! `<root>/exits/<id>` its exit file.

mod container;
mod pod;
mod types;

use std::path::{Path, PathBuf};

use conmon_proto::types::CgroupManager;

pub use self::types::{BundleSource, ContainerInfo, PodInfo, Stdio};
use crate::cgroup::CgroupError;
use crate::config::{Config, RuntimeHandler, RuntimeType};
use crate::error::ShimError;
use crate::runtime::OciRuntime;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration has no handler of that name.
    #[error("no runtime handler '{0}'")]
    NoHandler(String),
    /// A pod or container name that cannot be a directory name.
    #[error("invalid {what} name '{name}': use letters, digits, '-', '_' and '.'")]
    InvalidName {
        /// `pod` or `container`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// No container of that name under the root.
    #[error("no container '{id}' under {}", root.display())]
    NoContainer {
        /// The container.
        id: String,
        /// The engine's root.
        root: PathBuf,
    },
    /// A container of that name exists.
    #[error("container '{0}' exists already")]
    ContainerExists(String),
    /// The operation needs a monitor per pod and the handler runs conmon per container.
    #[error(
        "{0} needs a pod handler (runtime_type = \"pod\"); this handler runs conmon per container"
    )]
    NeedsPodHandler(&'static str),
    /// A container's output ended but no exit file appeared.
    #[error("container '{0}' output ended but it has no exit file")]
    NoExitFile(String),
    /// A cgroup parent or monitor cgroup that cannot be used.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The monitor, the runtime or the file system failed.
    #[error(transparent)]
    Shim(#[from] ShimError),
}

/// The engine: a configuration, the runtime handler it uses and the state root.
#[derive(Debug, Clone)]
pub struct Engine {
    config: Config,
    handler_name: String,
    handler: RuntimeHandler,
    root: PathBuf,
}

impl Engine {
    /// An engine using `config`'s default runtime handler, keeping state under `root`.
    ///
    /// # Errors
    /// [`EngineError::NoHandler`] when the default handler is missing.
    pub fn new(config: Config, root: PathBuf) -> Result<Self, EngineError> {
        let name = config.default_runtime.clone();
        let handler = config
            .handler(&name)
            .map(|(_, handler)| handler.clone())
            .ok_or(EngineError::NoHandler(name.clone()))?;
        Ok(Self {
            config,
            handler_name: name,
            handler,
            root,
        })
    }

    /// Whether the handler runs one monitor per pod (else one conmon per container).
    fn pod_handler(&self) -> bool {
        self.handler.runtime_type == RuntimeType::Pod
    }

    fn oci_runtime(&self) -> OciRuntime {
        OciRuntime {
            path: self.handler.runtime_binary(&self.handler_name),
            root: self.handler.runtime_root(),
            systemd_cgroup: self.config.cgroup_manager == CgroupManager::Systemd,
        }
    }

    // Every path built from a name checks the name, whichever command asked: a name like
    // `../x` must never reach outside the root.

    fn pod_dir(&self, pod: &str) -> Result<PathBuf, EngineError> {
        validate_name("pod", pod)?;
        Ok(self.root.join("pods").join(pod))
    }

    /// The pod monitor's runtime directory (its socket, pidfile and attach sockets).
    ///
    /// # Errors
    /// [`EngineError::InvalidName`] for a name that is not a plain file name.
    pub fn run_dir(&self, pod: &str) -> Result<PathBuf, EngineError> {
        Ok(self.pod_dir(pod)?.join("run"))
    }

    fn container_dir(&self, pod: &str, id: &str) -> Result<PathBuf, EngineError> {
        validate_name("container", id)?;
        Ok(self.pod_dir(pod)?.join("containers").join(id))
    }

    /// The CRI log of container `id` in `pod`.
    ///
    /// # Errors
    /// [`EngineError::InvalidName`] for a name that is not a plain file name.
    pub fn log_path(&self, pod: &str, id: &str) -> Result<PathBuf, EngineError> {
        Ok(self.container_dir(pod, id)?.join("ctr.log"))
    }

    /// The exit file of container `id`.
    ///
    /// # Errors
    /// [`EngineError::InvalidName`] for a name that is not a plain file name.
    pub fn exit_file(&self, id: &str) -> Result<PathBuf, EngineError> {
        validate_name("container", id)?;
        Ok(self.root.join("exits").join(id))
    }

    /// The pod container `id` belongs to.
    ///
    /// # Errors
    /// [`EngineError::NoContainer`] when no pod has it.
    pub fn pod_of(&self, id: &str) -> Result<String, EngineError> {
        validate_name("container", id)?;
        for pod in list_dir(&self.root.join("pods"))? {
            if self.container_dir(&pod, id)?.exists() {
                return Ok(pod);
            }
        }
        Err(EngineError::NoContainer {
            id: id.to_owned(),
            root: self.root.clone(),
        })
    }
}

/// Names become directory names: keep them plain (no separators, no `.`/`..`).
fn validate_name(what: &'static str, name: &str) -> Result<(), EngineError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        Ok(())
    } else {
        Err(EngineError::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

/// The sorted names in `dir`; none when it does not exist.
fn list_dir(dir: &Path) -> Result<Vec<String>, ShimError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ShimError::io("list", dir)(source)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_plain() {
        for good in ["a", "pod-1", "c_2.x"] {
            assert!(validate_name("pod", good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a b"] {
            let err = validate_name("pod", bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }
}
