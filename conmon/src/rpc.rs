//! The Cap'n Proto face of the monitor: decodes requests into plain Rust types (with the codec
//! shared with clients, `conmon_proto::types`), calls the monitor, and encodes the results. No
//! other module sees capnp types.

use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use conmon_proto::conmon;
use conmon_proto::types::{CreateContainer, ExecSync};

use crate::error::{MonitorError, error_chain};
use crate::monitor::Monitor;
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

impl conmon::Server for RpcServer {
    async fn version(
        self: CapRc<Self>,
        params: conmon::VersionParams,
        mut results: conmon::VersionResults,
    ) -> Result<(), capnp::Error> {
        let verbose = params.get()?.get_request()?.get_verbose();
        BuildInfo::get(verbose)
            .to_wire(std::process::id())
            .write(results.get().init_response());
        Ok(())
    }

    async fn create_container(
        self: CapRc<Self>,
        params: conmon::CreateContainerParams,
        mut results: conmon::CreateContainerResults,
    ) -> Result<(), capnp::Error> {
        let request = CreateContainer::read(params.get()?.get_request()?)?;
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
        let request = ExecSync::read(params.get()?.get_request()?)?;
        let output = self.monitor.exec_sync(request).await.map_err(to_capnp)?;
        output.write(results.get().init_response());
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
