//! Responses captured from conmon-rs's server v1.0.1. The expected values are what the Go client
//! decoded from the same answers (fixtures/v1.0.1/responses/client-view.txt).

use conmon_proto::types::{ExecSyncResult, Namespace, VersionInfo};

use crate::{DIR, V1_0, fixture, return_exception};

#[test]
fn version_response() {
    let m = fixture(V1_0, "responses", "version");
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
    let response = response!(&m, version_results);
    assert_eq!(VersionInfo::read(response).unwrap(), expected);
}

#[test]
fn create_container_response_carries_the_pid() {
    let m = fixture(V1_0, "responses", "create_container");
    let response = response!(&m, create_container_results);
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
        let m = fixture(V1_0, "responses", name);
        let response = response!(&m, exec_sync_container_results);
        assert_eq!(ExecSyncResult::read(response).unwrap(), expected, "{name}");
    }
}

#[test]
fn empty_responses() {
    let m = fixture(V1_0, "responses", "attach");
    response!(&m, attach_container_results);
    let m = fixture(V1_0, "responses", "reopen_log");
    response!(&m, reopen_log_container_results);
}

#[test]
fn errors_are_failed_exceptions_with_the_message() {
    let m = fixture(V1_0, "responses", "create_container_fds");
    assert_eq!(return_exception(&m), "no file descriptor in slot 7");
    let m = fixture(V1_0, "responses", "set_window_size");
    assert_eq!(return_exception(&m), "container has no terminal");
}

#[test]
fn create_namespaces_response_lists_all_five() {
    let m = fixture(V1_0, "responses", "create_namespaces");
    let response = response!(&m, create_namespaces_results);
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
    let m = fixture(V1_0, "responses", "start_fd_socket");
    let response = response!(&m, start_fd_socket_results);
    assert_eq!(
        response.get_path().unwrap().to_str().unwrap(),
        format!("{DIR}/run/conmon-fd.sock")
    );

    let m = fixture(V1_0, "responses", "serve_exec");
    let url = response!(&m, serve_exec_container_results)
        .get_url()
        .unwrap();
    assert_eq!(
        url.to_str().unwrap(),
        "http://127.0.0.1:39937/exec/d2b25df5-aad3-4cd8-8d72-14636a117107"
    );

    let m = fixture(V1_0, "responses", "serve_attach");
    let url = response!(&m, serve_attach_container_results)
        .get_url()
        .unwrap();
    assert_eq!(
        url.to_str().unwrap(),
        "http://127.0.0.1:39937/attach/4ef73ea5-8db3-4264-ba38-10126a702278"
    );

    let m = fixture(V1_0, "responses", "serve_port_forward");
    let url = response!(&m, serve_port_forward_container_results)
        .get_url()
        .unwrap();
    assert_eq!(
        url.to_str().unwrap(),
        "http://127.0.0.1:39937/port-forward/ef0e2d0a-e202-4142-8c36-673c38c955d7"
    );
}
