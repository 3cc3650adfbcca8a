//! The Cap'n Proto face of the monitor: decodes requests into plain Rust types, calls the
//! monitor, and encodes the results. No other module sees capnp types.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use capnp::capability::Rc as CapRc;
use capnp::text_list;
use conmon_proto::conmon;
use conmon_proto::conmon::log_driver;

use crate::error::{MonitorError, error_chain};
use crate::exec::ExecRequest;
use crate::logs::{LogDriverConfig, LogFormat};
use crate::monitor::{CreateRequest, Monitor};
use crate::runtime::CgroupManager;
use crate::version::BuildInfo;

/// The `Conmon` interface served on `conmon.sock`.
#[derive(Debug)]
pub struct RpcServer {
    monitor: Rc<Monitor>,
}

impl RpcServer {
    /// Serves `monitor`.
    pub fn new(monitor: Rc<Monitor>) -> Self {
        Self { monitor }
    }
}

fn to_capnp(err: MonitorError) -> capnp::Error {
    match err {
        MonitorError::NotImplemented(_) => capnp::Error::unimplemented(err.to_string()),
        err => capnp::Error::failed(error_chain(&err)),
    }
}

fn not_implemented(method: &str) -> capnp::Error {
    capnp::Error::unimplemented(format!(
        "not implemented: {method} is not supported by this conmond yet"
    ))
}

fn strings(list: text_list::Reader<'_>) -> capnp::Result<Vec<String>> {
    list.iter().map(|text| Ok(text?.to_string()?)).collect()
}

fn paths(list: text_list::Reader<'_>) -> capnp::Result<Vec<PathBuf>> {
    Ok(strings(list)?.into_iter().map(PathBuf::from).collect())
}

fn cgroup_manager(
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

fn log_driver(driver: log_driver::Reader<'_>) -> capnp::Result<LogDriverConfig> {
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
    Ok(LogDriverConfig {
        format,
        path: PathBuf::from(driver.get_path()?.to_string()?),
        max_size: driver.get_max_size(),
    })
}

fn decode_create(
    request: conmon::create_container_request::Reader<'_>,
) -> capnp::Result<CreateRequest> {
    Ok(CreateRequest {
        id: request.get_id()?.to_string()?,
        bundle: PathBuf::from(request.get_bundle_path()?.to_string()?),
        terminal: request.get_terminal(),
        stdin: request.get_stdin(),
        exit_paths: paths(request.get_exit_paths()?)?,
        oom_exit_paths: paths(request.get_oom_exit_paths()?)?,
        log_drivers: request
            .get_log_drivers()?
            .iter()
            .map(log_driver)
            .collect::<capnp::Result<_>>()?,
        cleanup_cmd: strings(request.get_cleanup_cmd()?)?,
        global_args: strings(request.get_global_args()?)?,
        command_args: strings(request.get_command_args()?)?,
        env: conmon_proto::map::read(request.get_env_vars()?)?,
        cgroup_manager: cgroup_manager(request.get_cgroup_manager())?,
        additional_fds: request.get_additional_fds()?.iter().collect(),
        leak_fds: request.get_leak_fds()?.iter().collect(),
    })
}

fn decode_exec(
    request: conmon::exec_sync_container_request::Reader<'_>,
) -> capnp::Result<ExecRequest> {
    let timeout_sec = request.get_timeout_sec();
    Ok(ExecRequest {
        id: request.get_id()?.to_string()?,
        command: strings(request.get_command()?)?,
        timeout: (timeout_sec > 0).then(|| Duration::from_secs(timeout_sec)),
        terminal: request.get_terminal(),
        env: conmon_proto::map::read(request.get_env_vars()?)?,
        cgroup_manager: cgroup_manager(request.get_cgroup_manager())?,
    })
}

impl conmon::Server for RpcServer {
    async fn version(
        self: CapRc<Self>,
        params: conmon::VersionParams,
        mut results: conmon::VersionResults,
    ) -> Result<(), capnp::Error> {
        let verbose = params.get()?.get_request()?.get_verbose();
        let info = BuildInfo::get(verbose);
        let mut response = results.get().init_response();
        response.set_process_id(std::process::id());
        response.set_version(info.version);
        response.set_tag(info.tag);
        response.set_commit(info.commit);
        response.set_build_date(info.build_date);
        response.set_target(info.target);
        response.set_rust_version(info.rust_version);
        response.set_cargo_version(info.cargo_version);
        response.set_cargo_tree(info.cargo_tree);
        Ok(())
    }

    async fn create_container(
        self: CapRc<Self>,
        params: conmon::CreateContainerParams,
        mut results: conmon::CreateContainerResults,
    ) -> Result<(), capnp::Error> {
        let request = decode_create(params.get()?.get_request()?)?;
        let pid = self
            .monitor
            .create_container(request)
            .await
            .map_err(to_capnp)?;
        results.get().init_response().set_container_pid(pid);
        Ok(())
    }

    async fn exec_sync_container(
        self: CapRc<Self>,
        params: conmon::ExecSyncContainerParams,
        mut results: conmon::ExecSyncContainerResults,
    ) -> Result<(), capnp::Error> {
        let request = decode_exec(params.get()?.get_request()?)?;
        let output = self.monitor.exec_sync(request).await.map_err(to_capnp)?;
        let mut response = results.get().init_response();
        response.set_exit_code(output.exit_code);
        response.set_stdout(&output.stdout);
        response.set_stderr(&output.stderr);
        response.set_timed_out(output.timed_out);
        Ok(())
    }

    async fn reopen_log_container(
        self: CapRc<Self>,
        params: conmon::ReopenLogContainerParams,
        _results: conmon::ReopenLogContainerResults,
    ) -> Result<(), capnp::Error> {
        let id = params.get()?.get_request()?.get_id()?.to_string()?;
        self.monitor.reopen_log(&id).map_err(to_capnp)
    }

    async fn attach_container(
        self: CapRc<Self>,
        _: conmon::AttachContainerParams,
        _: conmon::AttachContainerResults,
    ) -> Result<(), capnp::Error> {
        Err(not_implemented("attachContainer"))
    }

    async fn set_window_size_container(
        self: CapRc<Self>,
        _: conmon::SetWindowSizeContainerParams,
        _: conmon::SetWindowSizeContainerResults,
    ) -> Result<(), capnp::Error> {
        Err(not_implemented("setWindowSizeContainer"))
    }

    async fn create_namespaces(
        self: CapRc<Self>,
        _: conmon::CreateNamespacesParams,
        _: conmon::CreateNamespacesResults,
    ) -> Result<(), capnp::Error> {
        Err(not_implemented("createNamespaces"))
    }

    async fn start_fd_socket(
        self: CapRc<Self>,
        _: conmon::StartFdSocketParams,
        _: conmon::StartFdSocketResults,
    ) -> Result<(), capnp::Error> {
        Err(not_implemented("startFdSocket"))
    }

    async fn serve_exec_container(
        self: CapRc<Self>,
        _: conmon::ServeExecContainerParams,
        _: conmon::ServeExecContainerResults,
    ) -> Result<(), capnp::Error> {
        Err(not_implemented("serveExecContainer"))
    }

    async fn serve_attach_container(
        self: CapRc<Self>,
        _: conmon::ServeAttachContainerParams,
        _: conmon::ServeAttachContainerResults,
    ) -> Result<(), capnp::Error> {
        Err(not_implemented("serveAttachContainer"))
    }

    async fn serve_port_forward_container(
        self: CapRc<Self>,
        _: conmon::ServePortForwardContainerParams,
        _: conmon::ServePortForwardContainerResults,
    ) -> Result<(), capnp::Error> {
        Err(not_implemented("servePortForwardContainer"))
    }
}
