//! Plain Rust forms of the requests and responses, one file per request family, with their one
//! encoding to and decoding from the wire. Domain code never sees capnp types; `proto/tests/golden/`
//! holds the codec to bytes captured from conmon-rs.

use std::path::{Path, PathBuf};

use capnp::text_list;

use crate::conmon;

mod container;
mod exec;
mod namespaces;
mod streaming;
#[cfg(test)]
mod tests;

pub use container::{CreateContainer, LogDriver, LogFormat};
pub use exec::{ExecSync, ExecSyncResult};
pub use namespaces::{CreateNamespaces, Namespace};
pub use streaming::{Attach, ServeAttach, ServeExec, ServePortForward, WindowSize};

/// Why a request could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Paths travel as `Text`, which holds UTF-8 only; sending a lossy or empty path instead
    /// would make the monitor act on a different file.
    #[error("path '{}' is not valid UTF-8", path.display())]
    NonUtf8Path {
        /// The offending path.
        path: PathBuf,
    },
}

/// How the runtime should manage a container's cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupManager {
    /// Through systemd (`--systemd-cgroup`); the protocol's default.
    #[default]
    Systemd,
    /// Directly in cgroupfs.
    Cgroupfs,
}

/// What `version` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionInfo {
    /// PID of the monitor daemon.
    pub process_id: u32,
    /// Semantic version.
    pub version: String,
    /// Release tag, empty for untagged builds.
    pub tag: String,
    /// Git commit.
    pub commit: String,
    /// Build date.
    pub build_date: String,
    /// Target triple.
    pub target: String,
    /// rustc version.
    pub rust_version: String,
    /// cargo version.
    pub cargo_version: String,
    /// Dependency tree (verbose only).
    pub cargo_tree: String,
}

impl VersionInfo {
    /// Decodes a response.
    ///
    /// # Errors
    /// Malformed messages and non-UTF-8 text.
    pub fn read(r: conmon::version_response::Reader<'_>) -> capnp::Result<Self> {
        Ok(Self {
            process_id: r.get_process_id(),
            version: r.get_version()?.to_string()?,
            tag: r.get_tag()?.to_string()?,
            commit: r.get_commit()?.to_string()?,
            build_date: r.get_build_date()?.to_string()?,
            target: r.get_target()?.to_string()?,
            rust_version: r.get_rust_version()?.to_string()?,
            cargo_version: r.get_cargo_version()?.to_string()?,
            cargo_tree: r.get_cargo_tree()?.to_string()?,
        })
    }

    /// Encodes the response into `r`.
    pub fn write(&self, mut r: conmon::version_response::Builder<'_>) {
        r.set_process_id(self.process_id);
        r.set_version(&self.version);
        r.set_tag(&self.tag);
        r.set_commit(&self.commit);
        r.set_build_date(&self.build_date);
        r.set_target(&self.target);
        r.set_rust_version(&self.rust_version);
        r.set_cargo_version(&self.cargo_version);
        r.set_cargo_tree(&self.cargo_tree);
    }
}

fn read_strings(list: text_list::Reader<'_>) -> capnp::Result<Vec<String>> {
    list.iter().map(|text| Ok(text?.to_string()?)).collect()
}

fn read_paths(list: text_list::Reader<'_>) -> capnp::Result<Vec<PathBuf>> {
    Ok(read_strings(list)?.into_iter().map(PathBuf::from).collect())
}

fn write_strings<'a>(
    init: impl FnOnce(u32) -> text_list::Builder<'a>,
    items: impl ExactSizeIterator<Item = &'a str>,
) {
    let mut list = init(count(items.len()));
    for (i, item) in (0u32..).zip(items) {
        list.set(i, item);
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Paths travel as Text, which holds UTF-8 only.
fn path_text(path: &Path) -> Result<&str, EncodeError> {
    path.to_str().ok_or_else(|| EncodeError::NonUtf8Path {
        path: path.to_path_buf(),
    })
}

/// Converts a path list up front: `write_strings` takes plain strings.
fn path_texts(paths: &[PathBuf]) -> Result<Vec<&str>, EncodeError> {
    paths.iter().map(|p| path_text(p)).collect()
}

fn read_cgroup_manager(
    value: Result<conmon::CgroupManager, capnp::NotInSchema>,
) -> capnp::Result<CgroupManager> {
    match value {
        Ok(conmon::CgroupManager::Systemd) => Ok(CgroupManager::Systemd),
        Ok(conmon::CgroupManager::Cgroupfs) => Ok(CgroupManager::Cgroupfs),
        Err(capnp::NotInSchema(n)) => Err(capnp::Error::failed(format!(
            "invalid request: unknown cgroup manager {n}"
        ))),
    }
}

fn wire_cgroup_manager(manager: CgroupManager) -> conmon::CgroupManager {
    match manager {
        CgroupManager::Systemd => conmon::CgroupManager::Systemd,
        CgroupManager::Cgroupfs => conmon::CgroupManager::Cgroupfs,
    }
}
