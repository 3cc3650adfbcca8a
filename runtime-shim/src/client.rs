//! A typed client of one conmond, over its Unix socket.
//!
//! Cap'n Proto clients are `!Send`: a [`MonitorClient`] lives on a tokio `LocalSet`.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::Path;

use capnp_rpc::{RpcSystem, rpc_twoparty_capnp, twoparty};
use conmon_proto::conmon;

use crate::error::ShimError;
pub use conmon_proto::types::{
    Attach, CgroupManager, CreateContainer, CreateNamespaces, ExecSync, ExecSyncResult, LogDriver,
    LogFormat, Namespace, ServeAttach, ServeExec, VersionInfo, WindowSize,
};
use futures::AsyncReadExt as _;
use tokio::net::UnixStream;
use tokio_util::compat::TokioAsyncReadCompatExt as _;

/// A connection to one monitor.
pub struct MonitorClient {
    client: conmon::Client,
    /// Sent as the `metadata` of every request (trace context).
    metadata: std::cell::RefCell<BTreeMap<String, String>>,
}

impl std::fmt::Debug for MonitorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorClient").finish_non_exhaustive()
    }
}

impl MonitorClient {
    /// Connects to the monitor socket at `path` (any length). Must run on a `LocalSet`.
    pub async fn connect(path: &Path) -> Result<Self, ShimError> {
        let connect_error = |source| ShimError::Connect {
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
        Ok(Self {
            client,
            metadata: Default::default(),
        })
    }

    /// Sets the metadata (e.g. `traceparent`) sent with every following request.
    pub fn set_metadata(&self, metadata: BTreeMap<String, String>) {
        *self.metadata.borrow_mut() = metadata;
    }

    fn write_metadata<'a>(
        &self,
        list: impl FnOnce(u32) -> capnp::struct_list::Builder<'a, conmon::text_text_map_entry::Owned>,
    ) {
        let metadata = self.metadata.borrow();
        if metadata.is_empty() {
            return;
        }
        conmon_proto::map::write(
            list(u32::try_from(metadata.len()).unwrap_or(u32::MAX)),
            metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
    }

    /// The underlying Cap'n Proto client, for calls this type does not wrap yet.
    pub fn capnp_client(&self) -> &conmon::Client {
        &self.client
    }

    /// Asks for the monitor's build information (`verbose` adds the dependency tree).
    pub async fn version(&self, verbose: bool) -> Result<VersionInfo, ShimError> {
        let mut request = self.client.version_request();
        let mut r = request.get().init_request();
        r.set_verbose(verbose);
        self.write_metadata(|n| r.init_metadata(n));
        let reply = request.send().promise.await?;
        Ok(VersionInfo::read(reply.get()?.get_response()?)?)
    }

    /// Creates a container; returns its PID.
    pub async fn create_container(&self, spec: &CreateContainer) -> Result<u32, ShimError> {
        let mut request = self.client.create_container_request();
        let mut r = request.get().init_request();
        spec.write(r.reborrow())?;
        self.write_metadata(|n| r.init_metadata(n));
        let reply = request.send().promise.await?;
        Ok(reply.get()?.get_response()?.get_container_pid())
    }

    /// Runs a command in a container and returns its output.
    pub async fn exec_sync(&self, spec: &ExecSync) -> Result<ExecSyncResult, ShimError> {
        let mut request = self.client.exec_sync_container_request();
        let mut r = request.get().init_request();
        spec.write(r.reborrow());
        self.write_metadata(|n| r.init_metadata(n));
        let reply = request.send().promise.await?;
        Ok(ExecSyncResult::read(reply.get()?.get_response()?)?)
    }

    /// Reopens a container's log files (after the engine rotated them).
    pub async fn reopen_log(&self, id: &str) -> Result<(), ShimError> {
        let mut request = self.client.reopen_log_container_request();
        let mut r = request.get().init_request();
        r.set_id(id);
        self.write_metadata(|n| r.init_metadata(n));
        request.send().promise.await?;
        Ok(())
    }

    /// Asks the monitor to serve the container's stdio on a SOCK_SEQPACKET socket.
    pub async fn attach(&self, spec: &Attach) -> Result<(), ShimError> {
        let mut request = self.client.attach_container_request();
        let mut r = request.get().init_request();
        spec.write(r.reborrow())?;
        self.write_metadata(|n| r.init_metadata(n));
        request.send().promise.await?;
        Ok(())
    }

    /// Resizes a terminal container.
    pub async fn set_window_size(&self, spec: &WindowSize) -> Result<(), ShimError> {
        let mut request = self.client.set_window_size_container_request();
        let mut r = request.get().init_request();
        spec.write(r.reborrow());
        self.write_metadata(|n| r.init_metadata(n));
        request.send().promise.await?;
        Ok(())
    }

    /// Pins the pod's namespaces; returns each namespace's bind-mount path.
    pub async fn create_namespaces(
        &self,
        spec: &CreateNamespaces,
    ) -> Result<Vec<(Namespace, std::path::PathBuf)>, ShimError> {
        let mut request = self.client.create_namespaces_request();
        let mut r = request.get().init_request();
        spec.write(r.reborrow())?;
        self.write_metadata(|n| r.init_metadata(n));
        let reply = request.send().promise.await?;
        let mut namespaces = Vec::new();
        for namespace in reply.get()?.get_response()?.get_namespaces()? {
            let kind = Namespace::read(namespace.get_type())?;
            namespaces.push((kind, namespace.get_path()?.to_str()?.into()));
        }
        Ok(namespaces)
    }

    /// Starts the monitor's fd-passing socket; returns its path.
    pub async fn start_fd_socket(&self) -> Result<std::path::PathBuf, ShimError> {
        let mut request = self.client.start_fd_socket_request();
        let r = request.get().init_request();
        self.write_metadata(|n| r.init_metadata(n));
        let reply = request.send().promise.await?;
        Ok(reply.get()?.get_response()?.get_path()?.to_str()?.into())
    }

    /// A one-shot streaming URL for an exec.
    pub async fn serve_exec(&self, spec: &ServeExec) -> Result<String, ShimError> {
        let mut request = self.client.serve_exec_container_request();
        let mut r = request.get().init_request();
        spec.write(r.reborrow());
        self.write_metadata(|n| r.init_metadata(n));
        let reply = request.send().promise.await?;
        Ok(reply.get()?.get_response()?.get_url()?.to_string()?)
    }

    /// A one-shot streaming URL for an attach.
    pub async fn serve_attach(&self, spec: &ServeAttach) -> Result<String, ShimError> {
        let mut request = self.client.serve_attach_container_request();
        let mut r = request.get().init_request();
        spec.write(r.reborrow());
        self.write_metadata(|n| r.init_metadata(n));
        let reply = request.send().promise.await?;
        Ok(reply.get()?.get_response()?.get_url()?.to_string()?)
    }

    /// A one-shot streaming URL forwarding ports inside `net_ns_path`.
    pub async fn serve_port_forward(&self, net_ns_path: &Path) -> Result<String, ShimError> {
        let mut request = self.client.serve_port_forward_container_request();
        let mut r = request.get().init_request();
        r.set_net_ns_path(net_ns_path.to_str().unwrap_or_default());
        self.write_metadata(|n| r.init_metadata(n));
        let reply = request.send().promise.await?;
        Ok(reply.get()?.get_response()?.get_url()?.to_string()?)
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
