//! Golden tests: RPC messages captured from conmon-rs (requests from its Go clients v1.0.1 and
//! v0.6.6, which write the two request layouts; responses from its v1.0.1 `conmonrs` server;
//! see fixtures/README.md) decoded with this crate, requests through its layout detection.
//!
//! Round trips through our own writer and reader pass even when both make the same mistake;
//! these bytes come from the upstream implementation, so they pin our schema layout and our
//! readers to what conmon-rs really sends. Nothing here runs our writer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use capnp::any_pointer;
use capnp::message::{Reader, ReaderOptions};
use capnp::serialize::OwnedSegments;
use capnp_rpc::rpc_capnp::{exception, message, return_};
use conmon_proto::layout::Layout;

/// The `Conmon` interface's type ID.
const CONMON_INTERFACE: u64 = 0xb737_e899_dd66_33f1;
/// The W3C trace context the capture sent with every request.
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
/// The capture's fixed directory and container.
const DIR: &str = "/tmp/conmon-golden";
const ID: &str = "golden-ctr";

/// One Go client whose requests were captured, and the layout it writes.
#[derive(Debug, Clone, Copy)]
struct Client {
    version: &'static str,
    layout: Layout,
}

/// The client CRI-O ≥ 1.35 links.
const V1_0: Client = Client {
    version: "v1.0.1",
    layout: Layout::V1_0,
};
/// The client CRI-O ≤ 1.34 links.
const V0_6: Client = Client {
    version: "v0.6.6",
    layout: Layout::V0_6,
};
const CLIENTS: [Client; 2] = [V1_0, V0_6];

/// A fixture of `client`'s capture.
fn fixture(client: Client, kind: &str, name: &str) -> Reader<OwnedSegments> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(client.version)
        .join(kind)
        .join(format!("{name}.bin"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut input = bytes.as_slice();
    let message =
        capnp::serialize::read_message(&mut input, ReaderOptions::new()).expect("a framed message");
    assert!(input.is_empty(), "{name}: bytes after the message");
    message
}

/// The params of the fixture's `Call`, which must target `Conmon` method `method`.
fn call_params(message: &Reader<OwnedSegments>, method: u16) -> any_pointer::Reader<'_> {
    let root = message
        .get_root::<message::Reader<'_>>()
        .expect("an rpc Message");
    let message::Which::Call(call) = root.which().expect("a known message kind") else {
        panic!("not a Call message");
    };
    let call = call.expect("a Call");
    assert_eq!(call.get_interface_id(), CONMON_INTERFACE);
    assert_eq!(call.get_method_id(), method);
    call.get_params().expect("call params").get_content()
}

/// The results of the fixture's `Return`, which must not be an exception.
fn return_results(message: &Reader<OwnedSegments>) -> any_pointer::Reader<'_> {
    match returned(message) {
        return_::Which::Results(results) => results.expect("return results").get_content(),
        _ => panic!("not a Return with results"),
    }
}

/// The reason of the fixture's exception `Return`.
fn return_exception(message: &Reader<OwnedSegments>) -> String {
    let return_::Which::Exception(exc) = returned(message) else {
        panic!("not a Return with an exception");
    };
    let exc = exc.expect("an exception");
    assert_eq!(
        exc.get_type().expect("a known exception type"),
        exception::Type::Failed
    );
    exc.get_reason()
        .and_then(|reason| Ok(reason.to_string()?))
        .expect("a UTF-8 reason")
}

fn returned(message: &Reader<OwnedSegments>) -> return_::WhichReader<'_> {
    let root = message
        .get_root::<message::Reader<'_>>()
        .expect("an rpc Message");
    let message::Which::Return(ret) = root.which().expect("a known message kind") else {
        panic!("not a Return message");
    };
    ret.expect("a Return").which().expect("a known return kind")
}

fn traceparent() -> BTreeMap<String, String> {
    BTreeMap::from([("traceparent".to_owned(), TRACEPARENT.to_owned())])
}

fn path(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Binds `$request` to the `$request_type` of `$m`'s call to method `$method` (with params
/// `$params`), read through the layout detection, after checking that the detection found
/// `$client`'s layout and the capture's trace context.
macro_rules! request {
    ($request:ident: $request_type:ident = $m:expr, $client:expr, $method:expr, $params:ident) => {
        let params = $crate::call_params($m, $method)
            .get_as::<::conmon_proto::conmon::$params::Reader<'_>>()
            .unwrap();
        let incoming =
            ::conmon_proto::layout::Incoming::new(params.get_request().unwrap()).unwrap();
        assert_eq!(incoming.layout(), $client.layout, "{}", $client.version);
        assert_eq!(incoming.trace_carrier().unwrap(), $crate::traceparent());
        let $request: ::conmon_proto::conmon::$request_type::Reader<'_> =
            incoming.request().unwrap();
    };
}

/// The response in `$m`'s results, read as `$results`.
macro_rules! response {
    ($m:expr, $results:ident) => {{
        let results =
            $crate::return_results($m).get_as::<::conmon_proto::conmon::$results::Reader<'_>>();
        results.unwrap().get_response().unwrap()
    }};
}

mod requests;
mod responses;
