//! `createContainer` and its log drivers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{
    CgroupManager, EncodeError, count, path_text, path_texts, read_cgroup_manager, read_paths,
    read_strings, wire_cgroup_manager, write_strings,
};
use crate::conmon::{self, log_driver};
use crate::map;
/// The format a log driver writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `<RFC3339Nano> <stream> <F|P> <content>` lines, as kubelet reads them.
    Cri,
    /// One JSON object per line segment.
    Json,
    /// One journal entry per line segment; path and size limit do not apply.
    Journald,
}

/// One log destination of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDriver {
    /// Output format.
    pub format: LogFormat,
    /// Log file (unused by journald).
    pub path: PathBuf,
    /// Size after which the file is truncated and started again; 0 means unlimited.
    pub max_size: u64,
}

/// `createContainer`: run `runtime create` and supervise the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateContainer {
    /// Container ID.
    pub id: String,
    /// OCI bundle directory.
    pub bundle: PathBuf,
    /// Whether the container gets a terminal.
    pub terminal: bool,
    /// Whether the container gets a stdin pipe.
    pub stdin: bool,
    /// Files that receive the exit code.
    pub exit_paths: Vec<PathBuf>,
    /// Files created when the container was OOM-killed.
    pub oom_exit_paths: Vec<PathBuf>,
    /// Where the container's output goes.
    pub log_drivers: Vec<LogDriver>,
    /// Command run after the container exited and its exit files were written.
    pub cleanup_cmd: Vec<String>,
    /// Runtime arguments before `create`.
    pub global_args: Vec<String>,
    /// Runtime arguments after `--pid-file <file>`.
    pub command_args: Vec<String>,
    /// Environment added to the runtime's.
    pub env: BTreeMap<String, String>,
    /// Cgroup manager for the runtime.
    pub cgroup_manager: CgroupManager,
    /// Descriptor slots to pass to the runtime (fd socket).
    pub additional_fds: Vec<u64>,
    /// Descriptor slots held open while the container runs (fd socket).
    pub leak_fds: Vec<u64>,
}

impl LogDriver {
    fn read(driver: log_driver::Reader<'_>) -> capnp::Result<Self> {
        let format = match driver.get_type() {
            Ok(log_driver::Type::ContainerRuntimeInterface) => LogFormat::Cri,
            Ok(log_driver::Type::Json) => LogFormat::Json,
            Ok(log_driver::Type::Journald) => LogFormat::Journald,
            Err(capnp::NotInSchema(n)) => {
                return Err(capnp::Error::failed(format!(
                    "invalid request: unknown log driver type {n}"
                )));
            }
        };
        Ok(Self {
            format,
            path: PathBuf::from(driver.get_path()?.to_string()?),
            max_size: driver.get_max_size(),
        })
    }

    fn write(&self, mut driver: log_driver::Builder<'_>) -> Result<(), EncodeError> {
        driver.set_type(match self.format {
            LogFormat::Cri => log_driver::Type::ContainerRuntimeInterface,
            LogFormat::Json => log_driver::Type::Json,
            LogFormat::Journald => log_driver::Type::Journald,
        });
        driver.set_path(path_text(&self.path)?);
        driver.set_max_size(self.max_size);
        Ok(())
    }
}

impl CreateContainer {
    /// Decodes a request.
    ///
    /// # Errors
    /// Malformed messages, non-UTF-8 text and unknown enum values.
    pub fn read(r: conmon::create_container_request::Reader<'_>) -> capnp::Result<Self> {
        Ok(Self {
            id: r.get_id()?.to_string()?,
            bundle: PathBuf::from(r.get_bundle_path()?.to_string()?),
            terminal: r.get_terminal(),
            stdin: r.get_stdin(),
            exit_paths: read_paths(r.get_exit_paths()?)?,
            oom_exit_paths: read_paths(r.get_oom_exit_paths()?)?,
            log_drivers: r
                .get_log_drivers()?
                .iter()
                .map(LogDriver::read)
                .collect::<capnp::Result<_>>()?,
            cleanup_cmd: read_strings(r.get_cleanup_cmd()?)?,
            global_args: read_strings(r.get_global_args()?)?,
            command_args: read_strings(r.get_command_args()?)?,
            env: map::read(r.get_env_vars()?)?,
            cgroup_manager: read_cgroup_manager(r.get_cgroup_manager())?,
            additional_fds: r.get_additional_fds()?.iter().collect(),
            leak_fds: r.get_leak_fds()?.iter().collect(),
        })
    }

    /// Encodes the request into `r`.
    ///
    /// # Errors
    /// A bundle, exit-file or log path that is not UTF-8.
    pub fn write(
        &self,
        mut r: conmon::create_container_request::Builder<'_>,
    ) -> Result<(), EncodeError> {
        let exit_paths = path_texts(&self.exit_paths)?;
        let oom_exit_paths = path_texts(&self.oom_exit_paths)?;
        r.set_id(&self.id);
        r.set_bundle_path(path_text(&self.bundle)?);
        r.set_terminal(self.terminal);
        r.set_stdin(self.stdin);
        write_strings(|n| r.reborrow().init_exit_paths(n), exit_paths.into_iter());
        write_strings(
            |n| r.reborrow().init_oom_exit_paths(n),
            oom_exit_paths.into_iter(),
        );
        let mut drivers = r.reborrow().init_log_drivers(count(self.log_drivers.len()));
        for (i, driver) in (0u32..).zip(&self.log_drivers) {
            driver.write(drivers.reborrow().get(i))?;
        }
        write_strings(
            |n| r.reborrow().init_cleanup_cmd(n),
            self.cleanup_cmd.iter().map(String::as_str),
        );
        write_strings(
            |n| r.reborrow().init_global_args(n),
            self.global_args.iter().map(String::as_str),
        );
        write_strings(
            |n| r.reborrow().init_command_args(n),
            self.command_args.iter().map(String::as_str),
        );
        map::write(
            r.reborrow().init_env_vars(count(self.env.len())),
            self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        r.set_cgroup_manager(wire_cgroup_manager(self.cgroup_manager));
        let mut fds = r
            .reborrow()
            .init_additional_fds(count(self.additional_fds.len()));
        for (i, fd) in (0u32..).zip(&self.additional_fds) {
            fds.set(i, *fd);
        }
        let mut fds = r.init_leak_fds(count(self.leak_fds.len()));
        for (i, fd) in (0u32..).zip(&self.leak_fds) {
            fds.set(i, *fd);
        }
        Ok(())
    }
}
