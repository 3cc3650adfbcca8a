//! A typed client of one conmond, over its Unix socket.
//!
//! Cap'n Proto clients are `!Send`: a [`MonitorClient`] lives on a tokio `LocalSet`.

use std::collections::BTreeMap;
use std::path::Path;

use conmon_proto::socket_path::SocketPath;
use conmon_proto::{conmon, transport};

use crate::error::ShimError;
pub use conmon_proto::types::{
    Attach, CgroupManager, CreateContainer, CreateNamespaces, ExecSync, ExecSyncResult, LogDriver,
    LogFormat, Namespace, ServeAttach, ServeExec, ServePortForward, VersionInfo, WindowSize,
};
use tokio::net::UnixStream;

/// Sends one request: `write(r) => fill` (if given) sets its fields on builder `r`, the metadata
/// is added, and `read(response) => answer` reads the reply.
macro_rules! call {
    (
        $self:ident,
        $request:ident,
        $(write($($r:ident)+) => $fill:expr,)?
        read($response:ident) => $answer:expr $(,)?
    ) => {{
        let mut request = $self.client.$request();
        let mut builder = request.get().init_request();
        $({
            let $($r)+ = builder.reborrow();
            $fill;
        })?
        $self.write_metadata(|n| builder.reborrow().init_metadata(n));
        let reply = request.send().promise.await?;
        let $response = reply.get()?.get_response()?;
        $answer
    }};
}

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
        let address = SocketPath::new(path).map_err(connect_error)?;
        let stream = UnixStream::connect(address.get())
            .await
            .map_err(connect_error)?;
        let (client, rpc) = transport::connect(stream);
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
        call!(
            self,
            version_request,
            write(mut r) => r.set_verbose(verbose),
            read(response) => Ok(VersionInfo::read(response)?)
        )
    }

    /// Creates a container; returns its PID.
    pub async fn create_container(&self, spec: &CreateContainer) -> Result<u32, ShimError> {
        call!(
            self,
            create_container_request,
            write(r) => spec.write(r)?,
            read(response) => Ok(response.get_container_pid())
        )
    }

    /// Runs a command in a container and returns its output.
    pub async fn exec_sync(&self, spec: &ExecSync) -> Result<ExecSyncResult, ShimError> {
        call!(
            self,
            exec_sync_container_request,
            write(r) => spec.write(r),
            read(response) => Ok(ExecSyncResult::read(response)?)
        )
    }

    /// Reopens a container's log files (after the engine rotated them).
    pub async fn reopen_log(&self, id: &str) -> Result<(), ShimError> {
        call!(
            self,
            reopen_log_container_request,
            write(mut r) => r.set_id(id),
            read(_response) => Ok(())
        )
    }

    /// Asks the monitor to serve the container's stdio on a SOCK_SEQPACKET socket.
    pub async fn attach(&self, spec: &Attach) -> Result<(), ShimError> {
        call!(
            self,
            attach_container_request,
            write(r) => spec.write(r)?,
            read(_response) => Ok(())
        )
    }

    /// Resizes a terminal container.
    pub async fn set_window_size(&self, spec: &WindowSize) -> Result<(), ShimError> {
        call!(
            self,
            set_window_size_container_request,
            write(r) => spec.write(r),
            read(_response) => Ok(())
        )
    }

    /// Pins the pod's namespaces; returns each namespace's bind-mount path.
    pub async fn create_namespaces(
        &self,
        spec: &CreateNamespaces,
    ) -> Result<Vec<(Namespace, std::path::PathBuf)>, ShimError> {
        call!(
            self,
            create_namespaces_request,
            write(r) => spec.write(r)?,
            read(response) => {
                let mut namespaces = Vec::new();
                for namespace in response.get_namespaces()? {
                    let kind = Namespace::read(namespace.get_type())?;
                    namespaces.push((kind, namespace.get_path()?.to_str()?.into()));
                }
                Ok(namespaces)
            }
        )
    }

    /// Starts the monitor's fd-passing socket; returns its path.
    pub async fn start_fd_socket(&self) -> Result<std::path::PathBuf, ShimError> {
        call!(
            self,
            start_fd_socket_request,
            read(response) => Ok(response.get_path()?.to_str()?.into())
        )
    }

    /// A one-shot streaming URL for an exec.
    pub async fn serve_exec(&self, spec: &ServeExec) -> Result<String, ShimError> {
        call!(
            self,
            serve_exec_container_request,
            write(r) => spec.write(r),
            read(response) => Ok(response.get_url()?.to_string()?)
        )
    }

    /// A one-shot streaming URL for an attach.
    pub async fn serve_attach(&self, spec: &ServeAttach) -> Result<String, ShimError> {
        call!(
            self,
            serve_attach_container_request,
            write(r) => spec.write(r),
            read(response) => Ok(response.get_url()?.to_string()?)
        )
    }

    /// A one-shot streaming URL forwarding ports inside a network namespace.
    pub async fn serve_port_forward(&self, net_ns_path: &Path) -> Result<String, ShimError> {
        let spec = ServePortForward {
            net_ns_path: net_ns_path.to_owned(),
        };
        call!(
            self,
            serve_port_forward_container_request,
            write(r) => spec.write(r)?,
            read(response) => Ok(response.get_url()?.to_string()?)
        )
    }
}
