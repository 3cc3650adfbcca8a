//! A `Send + Clone` handle to one monitor, usable from any thread or runtime.
//!
//! Cap'n Proto clients are `!Send`; the handle owns a dedicated thread that runs the RPC
//! client on a single-threaded runtime and serves calls sent to it over a channel. Each call
//! carries the trace context of the span it was made in.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures::future::LocalBoxFuture;

use tokio::sync::{mpsc, oneshot};

use crate::client::{
    Attach, CreateContainer, CreateNamespaces, ExecSync, ExecSyncResult, MonitorClient, Namespace,
    ServeAttach, ServeExec, VersionInfo, WindowSize,
};
use crate::error::ShimError;

/// One call, made on the RPC thread with the client.
type Job = Box<dyn FnOnce(Rc<MonitorClient>) -> LocalBoxFuture<'static, ()> + Send>;

/// A connection to one monitor; clones share it.
#[derive(Debug, Clone)]
pub struct MonitorHandle {
    calls: mpsc::UnboundedSender<Job>,
    socket: PathBuf,
}

impl MonitorHandle {
    /// Connects to the monitor socket at `socket`.
    ///
    /// # Errors
    /// [`ShimError::Connect`] when nothing listens there.
    pub async fn connect(socket: &Path) -> Result<Self, ShimError> {
        let (calls, receiver) = mpsc::unbounded_channel();
        let (ready_tx, ready) = oneshot::channel();
        let path = socket.to_owned();
        std::thread::Builder::new()
            .name("monitor-rpc".into())
            .spawn(move || serve(path, receiver, ready_tx))
            .map_err(ShimError::io("start rpc thread for", socket))?;
        ready.await.map_err(|_| disconnected())??;
        Ok(Self {
            calls,
            socket: socket.to_owned(),
        })
    }

    /// The socket this handle talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs `operation`, RPC `method`, on the RPC thread with the trace context of the calling
    /// span.
    async fn call<T, F>(&self, method: &'static str, operation: F) -> Result<T, ShimError>
    where
        T: Send + 'static,
        F: AsyncFnOnce(Rc<MonitorClient>) -> Result<T, ShimError> + Send + 'static,
    {
        let (reply, response) = oneshot::channel();
        let metadata = conmon_telemetry::propagation::to_metadata();
        let job: Job = Box::new(move |client| {
            Box::pin(async move {
                // Setting the metadata and building the request happen in the same poll, so
                // concurrent calls on the single-threaded loop never see each other's metadata.
                client.set_metadata(metadata);
                // A caller that gave up waiting has dropped its receiver; nothing to deliver.
                let _ = reply.send(operation(client).await);
            })
        });
        crate::metrics::rpc(method, async {
            self.calls.send(job).map_err(|_| disconnected())?;
            response.await.map_err(|_| disconnected())?
        })
        .await
    }

    /// The monitor's build information (`verbose` adds the dependency tree).
    pub async fn version(&self, verbose: bool) -> Result<VersionInfo, ShimError> {
        self.call("version", async move |c| c.version(verbose).await)
            .await
    }

    /// Creates a container through the monitor; returns its PID.
    pub async fn create_container(&self, spec: CreateContainer) -> Result<u32, ShimError> {
        self.call("createContainer", async move |c| {
            c.create_container(&spec).await
        })
        .await
    }

    /// Runs a command in a container and returns its output.
    pub async fn exec_sync(&self, spec: ExecSync) -> Result<ExecSyncResult, ShimError> {
        self.call("execSyncContainer", async move |c| c.exec_sync(&spec).await)
            .await
    }

    /// Reopens a container's log files.
    pub async fn reopen_log(&self, id: &str) -> Result<(), ShimError> {
        let id = id.to_owned();
        self.call("reopenLogContainer", async move |c| c.reopen_log(&id).await)
            .await
    }

    /// Asks the monitor to serve the container's stdio on an attach socket.
    pub async fn attach(&self, spec: Attach) -> Result<(), ShimError> {
        self.call("attachContainer", async move |c| c.attach(&spec).await)
            .await
    }

    /// Resizes a terminal container.
    pub async fn set_window_size(&self, spec: WindowSize) -> Result<(), ShimError> {
        self.call("setWindowSizeContainer", async move |c| {
            c.set_window_size(&spec).await
        })
        .await
    }

    /// Pins the pod's namespaces.
    pub async fn create_namespaces(
        &self,
        spec: CreateNamespaces,
    ) -> Result<Vec<(Namespace, PathBuf)>, ShimError> {
        self.call("createNamespaces", async move |c| {
            c.create_namespaces(&spec).await
        })
        .await
    }

    /// Starts the monitor's fd-passing socket.
    pub async fn start_fd_socket(&self) -> Result<PathBuf, ShimError> {
        self.call("startFdSocket", async move |c| c.start_fd_socket().await)
            .await
    }

    /// A one-shot streaming URL for an exec.
    pub async fn serve_exec(&self, spec: ServeExec) -> Result<String, ShimError> {
        self.call("serveExecContainer", async move |c| {
            c.serve_exec(&spec).await
        })
        .await
    }

    /// A one-shot streaming URL for an attach.
    pub async fn serve_attach(&self, spec: ServeAttach) -> Result<String, ShimError> {
        self.call("serveAttachContainer", async move |c| {
            c.serve_attach(&spec).await
        })
        .await
    }

    /// A one-shot streaming URL for port forwarding in `net_ns_path`.
    pub async fn serve_port_forward(&self, net_ns_path: &Path) -> Result<String, ShimError> {
        let path = net_ns_path.to_owned();
        self.call("servePortForwardContainer", async move |c| {
            c.serve_port_forward(&path).await
        })
        .await
    }
}

fn disconnected() -> ShimError {
    ShimError::Transport(capnp::Error::disconnected(
        "monitor connection closed".into(),
    ))
}

/// The RPC thread: connects, then serves calls until every handle is dropped.
fn serve(
    socket: PathBuf,
    mut calls: mpsc::UnboundedReceiver<Job>,
    ready: oneshot::Sender<Result<(), ShimError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(source) => {
            let _ = ready.send(Err(ShimError::Io {
                what: "start rpc runtime for",
                path: socket,
                source,
            }));
            return;
        }
    };
    tokio::task::LocalSet::new().block_on(&runtime, async move {
        let client = match MonitorClient::connect(&socket).await {
            Ok(client) => Rc::new(client),
            Err(err) => {
                let _ = ready.send(Err(err));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        while let Some(job) = calls.recv().await {
            tokio::task::spawn_local(job(client.clone()));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn handle_crosses_threads() {
        assert_send_sync_clone::<MonitorHandle>();
    }
}
