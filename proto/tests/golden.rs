//! Golden tests: RPC messages captured from conmon-rs v1.0.1 (requests from its Go client,
//! responses from its `conmonrs` server; see fixtures/README.md) decoded with this crate.
//!
//! Round trips through our own writer and reader pass even when both make the same mistake;
//! these bytes come from the upstream implementation, so they pin our schema layout and our
//! readers to what conmon-rs really sends. Nothing here runs our writer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use capnp::any_pointer;
use capnp::message::{Reader, ReaderOptions};
use capnp::serialize::OwnedSegments;
use capnp_rpc::rpc_capnp::{exception, message, return_};
use conmon_proto::conmon;
use conmon_proto::map;
use conmon_proto::types::{
    Attach, CgroupManager, CreateContainer, CreateNamespaces, ExecSync, ExecSyncResult, LogDriver,
    LogFormat, Namespace, ServeAttach, ServeExec, VersionInfo, WindowSize,
};

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

#[test]
fn version_requests() {
    for (name, verbose) in [("version", false), ("version_verbose", true)] {
        let m = fixture("requests", name);
        let params = call_params(&m, 0).get_as::<conmon::version_params::Reader<'_>>();
        let request = params.unwrap().get_request().unwrap();
        assert_eq!(request.get_verbose(), verbose, "{name}");
        assert_eq!(
            map::read(request.get_metadata().unwrap()).unwrap(),
            traceparent()
        );
    }
}

#[test]
fn create_container_request_with_every_list_and_map() {
    let m = fixture("requests", "create_container");
    let params = call_params(&m, 1).get_as::<conmon::create_container_params::Reader<'_>>();
    let request = params.unwrap().get_request().unwrap();
    assert_eq!(
        map::read(request.get_metadata().unwrap()).unwrap(),
        traceparent()
    );
    let expected = CreateContainer {
        id: ID.into(),
        bundle: path("bundles/golden-ctr"),
        terminal: false,
        stdin: true,
        exit_paths: vec![path("golden-ctr.exit"), path("golden-ctr.exit2")],
        oom_exit_paths: vec![path("golden-ctr.oom")],
        log_drivers: vec![
            LogDriver {
                format: LogFormat::Cri,
                path: path("golden-ctr.log"),
                max_size: 1 << 20,
            },
            LogDriver {
                format: LogFormat::Json,
                path: path("golden-ctr.json"),
                max_size: 0,
            },
        ],
        cleanup_cmd: strings(&["/bin/true", "cleanup"]),
        global_args: strings(&["--log-format", "json"]),
        command_args: strings(&["--no-pivot"]),
        env: BTreeMap::from([("GOLDEN_ENV".into(), "golden-value".into())]),
        cgroup_manager: CgroupManager::Cgroupfs,
        additional_fds: vec![],
        leak_fds: vec![],
    };
    assert_eq!(CreateContainer::read(request).unwrap(), expected);
}

#[test]
fn create_container_request_with_fd_slots() {
    let m = fixture("requests", "create_container_fds");
    let params = call_params(&m, 1).get_as::<conmon::create_container_params::Reader<'_>>();
    let request = params.unwrap().get_request().unwrap();
    let expected = CreateContainer {
        id: "golden-fds".into(),
        bundle: path("bundles/missing"),
        cgroup_manager: CgroupManager::Cgroupfs,
        additional_fds: vec![7],
        leak_fds: vec![8, 9],
        ..CreateContainer::default()
    };
    assert_eq!(CreateContainer::read(request).unwrap(), expected);
}

#[test]
fn exec_sync_requests() {
    let cases = [
        (
            "exec_sync",
            ExecSync {
                id: ID.into(),
                command: strings(&["sh", "-c", "echo out; echo err >&2; exit 7"]),
                timeout: Some(Duration::from_secs(20)),
                terminal: false,
                env: BTreeMap::from([("EXEC_ENV".into(), "exec-value".into())]),
                cgroup_manager: CgroupManager::Cgroupfs,
            },
        ),
        (
            "exec_sync_timeout",
            ExecSync {
                id: ID.into(),
                command: strings(&["sleep", "30"]),
                timeout: Some(Duration::from_secs(1)),
                terminal: true,
                env: BTreeMap::new(),
                cgroup_manager: CgroupManager::Cgroupfs,
            },
        ),
    ];
    for (name, expected) in cases {
        let m = fixture("requests", name);
        let params = call_params(&m, 2).get_as::<conmon::exec_sync_container_params::Reader<'_>>();
        let request = params.unwrap().get_request().unwrap();
        assert_eq!(
            map::read(request.get_metadata().unwrap()).unwrap(),
            traceparent()
        );
        assert_eq!(ExecSync::read(request).unwrap(), expected, "{name}");
    }
}

#[test]
fn attach_reopen_and_resize_requests() {
    let m = fixture("requests", "attach");
    let params = call_params(&m, 3).get_as::<conmon::attach_container_params::Reader<'_>>();
    let request = params.unwrap().get_request().unwrap();
    assert_eq!(
        map::read(request.get_metadata().unwrap()).unwrap(),
        traceparent()
    );
    let expected = Attach {
        id: ID.into(),
        socket_path: path("attach.sock"),
        exec_session_id: "golden-exec".into(),
        stop_after_stdin_eof: true,
    };
    assert_eq!(Attach::read(request).unwrap(), expected);

    let m = fixture("requests", "reopen_log");
    let params = call_params(&m, 4).get_as::<conmon::reopen_log_container_params::Reader<'_>>();
    let request = params.unwrap().get_request().unwrap();
    assert_eq!(request.get_id().unwrap().to_str().unwrap(), ID);
    assert_eq!(
        map::read(request.get_metadata().unwrap()).unwrap(),
        traceparent()
    );

    let m = fixture("requests", "set_window_size");
    let params =
        call_params(&m, 5).get_as::<conmon::set_window_size_container_params::Reader<'_>>();
    let request = params.unwrap().get_request().unwrap();
    assert_eq!(
        map::read(request.get_metadata().unwrap()).unwrap(),
        traceparent()
    );
    let expected = WindowSize {
        id: ID.into(),
        width: 132,
        height: 43,
    };
    assert_eq!(WindowSize::read(request).unwrap(), expected);
}

#[test]
fn create_namespaces_and_fd_socket_requests() {
    let m = fixture("requests", "create_namespaces");
    let params = call_params(&m, 6).get_as::<conmon::create_namespaces_params::Reader<'_>>();
    let request = params.unwrap().get_request().unwrap();
    assert_eq!(
        map::read(request.get_metadata().unwrap()).unwrap(),
        traceparent()
    );
    // The Go client sends ID mappings only with a user namespace.
    let expected = CreateNamespaces {
        namespaces: vec![Namespace::Ipc, Namespace::Net, Namespace::Uts],
        uid_mappings: vec![],
        gid_mappings: vec![],
        base_path: path("ns"),
        pod_id: "golden-pod".into(),
    };
    assert_eq!(CreateNamespaces::read(request).unwrap(), expected);

    let m = fixture("requests", "start_fd_socket");
    let params = call_params(&m, 7).get_as::<conmon::start_fd_socket_params::Reader<'_>>();
    let request = params.unwrap().get_request().unwrap();
    assert_eq!(
        map::read(request.get_metadata().unwrap()).unwrap(),
        traceparent()
    );
}

#[test]
fn serve_requests() {
    let m = fixture("requests", "serve_exec");
    let params = call_params(&m, 8).get_as::<conmon::serve_exec_container_params::Reader<'_>>();
    let request = params.unwrap().get_request().unwrap();
    assert_eq!(
        map::read(request.get_metadata().unwrap()).unwrap(),
        traceparent()
    );
    let expected = ServeExec {
        id: ID.into(),
        command: strings(&["sh", "-c", "echo served"]),
        tty: true,
        stdin: false,
        stdout: true,
        stderr: false,
        cgroup_manager: CgroupManager::Cgroupfs,
    };
    assert_eq!(ServeExec::read(request).unwrap(), expected);

    let m = fixture("requests", "serve_attach");
    let params = call_params(&m, 9).get_as::<conmon::serve_attach_container_params::Reader<'_>>();
    let request = params.unwrap().get_request().unwrap();
    assert_eq!(
        map::read(request.get_metadata().unwrap()).unwrap(),
        traceparent()
    );
    let expected = ServeAttach {
        id: ID.into(),
        stdin: true,
        stdout: false,
        stderr: true,
    };
    assert_eq!(ServeAttach::read(request).unwrap(), expected);

    let m = fixture("requests", "serve_port_forward");
    let params =
        call_params(&m, 10).get_as::<conmon::serve_port_forward_container_params::Reader<'_>>();
    let request = params.unwrap().get_request().unwrap();
    assert_eq!(
        map::read(request.get_metadata().unwrap()).unwrap(),
        traceparent()
    );
    assert_eq!(
        request.get_net_ns_path().unwrap().to_str().unwrap(),
        "/proc/1/ns/net"
    );
}

// Responses: the expected values are what the Go client decoded from the same answers
// (fixtures/v1.0.1/responses/client-view.txt).

#[test]
fn version_response() {
    let m = fixture("responses", "version");
    let results = return_results(&m).get_as::<conmon::version_results::Reader<'_>>();
    let expected = VersionInfo {
        process_id: 28186,
        version: "1.0.1".into(),
        tag: String::new(),
        commit: String::new(),
        build_date: "2026-11-29 20:03:24".into(),
        target: "x86_64-unknown-linux-gnu".into(),
        rust_version: "rustc 1.95.0 (59807616e 2026-04-14)".into(),
        cargo_version: "cargo 1.95.0 (f2d3ce0bd 2026-03-21)".into(),
        cargo_tree: String::new(),
    };
    let response = results.unwrap().get_response().unwrap();
    assert_eq!(VersionInfo::read(response).unwrap(), expected);
}

#[test]
fn create_container_response_carries_the_pid() {
    let m = fixture("responses", "create_container");
    let results = return_results(&m).get_as::<conmon::create_container_results::Reader<'_>>();
    let response = results.unwrap().get_response().unwrap();
    assert_eq!(response.get_container_pid(), 28203);
}

#[test]
fn exec_sync_responses() {
    let cases = [
        (
            "exec_sync",
            ExecSyncResult {
                exit_code: 7,
                stdout: b"out\n".to_vec(),
                stderr: b"err\n".to_vec(),
                timed_out: false,
            },
        ),
        (
            "exec_sync_timeout",
            ExecSyncResult {
                exit_code: -3,
                stdout: vec![],
                stderr: vec![],
                timed_out: true,
            },
        ),
    ];
    for (name, expected) in cases {
        let m = fixture("responses", name);
        let results =
            return_results(&m).get_as::<conmon::exec_sync_container_results::Reader<'_>>();
        let response = results.unwrap().get_response().unwrap();
        assert_eq!(ExecSyncResult::read(response).unwrap(), expected, "{name}");
    }
}

#[test]
fn empty_responses() {
    let m = fixture("responses", "attach");
    let results = return_results(&m).get_as::<conmon::attach_container_results::Reader<'_>>();
    results.unwrap().get_response().unwrap();
    let m = fixture("responses", "reopen_log");
    let results = return_results(&m).get_as::<conmon::reopen_log_container_results::Reader<'_>>();
    results.unwrap().get_response().unwrap();
}

#[test]
fn errors_are_failed_exceptions_with_the_message() {
    let m = fixture("responses", "create_container_fds");
    assert_eq!(return_exception(&m), "no file descriptor in slot 7");
    let m = fixture("responses", "set_window_size");
    assert_eq!(return_exception(&m), "container has no terminal");
}

#[test]
fn create_namespaces_response_lists_all_five() {
    let m = fixture("responses", "create_namespaces");
    let results = return_results(&m).get_as::<conmon::create_namespaces_results::Reader<'_>>();
    let response = results.unwrap().get_response().unwrap();
    let got: Vec<(Namespace, String)> = response
        .get_namespaces()
        .unwrap()
        .iter()
        .map(|ns| {
            let path = ns.get_path().unwrap().to_string().unwrap();
            (Namespace::read(ns.get_type()).unwrap(), path)
        })
        .collect();
    let ns = |kind, dir: &str| (kind, format!("{DIR}/ns/{dir}/golden-pod"));
    let expected = vec![
        ns(Namespace::Ipc, "ipcns"),
        ns(Namespace::Pid, "pidns"),
        ns(Namespace::Net, "netns"),
        ns(Namespace::User, "userns"),
        ns(Namespace::Uts, "utsns"),
    ];
    assert_eq!(got, expected);
}

#[test]
fn fd_socket_and_serve_responses() {
    let m = fixture("responses", "start_fd_socket");
    let results = return_results(&m).get_as::<conmon::start_fd_socket_results::Reader<'_>>();
    let response = results.unwrap().get_response().unwrap();
    assert_eq!(
        response.get_path().unwrap().to_str().unwrap(),
        format!("{DIR}/run/conmon-fd.sock")
    );

    let m = fixture("responses", "serve_exec");
    let results = return_results(&m).get_as::<conmon::serve_exec_container_results::Reader<'_>>();
    let url = results.unwrap().get_response().unwrap().get_url().unwrap();
    assert_eq!(
        url.to_str().unwrap(),
        "http://127.0.0.1:39937/exec/d2b25df5-aad3-4cd8-8d72-14636a117107"
    );

    let m = fixture("responses", "serve_attach");
    let results = return_results(&m).get_as::<conmon::serve_attach_container_results::Reader<'_>>();
    let url = results.unwrap().get_response().unwrap().get_url().unwrap();
    assert_eq!(
        url.to_str().unwrap(),
        "http://127.0.0.1:39937/attach/4ef73ea5-8db3-4264-ba38-10126a702278"
    );

    let m = fixture("responses", "serve_port_forward");
    let results =
        return_results(&m).get_as::<conmon::serve_port_forward_container_results::Reader<'_>>();
    let url = results.unwrap().get_response().unwrap().get_url().unwrap();
    assert_eq!(
        url.to_str().unwrap(),
        "http://127.0.0.1:39937/port-forward/ef0e2d0a-e202-4142-8c36-673c38c955d7"
    );
}
