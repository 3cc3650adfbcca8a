//! Arbitrary bytes as a framed Cap'n Proto message, read with the limits the monitor's RPC
//! transport uses (`conmon_proto::transport::MAX_REQUEST_BYTES`): as each request struct of
//! the schema directly, and as an rpc `Message` whose `Call` params are read as each method's
//! params. Every request goes through the layout detection (`conmon_proto::layout`), our codec
//! (`conmon_proto::types::*::read`, `map::read` for metadata), then through what the monitor
//! does with it next: the trace context of the metadata (`propagation::extract`) and the
//! request checks (`validate`). Nothing may panic.
#![no_main]

use ::conmon::fuzzing;
use capnp::any_pointer;
use capnp::message::{Reader, ReaderOptions};
use capnp::serialize::OwnedSegments;
use capnp_rpc::rpc_capnp::message;
use conmon_proto::conmon;
use conmon_proto::layout::Incoming;
use conmon_proto::transport::MAX_REQUEST_BYTES;
use conmon_proto::types::{
    Attach, CreateContainer, CreateNamespaces, ExecSync, ServeAttach, ServeExec, ServePortForward,
    WindowSize,
};
use libfuzzer_sys::fuzz_target;

/// The serving end's reader limits (`transport::serve`).
fn options() -> ReaderOptions {
    *ReaderOptions::new().traversal_limit_in_words(Some(
        usize::try_from(MAX_REQUEST_BYTES / 8).unwrap_or(usize::MAX),
    ))
}

/// The message framed at the start of `data`; each use gets a fresh traversal budget, as the
/// monitor reads each message once.
fn decode(data: &[u8]) -> Option<Reader<OwnedSegments>> {
    let mut input = data;
    capnp::serialize::read_message(&mut input, options()).ok()
}

/// What the monitor does with a request's trace context: a map (from whichever layout the
/// client wrote), then the parent span context.
fn metadata(incoming: &Incoming<'_>) {
    if let Ok(map) = incoming.trace_carrier() {
        let _ = conmon_telemetry::propagation::extract(&map);
    }
}

fn container_id(id: capnp::Result<capnp::text::Reader<'_>>) {
    if let Ok(id) = id.and_then(|id| Ok(id.to_str()?)) {
        let _ = fuzzing::validate_container_id(id);
    }
}

/// `fn $name` handles a `$request` as the monitor does: its layout, its metadata, then `$body`
/// (the codec and the request checks) on the request in v1.0's layout.
macro_rules! handler {
    ($name:ident, $request:ident, |$r:ident| $body:expr) => {
        fn $name(request: conmon::$request::Reader<'_>) {
            let Ok(incoming) = Incoming::new(request) else {
                return;
            };
            metadata(&incoming);
            if let Ok($r) = incoming.request::<conmon::$request::Reader<'_>>() {
                let _ = $body;
            }
        }
    };
}

handler!(version, version_request, |r| r.get_verbose());
handler!(create_container, create_container_request, |r| {
    CreateContainer::read(r).map(|c| fuzzing::validate_container_id(&c.id))
});
handler!(exec_sync, exec_sync_container_request, |r| {
    ExecSync::read(r).map(|e| fuzzing::validate_command(&e.command))
});
handler!(attach, attach_request, |r| Attach::read(r));
handler!(reopen_log, reopen_log_request, |r| container_id(r.get_id()));
handler!(set_window_size, set_window_size_request, |r| WindowSize::read(r));
handler!(create_namespaces, create_namespaces_request, |r| CreateNamespaces::read(r));
handler!(start_fd_socket, start_fd_socket_request, |_r| ());
handler!(serve_exec, serve_exec_container_request, |r| {
    ServeExec::read(r).map(|e| fuzzing::validate_command(&e.command))
});
handler!(serve_attach, serve_attach_container_request, |r| ServeAttach::read(r));
handler!(serve_port_forward, serve_port_forward_container_request, |r| {
    ServePortForward::read(r)
});

/// Every request struct of the schema: (request, the params struct of its method, what the
/// monitor does with it).
macro_rules! each_request {
    ($apply:ident) => {
        $apply!(version_request, version_params, version);
        $apply!(
            create_container_request,
            create_container_params,
            create_container
        );
        $apply!(
            exec_sync_container_request,
            exec_sync_container_params,
            exec_sync
        );
        $apply!(attach_request, attach_container_params, attach);
        $apply!(reopen_log_request, reopen_log_container_params, reopen_log);
        $apply!(
            set_window_size_request,
            set_window_size_container_params,
            set_window_size
        );
        $apply!(
            create_namespaces_request,
            create_namespaces_params,
            create_namespaces
        );
        $apply!(
            start_fd_socket_request,
            start_fd_socket_params,
            start_fd_socket
        );
        $apply!(
            serve_exec_container_request,
            serve_exec_container_params,
            serve_exec
        );
        $apply!(
            serve_attach_container_request,
            serve_attach_container_params,
            serve_attach
        );
        $apply!(
            serve_port_forward_container_request,
            serve_port_forward_container_params,
            serve_port_forward
        );
    };
}

/// `root` read as each request struct.
fn requests(root: any_pointer::Reader<'_>) {
    macro_rules! as_request {
        ($request:ident, $params:ident, $handle:ident) => {
            if let Ok(r) = root.get_as::<conmon::$request::Reader<'_>>() {
                $handle(r);
            }
        };
    }
    each_request!(as_request);
}

/// A call's params read as each method's params struct (every one is `(request :XRequest)`, so
/// this reads the one pointer as each request struct), the way capnp-rpc hands them to the
/// monitor's handlers.
fn params(content: any_pointer::Reader<'_>) {
    macro_rules! as_params {
        ($request:ident, $params:ident, $handle:ident) => {
            if let Ok(r) = content
                .get_as::<conmon::$params::Reader<'_>>()
                .and_then(|params| params.get_request())
            {
                $handle(r);
            }
        };
    }
    each_request!(as_params);
}

fuzz_target!(|data: &[u8]| {
    // As a request struct at the root.
    if let Some(message) = decode(data)
        && let Ok(root) = message.get_root::<any_pointer::Reader<'_>>()
    {
        requests(root);
    }
    // As an rpc Message carrying a Call.
    let Some(message) = decode(data) else {
        return;
    };
    let Ok(root) = message.get_root::<message::Reader<'_>>() else {
        return;
    };
    if let Ok(message::Which::Call(Ok(call))) = root.which() {
        let _ = (call.get_interface_id(), call.get_method_id());
        if let Ok(payload) = call.get_params() {
            params(payload.get_content());
        }
    }
});
