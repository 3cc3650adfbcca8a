//! Golden tests: RPC messages captured from conmon-rs v1.0.1 (requests from its Go client,
//! responses from its `conmonrs` server; see fixtures/README.md) decoded with this crate.
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

/// The `Conmon` interface's type ID.
const CONMON_INTERFACE: u64 = 0xb737_e899_dd66_33f1;
/// The W3C trace context the capture sent with every request.
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
/// The capture's fixed directory and container.
const DIR: &str = "/tmp/conmon-golden";
const ID: &str = "golden-ctr";

fn fixture(kind: &str, name: &str) -> Reader<OwnedSegments> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v1.0.1")
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

/// The request of `$m`'s call to method `$method`, read as `$params`, after checking that it
/// carries the capture's trace context.
macro_rules! request {
    ($m:expr, $method:expr, $params:ident) => {{
        let params = $crate::call_params($m, $method)
            .get_as::<::conmon_proto::conmon::$params::Reader<'_>>();
        let request = params.unwrap().get_request().unwrap();
        assert_eq!(
            ::conmon_proto::map::read(request.get_metadata().unwrap()).unwrap(),
            $crate::traceparent()
        );
        request
    }};
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
