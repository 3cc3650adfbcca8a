//! Requests captured from conmon-rs's Go clients v1.0.1 and v0.6.6: the same calls, in the two
//! request layouts, read the same.

use std::collections::BTreeMap;
use std::time::Duration;

use conmon_proto::types::{
    Attach, CgroupManager, CreateContainer, CreateNamespaces, ExecSync, LogDriver, LogFormat,
    Namespace, ServeAttach, ServeExec, WindowSize,
};

use conmon_proto::conmon;
use conmon_proto::layout::{Incoming, Layout};

use crate::{CLIENTS, Client, ID, V1_0, call_params, fixture, path, strings};

#[test]
fn version_requests() {
    for client in CLIENTS {
        for (name, verbose) in [("version", false), ("version_verbose", true)] {
            let m = fixture(client, "requests", name);
            request!(request: version_request = &m, client, 0, version_params);
            assert_eq!(request.get_verbose(), verbose, "{name}");
        }
    }
}

#[test]
fn create_container_request_with_every_list_and_map() {
    for client in CLIENTS {
        let m = fixture(client, "requests", "create_container");
        request!(request: create_container_request = &m, client, 1, create_container_params);
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
}

#[test]
fn create_container_request_with_fd_slots() {
    for client in CLIENTS {
        let m = fixture(client, "requests", "create_container_fds");
        request!(request: create_container_request = &m, client, 1, create_container_params);
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
}

#[test]
fn exec_sync_requests() {
    for client in CLIENTS {
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
            let m = fixture(client, "requests", name);
            request!(request: exec_sync_container_request = &m, client, 2, exec_sync_container_params);
            assert_eq!(ExecSync::read(request).unwrap(), expected, "{name}");
        }
    }
}

#[test]
fn attach_reopen_and_resize_requests() {
    for client in CLIENTS {
        let m = fixture(client, "requests", "attach");
        request!(request: attach_request = &m, client, 3, attach_container_params);
        let expected = Attach {
            id: ID.into(),
            socket_path: path("attach.sock"),
            // The v0.6.6 client never sends it ("TODO: add exec session").
            exec_session_id: match client.layout {
                Layout::V1_0 => "golden-exec".into(),
                Layout::V0_6 => String::new(),
            },
            stop_after_stdin_eof: true,
        };
        assert_eq!(Attach::read(request).unwrap(), expected);

        let m = fixture(client, "requests", "reopen_log");
        request!(request: reopen_log_request = &m, client, 4, reopen_log_container_params);
        assert_eq!(request.get_id().unwrap().to_str().unwrap(), ID);

        let m = fixture(client, "requests", "set_window_size");
        request!(request: set_window_size_request = &m, client, 5, set_window_size_container_params);
        let expected = WindowSize {
            id: ID.into(),
            width: 132,
            height: 43,
        };
        assert_eq!(WindowSize::read(request).unwrap(), expected);
    }
}

/// In v0.6.6's layout, `metadataOld` comes first, before `namespaces`.
#[test]
fn create_namespaces_requests() {
    for client in CLIENTS {
        let m = fixture(client, "requests", "create_namespaces");
        request!(request: create_namespaces_request = &m, client, 6, create_namespaces_params);
        // The Go client sends ID mappings only with a user namespace.
        let expected = CreateNamespaces {
            namespaces: vec![Namespace::Ipc, Namespace::Net, Namespace::Uts],
            uid_mappings: vec![],
            gid_mappings: vec![],
            base_path: path("ns"),
            pod_id: "golden-pod".into(),
            sysctls: Default::default(),
        };
        assert_eq!(
            CreateNamespaces::read(request).unwrap(),
            expected,
            "{}",
            client.version
        );
    }
}

/// `StartFdSocketRequest` is laid out the same in both schemas: read as v1.0's.
#[test]
fn fd_socket_requests() {
    for client in CLIENTS {
        let m = fixture(client, "requests", "start_fd_socket");
        let same_in_both = Client {
            layout: Layout::V1_0,
            ..client
        };
        request!(_request: start_fd_socket_request = &m, same_in_both, 7, start_fd_socket_params);
    }
}

/// With tracing off, the Go clients send neither carrier: v0.6.6's `metadataOld` is null too,
/// so only the pointer count the client gave the struct tells the layouts apart, and the
/// environment must still come from its own slot.
#[test]
fn untraced_requests() {
    for client in CLIENTS {
        let m = fixture(client, "requests", "create_container_untraced");
        let params = call_params(&m, 1)
            .get_as::<conmon::create_container_params::Reader<'_>>()
            .unwrap();
        let incoming = Incoming::new(params.get_request().unwrap()).unwrap();
        assert_eq!(incoming.layout(), client.layout, "{}", client.version);
        assert!(incoming.trace_carrier().unwrap().is_empty());
        let create = CreateContainer::read(incoming.request().unwrap()).unwrap();
        assert_eq!(create.id, "golden-untraced");
        assert_eq!(
            create.env,
            BTreeMap::from([("GOLDEN_ENV".into(), "golden-value".into())])
        );
        assert_eq!((create.additional_fds, create.leak_fds), (vec![], vec![]));

        let m = fixture(client, "requests", "exec_sync_untraced");
        let params = call_params(&m, 2)
            .get_as::<conmon::exec_sync_container_params::Reader<'_>>()
            .unwrap();
        let incoming = Incoming::new(params.get_request().unwrap()).unwrap();
        assert_eq!(incoming.layout(), client.layout, "{}", client.version);
        assert!(incoming.trace_carrier().unwrap().is_empty());
        let exec = ExecSync::read(incoming.request().unwrap()).unwrap();
        assert_eq!(
            exec.env,
            BTreeMap::from([("EXEC_ENV".into(), "exec-value".into())])
        );
    }
}

#[test]
fn serve_requests() {
    // Only v1.0 clients have the serve methods.
    let client = V1_0;
    let m = fixture(client, "requests", "serve_exec");
    request!(request: serve_exec_container_request = &m, client, 8, serve_exec_container_params);
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

    let m = fixture(client, "requests", "serve_attach");
    request!(request: serve_attach_container_request = &m, client, 9, serve_attach_container_params);
    let expected = ServeAttach {
        id: ID.into(),
        stdin: true,
        stdout: false,
        stderr: true,
    };
    assert_eq!(ServeAttach::read(request).unwrap(), expected);

    let m = fixture(client, "requests", "serve_port_forward");
    request!(request: serve_port_forward_container_request = &m, client, 10, serve_port_forward_container_params);
    assert_eq!(
        request.get_net_ns_path().unwrap().to_str().unwrap(),
        "/proc/1/ns/net"
    );
}
