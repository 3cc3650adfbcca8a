//! Requests captured from conmon-rs's Go client v1.0.1.

use std::collections::BTreeMap;
use std::time::Duration;

use conmon_proto::types::{
    Attach, CgroupManager, CreateContainer, CreateNamespaces, ExecSync, LogDriver, LogFormat,
    Namespace, ServeAttach, ServeExec, WindowSize,
};

use crate::{ID, fixture, path, strings};

#[test]
fn version_requests() {
    for (name, verbose) in [("version", false), ("version_verbose", true)] {
        let m = fixture("requests", name);
        let request = request!(&m, 0, version_params);
        assert_eq!(request.get_verbose(), verbose, "{name}");
    }
}

#[test]
fn create_container_request_with_every_list_and_map() {
    let m = fixture("requests", "create_container");
    let request = request!(&m, 1, create_container_params);
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
    let request = request!(&m, 1, create_container_params);
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
        let request = request!(&m, 2, exec_sync_container_params);
        assert_eq!(ExecSync::read(request).unwrap(), expected, "{name}");
    }
}

#[test]
fn attach_reopen_and_resize_requests() {
    let m = fixture("requests", "attach");
    let request = request!(&m, 3, attach_container_params);
    let expected = Attach {
        id: ID.into(),
        socket_path: path("attach.sock"),
        exec_session_id: "golden-exec".into(),
        stop_after_stdin_eof: true,
    };
    assert_eq!(Attach::read(request).unwrap(), expected);

    let m = fixture("requests", "reopen_log");
    let request = request!(&m, 4, reopen_log_container_params);
    assert_eq!(request.get_id().unwrap().to_str().unwrap(), ID);

    let m = fixture("requests", "set_window_size");
    let request = request!(&m, 5, set_window_size_container_params);
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
    let request = request!(&m, 6, create_namespaces_params);
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
    request!(&m, 7, start_fd_socket_params);
}

#[test]
fn serve_requests() {
    let m = fixture("requests", "serve_exec");
    let request = request!(&m, 8, serve_exec_container_params);
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
    let request = request!(&m, 9, serve_attach_container_params);
    let expected = ServeAttach {
        id: ID.into(),
        stdin: true,
        stdout: false,
        stderr: true,
    };
    assert_eq!(ServeAttach::read(request).unwrap(), expected);

    let m = fixture("requests", "serve_port_forward");
    let request = request!(&m, 10, serve_port_forward_container_params);
    assert_eq!(
        request.get_net_ns_path().unwrap().to_str().unwrap(),
        "/proc/1/ns/net"
    );
}
