//! The Cap'n Proto face of the monitor: decodes requests into plain Rust types (with the codec
//! shared with clients, `conmon_proto::types`), calls the monitor, and encodes the results. No
//! other module sees capnp types.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use conmon_proto::conmon;
use conmon_proto::layout::{self, Incoming};
use conmon_proto::types::{
    Attach, CreateContainer, CreateNamespaces, ExecSync, ServeAttach, ServeExec, ServePortForward,
    WindowSize,
};
use futures::FutureExt as _;
use tracing::Instrument as _;

use crate::error::{MonitorError, error_chain};
use crate::metrics;
use crate::monitor::Monitor;
use crate::streaming::Streaming;
use crate::version::BuildInfo;
use conmon_telemetry::propagation;

/// The `Conmon` interface served on `conmon.sock`.
#[derive(Debug)]
pub struct RpcServer {
    monitor: Rc<Monitor>,
    streaming: Rc<Streaming>,
}

impl RpcServer {
    /// Serves `monitor`, with `streaming` behind the serve RPCs.
    pub fn new(monitor: Rc<Monitor>, streaming: Rc<Streaming>) -> Self {
        Self { monitor, streaming }
    }
}

fn to_capnp(err: MonitorError) -> capnp::Error {
    capnp::Error::failed(error_chain(&err))
}

/// The container a request is about, if it names one, for its span.
trait TracedRequest {
    fn container_id(&self) -> capnp::Result<&str>;
}

macro_rules! traced_requests {
    ($($request:ident $(by $id:ident)?;)*) => {$(
        impl TracedRequest for conmon::$request::Reader<'_> {
            fn container_id(&self) -> capnp::Result<&str> {
                traced_requests!(@id self $($id)?)
            }
        }
    )*};
    (@id $self:ident) => { Ok("") };
    (@id $self:ident $id:ident) => { Ok($self.$id()?.to_str()?) };
}

traced_requests! {
    version_request;
    create_container_request by get_id;
    exec_sync_container_request by get_id;
    reopen_log_request by get_id;
    attach_request by get_id;
    set_window_size_request by get_id;
    create_namespaces_request;
    start_fd_socket_request;
    serve_exec_container_request by get_id;
    serve_attach_container_request by get_id;
    serve_port_forward_container_request;
}

/// One RPC being served: its method and its server span.
struct Call {
    method: &'static str,
    span: tracing::Span,
}

/// Opens the server span of one RPC as a child of the caller's trace context, which is read
/// from the request's metadata (in the layout the client wrote) before the span starts, and
/// gives the request in v1.0's layout.
fn rpc_span<'a, R>(method: &'static str, incoming: &'a Incoming<'_>) -> capnp::Result<(Call, R)>
where
    R: layout::Request<'a> + TracedRequest,
{
    let request: R = incoming.request()?;
    let span = tracing::info_span!(
        "rpc",
        otel.name = format!("Conmon/{method}"),
        otel.kind = "server",
        rpc.system = "capnp",
        rpc.service = "Conmon",
        rpc.method = method,
        rpc.conmon.layout = incoming.layout().name(),
        container.id = tracing::field::Empty,
    );
    let container_id = request.container_id()?;
    if !container_id.is_empty() {
        span.record("container.id", container_id);
    }
    match incoming.trace_carrier() {
        Ok(carrier) => propagation::set_remote_parent(&span, &carrier),
        Err(err) => tracing::debug!(error = %err, "unreadable request metadata"),
    }
    Ok((Call { method, span }, request))
}

/// Runs an RPC body in its span; a failure is logged there (marking the span as failed) and
/// turned into the wire error. A panic in the body fails this request only: the monitor holds
/// every container of the pod, and its state is plain data behind `RefCell`s (a borrow is
/// released while unwinding), so answering with an internal error and carrying on serves the
/// pod better than aborting. The panic hook has logged where it happened.
async fn traced<T>(
    call: Call,
    body: impl Future<Output = Result<T, MonitorError>>,
) -> Result<T, capnp::Error> {
    let Call { method, span } = call;
    async {
        let started = std::time::Instant::now();
        let (result, outcome) = match AssertUnwindSafe(body).catch_unwind().await {
            Ok(Ok(value)) => (Ok(value), "ok"),
            Ok(Err(err)) => {
                tracing::error!(error = %error_chain(&err), "request failed");
                (Err(to_capnp(err)), "error")
            }
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                tracing::error!(panic = message, "request handler panicked");
                let err = capnp::Error::failed(format!("internal error: {message}"));
                (Err(err), "error")
            }
        };
        // Inside the span: a sampled call becomes the histogram point's exemplar.
        metrics::rpc_call(method, outcome, started.elapsed());
        result
    }
    .instrument(span)
    .await
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(message), _) => message,
        (_, Some(message)) => message,
        _ => "panic without a message",
    }
}

impl conmon::Server for RpcServer {
    async fn version(
        self: CapRc<Self>,
        params: conmon::VersionParams,
        mut results: conmon::VersionResults,
    ) -> Result<(), capnp::Error> {
        let started = std::time::Instant::now();
        let incoming = Incoming::new(params.get()?.get_request()?)?;
        let (call, request) =
            rpc_span::<conmon::version_request::Reader<'_>>("version", &incoming)?;
        let _entered = call.span.enter();
        BuildInfo::get(request.get_verbose())
            .to_wire(std::process::id())
            .write(layout::init_version_response(
                &mut results,
                incoming.layout(),
            )?);
        metrics::rpc_call(call.method, "ok", started.elapsed());
        Ok(())
    }

    async fn create_container(
        self: CapRc<Self>,
        params: conmon::CreateContainerParams,
        mut results: conmon::CreateContainerResults,
    ) -> Result<(), capnp::Error> {
        let incoming = Incoming::new(params.get()?.get_request()?)?;
        let (call, request) = rpc_span("createContainer", &incoming)?;
        let request = CreateContainer::read(request)?;
        // The create runs to its end even if the client leaves or cancels: a container the
        // runtime created is then supervised like any other, never left unknown.
        let monitor = self.monitor.clone();
        let create = async move { monitor.create_container(request).await };
        let pid = crate::tasks::spawn_local(traced(call, create))
            .await
            .map_err(|err| capnp::Error::failed(format!("create task: {err}")))??;
        metrics::container_created();
        results.get().init_response().set_container_pid(pid);
        Ok(())
    }

    async fn exec_sync_container(
        self: CapRc<Self>,
        params: conmon::ExecSyncContainerParams,
        mut results: conmon::ExecSyncContainerResults,
    ) -> Result<(), capnp::Error> {
        let incoming = Incoming::new(params.get()?.get_request()?)?;
        let (call, request) = rpc_span("execSyncContainer", &incoming)?;
        let request = ExecSync::read(request)?;
        let exec = async {
            let started = std::time::Instant::now();
            let result = self.monitor.exec_sync(request).await;
            metrics::exec_sync(&result, started.elapsed());
            result
        };
        let output = traced(call, exec).await?;
        output.write(results.get().init_response());
        Ok(())
    }

    async fn reopen_log_container(
        self: CapRc<Self>,
        params: conmon::ReopenLogContainerParams,
        _results: conmon::ReopenLogContainerResults,
    ) -> Result<(), capnp::Error> {
        let incoming = Incoming::new(params.get()?.get_request()?)?;
        let (call, request) =
            rpc_span::<conmon::reopen_log_request::Reader<'_>>("reopenLogContainer", &incoming)?;
        let id = request.get_id()?.to_string()?;
        traced(call, async { self.monitor.reopen_log(&id) }).await
    }

    async fn attach_container(
        self: CapRc<Self>,
        params: conmon::AttachContainerParams,
        _: conmon::AttachContainerResults,
    ) -> Result<(), capnp::Error> {
        let incoming = Incoming::new(params.get()?.get_request()?)?;
        let (call, request) = rpc_span("attachContainer", &incoming)?;
        let attach = Attach::read(request)?;
        traced(call, async { self.monitor.attach(&attach) }).await
    }

    async fn set_window_size_container(
        self: CapRc<Self>,
        params: conmon::SetWindowSizeContainerParams,
        _: conmon::SetWindowSizeContainerResults,
    ) -> Result<(), capnp::Error> {
        let incoming = Incoming::new(params.get()?.get_request()?)?;
        let (call, request) = rpc_span("setWindowSizeContainer", &incoming)?;
        let size = WindowSize::read(request)?;
        traced(call, async {
            self.monitor
                .set_window_size(&size.id, size.width, size.height)
        })
        .await
    }

    async fn create_namespaces(
        self: CapRc<Self>,
        params: conmon::CreateNamespacesParams,
        mut results: conmon::CreateNamespacesResults,
    ) -> Result<(), capnp::Error> {
        let incoming = Incoming::new(params.get()?.get_request()?)?;
        let (call, request) = rpc_span("createNamespaces", &incoming)?;
        let request = CreateNamespaces::read(request)?;
        let namespaces = traced(call, self.monitor.create_namespaces(request)).await?;
        let mut list = results
            .get()
            .init_response()
            .init_namespaces(u32::try_from(namespaces.len()).unwrap_or(u32::MAX));
        for (i, (namespace, path)) in (0u32..).zip(&namespaces) {
            let mut entry = list.reborrow().get(i);
            entry.set_type(namespace.to_wire());
            entry.set_path(path.to_string_lossy().as_ref());
        }
        Ok(())
    }

    async fn start_fd_socket(
        self: CapRc<Self>,
        params: conmon::StartFdSocketParams,
        mut results: conmon::StartFdSocketResults,
    ) -> Result<(), capnp::Error> {
        let incoming = Incoming::new(params.get()?.get_request()?)?;
        let (call, _) =
            rpc_span::<conmon::start_fd_socket_request::Reader<'_>>("startFdSocket", &incoming)?;
        let path = traced(call, async { self.monitor.start_fd_socket() }).await?;
        results
            .get()
            .init_response()
            .set_path(path.to_string_lossy().as_ref());
        Ok(())
    }

    async fn serve_exec_container(
        self: CapRc<Self>,
        params: conmon::ServeExecContainerParams,
        mut results: conmon::ServeExecContainerResults,
    ) -> Result<(), capnp::Error> {
        let incoming = Incoming::new(params.get()?.get_request()?)?;
        let (call, request) = rpc_span("serveExecContainer", &incoming)?;
        let request = ServeExec::read(request)?;
        let url = traced(call, async { self.streaming.serve_exec(request) }).await?;
        results.get().init_response().set_url(&url);
        Ok(())
    }

    async fn serve_attach_container(
        self: CapRc<Self>,
        params: conmon::ServeAttachContainerParams,
        mut results: conmon::ServeAttachContainerResults,
    ) -> Result<(), capnp::Error> {
        let incoming = Incoming::new(params.get()?.get_request()?)?;
        let (call, request) = rpc_span("serveAttachContainer", &incoming)?;
        let request = ServeAttach::read(request)?;
        let url = traced(call, async { self.streaming.serve_attach(request) }).await?;
        results.get().init_response().set_url(&url);
        Ok(())
    }

    async fn serve_port_forward_container(
        self: CapRc<Self>,
        params: conmon::ServePortForwardContainerParams,
        mut results: conmon::ServePortForwardContainerResults,
    ) -> Result<(), capnp::Error> {
        let incoming = Incoming::new(params.get()?.get_request()?)?;
        let (call, request) = rpc_span("servePortForwardContainer", &incoming)?;
        let request = ServePortForward::read(request)?;
        let url = traced(call, async {
            self.streaming.serve_port_forward(request.net_ns_path)
        })
        .await?;
        results.get().init_response().set_url(&url);
        Ok(())
    }
}
