//! A typed client of one conmond, over its Unix socket.
//!
//! Cap'n Proto clients are `!Send`: a [`MonitorClient`] lives on a tokio `LocalSet`.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use capnp_rpc::{RpcSystem, rpc_twoparty_capnp, twoparty};
use conmon_proto::conmon;
use futures::AsyncReadExt as _;
use tokio::net::UnixStream;
use tokio_util::compat::TokioAsyncReadCompatExt as _;

/// Failures of monitor calls.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The monitor's socket could not be reached.
    #[error("connect to monitor socket '{}'", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The monitor reported a failure (its message says what failed).
    #[error("monitor: {message}")]
    Remote {
        /// The monitor's error text.
        message: String,
        /// Whether the monitor does not implement the call.
        unimplemented: bool,
    },
    /// The connection broke or a message was malformed.
    #[error("rpc transport")]
    Transport(#[source] capnp::Error),
}

impl From<capnp::Error> for ClientError {
    fn from(err: capnp::Error) -> Self {
        match err.kind {
            capnp::ErrorKind::Failed | capnp::ErrorKind::Unimplemented => Self::Remote {
                message: err
                    .extra
                    .strip_prefix("remote exception: ")
                    .unwrap_or(&err.extra)
                    .to_owned(),
                unimplemented: err.kind == capnp::ErrorKind::Unimplemented,
            },
            _ => Self::Transport(err),
        }
    }
}

impl From<std::str::Utf8Error> for ClientError {
    fn from(err: std::str::Utf8Error) -> Self {
        Self::Transport(err.into())
    }
}

/// What `version` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// PID of the monitor daemon.
    pub process_id: u32,
    /// Semantic version.
    pub version: String,
    /// Release tag.
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

/// Log formats a container's output can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// kubelet's CRI format.
    Cri,
    /// JSON lines.
    Json,
    /// The systemd journal.
    Journald,
}

/// One log destination of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDriver {
    /// Format.
    pub kind: LogKind,
    /// File path (unused for journald).
    pub path: PathBuf,
    /// Size limit in bytes; 0 is unlimited.
    pub max_size: u64,
}

/// Cgroup manager the runtime should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupManager {
    /// systemd (the protocol default).
    #[default]
    Systemd,
    /// cgroupfs.
    Cgroupfs,
}

/// A container to create.
#[derive(Debug, Clone, Default)]
pub struct CreateContainer {
    /// Container ID.
    pub id: String,
    /// OCI bundle directory.
    pub bundle: PathBuf,
    /// Give the container a terminal.
    pub terminal: bool,
    /// Give the container a stdin pipe.
    pub stdin: bool,
    /// Files receiving the exit code.
    pub exit_paths: Vec<PathBuf>,
    /// Files created on OOM kill.
    pub oom_exit_paths: Vec<PathBuf>,
    /// Log destinations.
    pub log_drivers: Vec<LogDriver>,
    /// Command run after exit.
    pub cleanup_cmd: Vec<String>,
    /// Runtime arguments before `create`.
    pub global_args: Vec<String>,
    /// Runtime arguments after `--pid-file`.
    pub command_args: Vec<String>,
    /// Environment added to the runtime's.
    pub env: BTreeMap<String, String>,
    /// Cgroup manager.
    pub cgroup_manager: CgroupManager,
}

/// A command to run in a container.
#[derive(Debug, Clone, Default)]
pub struct ExecSync {
    /// Container ID.
    pub id: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Deadline; `None` waits indefinitely.
    pub timeout: Option<Duration>,
    /// Run on a terminal.
    pub terminal: bool,
    /// Environment added to the runtime's.
    pub env: BTreeMap<String, String>,
    /// Cgroup manager.
    pub cgroup_manager: CgroupManager,
}

/// What an exec produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSyncResult {
    /// Exit code.
    pub exit_code: i32,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Whether the deadline was reached.
    pub timed_out: bool,
}

/// A connection to one monitor.
pub struct MonitorClient {
    client: conmon::Client,
}

impl std::fmt::Debug for MonitorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorClient").finish_non_exhaustive()
    }
}

impl MonitorClient {
    /// Connects to the monitor socket at `path` (any length). Must run on a `LocalSet`.
    pub async fn connect(path: &Path) -> Result<Self, ClientError> {
        let connect_error = |source| ClientError::Connect {
            path: path.to_owned(),
            source,
        };
        let stream = connect_long(path).await.map_err(connect_error)?;
        let (reader, writer) = stream.compat().split();
        let network = twoparty::VatNetwork::new(
            futures::io::BufReader::new(reader),
            futures::io::BufWriter::new(writer),
            rpc_twoparty_capnp::Side::Client,
            Default::default(),
        );
        let mut rpc = RpcSystem::new(Box::new(network), None);
        let client: conmon::Client = rpc.bootstrap(rpc_twoparty_capnp::Side::Server);
        tokio::task::spawn_local(rpc);
        Ok(Self { client })
    }

    /// The underlying Cap'n Proto client, for calls this type does not wrap yet.
    pub fn capnp_client(&self) -> &conmon::Client {
        &self.client
    }

    /// Asks for the monitor's build information (`verbose` adds the dependency tree).
    pub async fn version(&self, verbose: bool) -> Result<VersionInfo, ClientError> {
        let mut request = self.client.version_request();
        request.get().init_request().set_verbose(verbose);
        let reply = request.send().promise.await?;
        let r = reply.get()?.get_response()?;
        Ok(VersionInfo {
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

    /// Creates a container; returns its PID.
    pub async fn create_container(&self, spec: &CreateContainer) -> Result<u32, ClientError> {
        let mut request = self.client.create_container_request();
        {
            let mut r = request.get().init_request();
            r.set_id(&spec.id);
            r.set_bundle_path(path_str(&spec.bundle));
            r.set_terminal(spec.terminal);
            r.set_stdin(spec.stdin);
            set_texts(
                r.reborrow().init_exit_paths(len(&spec.exit_paths)),
                spec.exit_paths.iter().map(|p| path_str(p)),
            );
            set_texts(
                r.reborrow().init_oom_exit_paths(len(&spec.oom_exit_paths)),
                spec.oom_exit_paths.iter().map(|p| path_str(p)),
            );
            let mut drivers = r.reborrow().init_log_drivers(len(&spec.log_drivers));
            for (i, driver) in (0u32..).zip(&spec.log_drivers) {
                let mut d = drivers.reborrow().get(i);
                d.set_type(match driver.kind {
                    LogKind::Cri => conmon::log_driver::Type::ContainerRuntimeInterface,
                    LogKind::Json => conmon::log_driver::Type::Json,
                    LogKind::Journald => conmon::log_driver::Type::Journald,
                });
                d.set_path(path_str(&driver.path));
                d.set_max_size(driver.max_size);
            }
            set_texts(
                r.reborrow().init_cleanup_cmd(len(&spec.cleanup_cmd)),
                spec.cleanup_cmd.iter().map(String::as_str),
            );
            set_texts(
                r.reborrow().init_global_args(len(&spec.global_args)),
                spec.global_args.iter().map(String::as_str),
            );
            set_texts(
                r.reborrow().init_command_args(len(&spec.command_args)),
                spec.command_args.iter().map(String::as_str),
            );
            conmon_proto::map::write(
                r.reborrow().init_env_vars(count(spec.env.len())),
                spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            r.set_cgroup_manager(cgroup_manager(spec.cgroup_manager));
        }
        let reply = request.send().promise.await?;
        Ok(reply.get()?.get_response()?.get_container_pid())
    }

    /// Runs a command in a container and returns its output.
    pub async fn exec_sync(&self, spec: &ExecSync) -> Result<ExecSyncResult, ClientError> {
        let mut request = self.client.exec_sync_container_request();
        {
            let mut r = request.get().init_request();
            r.set_id(&spec.id);
            r.set_timeout_sec(spec.timeout.map_or(0, |t| t.as_secs().max(1)));
            set_texts(
                r.reborrow().init_command(len(&spec.command)),
                spec.command.iter().map(String::as_str),
            );
            r.set_terminal(spec.terminal);
            conmon_proto::map::write(
                r.reborrow().init_env_vars(count(spec.env.len())),
                spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            r.set_cgroup_manager(cgroup_manager(spec.cgroup_manager));
        }
        let reply = request.send().promise.await?;
        let r = reply.get()?.get_response()?;
        Ok(ExecSyncResult {
            exit_code: r.get_exit_code(),
            stdout: r.get_stdout()?.to_vec(),
            stderr: r.get_stderr()?.to_vec(),
            timed_out: r.get_timed_out(),
        })
    }

    /// Reopens a container's log files (after the engine rotated them).
    pub async fn reopen_log(&self, id: &str) -> Result<(), ClientError> {
        let mut request = self.client.reopen_log_container_request();
        request.get().init_request().set_id(id);
        request.send().promise.await?;
        Ok(())
    }
}

/// Connects to a socket whose path may exceed `sun_path`, through the directory's descriptor.
async fn connect_long(path: &Path) -> std::io::Result<UnixStream> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "socket path has no file name",
        ));
    };
    let dir = File::open(dir)?;
    let short = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    UnixStream::connect(short).await
}

fn len<T>(items: &[T]) -> u32 {
    count(items.len())
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn path_str(path: &Path) -> &str {
    // Engines use UTF-8 paths; the protocol's Text cannot carry anything else.
    path.to_str().unwrap_or_default()
}

fn set_texts<'a>(mut list: capnp::text_list::Builder<'_>, items: impl Iterator<Item = &'a str>) {
    for (i, item) in (0u32..).zip(items) {
        list.set(i, item);
    }
}

fn cgroup_manager(manager: CgroupManager) -> conmon::CgroupManager {
    match manager {
        CgroupManager::Systemd => conmon::CgroupManager::Systemd,
        CgroupManager::Cgroupfs => conmon::CgroupManager::Cgroupfs,
    }
}
