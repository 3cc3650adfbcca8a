//! Plain Rust forms of the requests and responses, with their one encoding to and decoding from
//! the wire. The monitor decodes what clients encode with the same code, so both sides agree by
//! construction and domain code never sees capnp types.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use capnp::text_list;

use crate::conmon::{self, log_driver};
use crate::map;

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

/// `execSyncContainer`: run a command in a running container and return its output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSync {
    /// Container ID.
    pub id: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Deadline for the whole exec; `None` waits indefinitely. Sent in whole seconds.
    pub timeout: Option<Duration>,
    /// Whether the command runs on a terminal.
    pub terminal: bool,
    /// Environment added to the runtime's.
    pub env: BTreeMap<String, String>,
    /// Cgroup manager for the runtime.
    pub cgroup_manager: CgroupManager,
}

/// What an exec produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSyncResult {
    /// The command's exit code (128+N after signal N; -3 when killed at the deadline).
    pub exit_code: i32,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// Whether the deadline was reached.
    pub timed_out: bool,
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

/// `attachContainer`: serve the container's stdio on a SOCK_SEQPACKET socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attach {
    /// Container ID.
    pub id: String,
    /// Where the attach socket is created.
    pub socket_path: PathBuf,
    /// Exec session to attach to, if any.
    pub exec_session_id: String,
    /// End the attach session when the client closes stdin.
    pub stop_after_stdin_eof: bool,
}

/// `setWindowSizeContainer`: resize a terminal container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowSize {
    /// Container ID.
    pub id: String,
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// `serveExecContainer`: a one-shot streaming URL for an exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeExec {
    /// Container ID.
    pub id: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Run on a terminal.
    pub tty: bool,
    /// Streams to connect.
    pub stdin: bool,
    /// Streams to connect.
    pub stdout: bool,
    /// Streams to connect.
    pub stderr: bool,
    /// Cgroup manager for the runtime.
    pub cgroup_manager: CgroupManager,
}

/// `serveAttachContainer`: a one-shot streaming URL for an attach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeAttach {
    /// Container ID.
    pub id: String,
    /// Streams to connect.
    pub stdin: bool,
    /// Streams to connect.
    pub stdout: bool,
    /// Streams to connect.
    pub stderr: bool,
}

/// Namespaces `createNamespaces` can pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// IPC.
    Ipc,
    /// Network.
    Net,
    /// PID.
    Pid,
    /// User.
    User,
    /// UTS.
    Uts,
}

/// `createNamespaces`: pin a pod's namespaces under `base_path`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateNamespaces {
    /// Namespaces to create.
    pub namespaces: Vec<Namespace>,
    /// `"<container id> <host id> <size>"` mappings for a user namespace.
    pub uid_mappings: Vec<String>,
    /// Same for groups.
    pub gid_mappings: Vec<String>,
    /// Where the bind mounts go.
    pub base_path: PathBuf,
    /// The pod.
    pub pod_id: String,
}

impl Attach {
    /// Decodes a request.
    ///
    /// # Errors
    /// Malformed messages and non-UTF-8 text.
    pub fn read(r: conmon::attach_request::Reader<'_>) -> capnp::Result<Self> {
        Ok(Self {
            id: r.get_id()?.to_string()?,
            socket_path: PathBuf::from(r.get_socket_path()?.to_string()?),
            exec_session_id: r.get_exec_session_id()?.to_string()?,
            stop_after_stdin_eof: r.get_stop_after_stdin_eof(),
        })
    }

    /// Encodes the request into `r`.
    ///
    /// # Errors
    /// A socket path that is not UTF-8.
    pub fn write(&self, mut r: conmon::attach_request::Builder<'_>) -> Result<(), EncodeError> {
        r.set_id(&self.id);
        r.set_socket_path(path_text(&self.socket_path)?);
        r.set_exec_session_id(&self.exec_session_id);
        r.set_stop_after_stdin_eof(self.stop_after_stdin_eof);
        Ok(())
    }
}

impl WindowSize {
    /// Decodes a request.
    ///
    /// # Errors
    /// Malformed messages and non-UTF-8 text.
    pub fn read(r: conmon::set_window_size_request::Reader<'_>) -> capnp::Result<Self> {
        Ok(Self {
            id: r.get_id()?.to_string()?,
            width: r.get_width(),
            height: r.get_height(),
        })
    }

    /// Encodes the request into `r`.
    pub fn write(&self, mut r: conmon::set_window_size_request::Builder<'_>) {
        r.set_id(&self.id);
        r.set_width(self.width);
        r.set_height(self.height);
    }
}

impl ServeExec {
    /// Decodes a request.
    ///
    /// # Errors
    /// Malformed messages and non-UTF-8 text.
    pub fn read(r: conmon::serve_exec_container_request::Reader<'_>) -> capnp::Result<Self> {
        Ok(Self {
            id: r.get_id()?.to_string()?,
            command: read_strings(r.get_command()?)?,
            tty: r.get_tty(),
            stdin: r.get_stdin(),
            stdout: r.get_stdout(),
            stderr: r.get_stderr(),
            cgroup_manager: read_cgroup_manager(r.get_cgroup_manager())?,
        })
    }

    /// Encodes the request into `r`.
    pub fn write(&self, mut r: conmon::serve_exec_container_request::Builder<'_>) {
        r.set_id(&self.id);
        write_strings(
            |n| r.reborrow().init_command(n),
            self.command.iter().map(String::as_str),
        );
        r.set_tty(self.tty);
        r.set_stdin(self.stdin);
        r.set_stdout(self.stdout);
        r.set_stderr(self.stderr);
        r.set_cgroup_manager(wire_cgroup_manager(self.cgroup_manager));
    }
}

impl ServeAttach {
    /// Decodes a request.
    ///
    /// # Errors
    /// Malformed messages and non-UTF-8 text.
    pub fn read(r: conmon::serve_attach_container_request::Reader<'_>) -> capnp::Result<Self> {
        Ok(Self {
            id: r.get_id()?.to_string()?,
            stdin: r.get_stdin(),
            stdout: r.get_stdout(),
            stderr: r.get_stderr(),
        })
    }

    /// Encodes the request into `r`.
    pub fn write(&self, mut r: conmon::serve_attach_container_request::Builder<'_>) {
        r.set_id(&self.id);
        r.set_stdin(self.stdin);
        r.set_stdout(self.stdout);
        r.set_stderr(self.stderr);
    }
}

impl Namespace {
    fn wire(self) -> conmon::Namespace {
        match self {
            Self::Ipc => conmon::Namespace::Ipc,
            Self::Net => conmon::Namespace::Net,
            Self::Pid => conmon::Namespace::Pid,
            Self::User => conmon::Namespace::User,
            Self::Uts => conmon::Namespace::Uts,
        }
    }

    /// Decodes a wire namespace.
    ///
    /// # Errors
    /// Values this schema does not know.
    pub fn read(value: Result<conmon::Namespace, capnp::NotInSchema>) -> capnp::Result<Self> {
        Ok(
            match value.map_err(|capnp::NotInSchema(n)| {
                capnp::Error::failed(format!("unknown namespace {n}"))
            })? {
                conmon::Namespace::Ipc => Self::Ipc,
                conmon::Namespace::Net => Self::Net,
                conmon::Namespace::Pid => Self::Pid,
                conmon::Namespace::User => Self::User,
                conmon::Namespace::Uts => Self::Uts,
            },
        )
    }
}

impl CreateNamespaces {
    /// Decodes a request.
    ///
    /// # Errors
    /// Malformed messages, non-UTF-8 text and unknown namespaces.
    pub fn read(r: conmon::create_namespaces_request::Reader<'_>) -> capnp::Result<Self> {
        Ok(Self {
            namespaces: r
                .get_namespaces()?
                .iter()
                .map(Namespace::read)
                .collect::<capnp::Result<_>>()?,
            uid_mappings: read_strings(r.get_uid_mappings()?)?,
            gid_mappings: read_strings(r.get_gid_mappings()?)?,
            base_path: PathBuf::from(r.get_base_path()?.to_string()?),
            pod_id: r.get_pod_id()?.to_string()?,
        })
    }

    /// Encodes the request into `r`.
    ///
    /// # Errors
    /// A base path that is not UTF-8.
    pub fn write(
        &self,
        mut r: conmon::create_namespaces_request::Builder<'_>,
    ) -> Result<(), EncodeError> {
        let mut namespaces = r.reborrow().init_namespaces(count(self.namespaces.len()));
        for (i, namespace) in (0u32..).zip(&self.namespaces) {
            namespaces.set(i, namespace.wire());
        }
        write_strings(
            |n| r.reborrow().init_uid_mappings(n),
            self.uid_mappings.iter().map(String::as_str),
        );
        write_strings(
            |n| r.reborrow().init_gid_mappings(n),
            self.gid_mappings.iter().map(String::as_str),
        );
        r.set_base_path(path_text(&self.base_path)?);
        r.set_pod_id(&self.pod_id);
        Ok(())
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

impl ExecSync {
    /// Decodes a request.
    ///
    /// # Errors
    /// Malformed messages, non-UTF-8 text and unknown enum values.
    pub fn read(r: conmon::exec_sync_container_request::Reader<'_>) -> capnp::Result<Self> {
        let timeout_sec = r.get_timeout_sec();
        Ok(Self {
            id: r.get_id()?.to_string()?,
            command: read_strings(r.get_command()?)?,
            timeout: (timeout_sec > 0).then(|| Duration::from_secs(timeout_sec)),
            terminal: r.get_terminal(),
            env: map::read(r.get_env_vars()?)?,
            cgroup_manager: read_cgroup_manager(r.get_cgroup_manager())?,
        })
    }

    /// Encodes the request into `r`; a timeout is rounded up to whole seconds.
    pub fn write(&self, mut r: conmon::exec_sync_container_request::Builder<'_>) {
        r.set_id(&self.id);
        let timeout_sec = self
            .timeout
            .map_or(0, |t| t.as_secs() + u64::from(t.subsec_nanos() > 0));
        r.set_timeout_sec(timeout_sec);
        write_strings(
            |n| r.reborrow().init_command(n),
            self.command.iter().map(String::as_str),
        );
        r.set_terminal(self.terminal);
        map::write(
            r.reborrow().init_env_vars(count(self.env.len())),
            self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        r.set_cgroup_manager(wire_cgroup_manager(self.cgroup_manager));
    }
}

impl ExecSyncResult {
    /// Decodes a response.
    ///
    /// # Errors
    /// Malformed messages.
    pub fn read(r: conmon::exec_sync_container_response::Reader<'_>) -> capnp::Result<Self> {
        Ok(Self {
            exit_code: r.get_exit_code(),
            stdout: r.get_stdout()?.to_vec(),
            stderr: r.get_stderr()?.to_vec(),
            timed_out: r.get_timed_out(),
        })
    }

    /// Encodes the response into `r`.
    pub fn write(&self, mut r: conmon::exec_sync_container_response::Builder<'_>) {
        r.set_exit_code(self.exit_code);
        r.set_stdout(&self.stdout);
        r.set_stderr(&self.stderr);
        r.set_timed_out(self.timed_out);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_request_round_trips() {
        let request = CreateContainer {
            id: "c1".into(),
            bundle: "/b".into(),
            stdin: true,
            exit_paths: vec!["/e1".into(), "/e2".into()],
            oom_exit_paths: vec!["/oom".into()],
            log_drivers: vec![LogDriver {
                format: LogFormat::Json,
                path: "/l".into(),
                max_size: 9,
            }],
            cleanup_cmd: vec!["rm".into(), "-f".into()],
            global_args: vec!["--debug".into()],
            command_args: vec!["--no-pivot".into()],
            env: BTreeMap::from([("K".into(), "V".into())]),
            cgroup_manager: CgroupManager::Cgroupfs,
            additional_fds: vec![1, 2],
            leak_fds: vec![3],
            ..CreateContainer::default()
        };
        let mut message = capnp::message::Builder::new_default();
        let builder = message.init_root::<conmon::create_container_request::Builder<'_>>();
        request.write(builder).unwrap();
        let reader = message
            .get_root_as_reader::<conmon::create_container_request::Reader<'_>>()
            .unwrap();
        assert_eq!(CreateContainer::read(reader).unwrap(), request);
    }

    #[test]
    fn unset_cgroup_manager_reads_as_systemd_and_timeout_rounds_up() {
        let exec = ExecSync {
            id: "c1".into(),
            command: vec!["true".into()],
            timeout: Some(Duration::from_millis(1500)),
            ..ExecSync::default()
        };
        let mut message = capnp::message::Builder::new_default();
        exec.write(message.init_root::<conmon::exec_sync_container_request::Builder<'_>>());
        let reader = message
            .get_root_as_reader::<conmon::exec_sync_container_request::Reader<'_>>()
            .unwrap();
        assert_eq!(reader.get_timeout_sec(), 2);
        let decoded = ExecSync::read(reader).unwrap();
        assert_eq!(decoded.cgroup_manager, CgroupManager::Systemd);
        assert_eq!(decoded.timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn non_utf8_path_is_refused_with_its_name() {
        use std::os::unix::ffi::OsStrExt;
        let bad = PathBuf::from(std::ffi::OsStr::from_bytes(b"/logs/\xff.log"));
        let request = CreateContainer {
            id: "c1".into(),
            bundle: "/b".into(),
            log_drivers: vec![LogDriver {
                format: LogFormat::Cri,
                path: bad.clone(),
                max_size: 0,
            }],
            ..CreateContainer::default()
        };
        let mut message = capnp::message::Builder::new_default();
        let err = request
            .write(message.init_root::<conmon::create_container_request::Builder<'_>>())
            .unwrap_err();
        assert!(matches!(&err, EncodeError::NonUtf8Path { path } if *path == bad));
        assert_eq!(
            err.to_string(),
            "path '/logs/\u{FFFD}.log' is not valid UTF-8"
        );
    }

    #[test]
    fn serve_requests_round_trip() {
        let exec = ServeExec {
            id: "c1".into(),
            command: vec!["sh".into(), "-c".into(), "exit 3".into()],
            tty: true,
            stdin: true,
            stdout: true,
            stderr: false,
            cgroup_manager: CgroupManager::Cgroupfs,
        };
        let mut message = capnp::message::Builder::new_default();
        exec.write(message.init_root::<conmon::serve_exec_container_request::Builder<'_>>());
        let reader = message
            .get_root_as_reader::<conmon::serve_exec_container_request::Reader<'_>>()
            .unwrap();
        assert_eq!(ServeExec::read(reader).unwrap(), exec);

        let attach = ServeAttach {
            id: "c1".into(),
            stdin: true,
            stdout: false,
            stderr: true,
        };
        let mut message = capnp::message::Builder::new_default();
        attach.write(message.init_root::<conmon::serve_attach_container_request::Builder<'_>>());
        let reader = message
            .get_root_as_reader::<conmon::serve_attach_container_request::Reader<'_>>()
            .unwrap();
        assert_eq!(ServeAttach::read(reader).unwrap(), attach);
    }
}
