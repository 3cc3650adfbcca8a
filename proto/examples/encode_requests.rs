//! Writes one flat Cap'n Proto message per request type (and per response conmond sends),
//! encoded by this crate with fixed values, to `<dir>/<StructName>.bin`.
//!
//! The interop suite decodes them with `capnp decode` and conmon-rs's own `conmon.capnp`
//! (tests/interop/upstream_schema_test.go), so our writer is checked against the upstream
//! layout and not only against our reader. Usage: `encode_requests <dir>`.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

use capnp::message::{Builder, HeapAllocator};
use conmon_proto::conmon;
use conmon_proto::map;
use conmon_proto::types::{
    Attach, CgroupManager, CreateContainer, CreateNamespaces, ExecSync, ExecSyncResult, LogDriver,
    LogFormat, Namespace, ServeAttach, ServeExec, ServePortForward, VersionInfo, WindowSize,
};

const TRACEPARENT: (&str, &str) = (
    "traceparent",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
);

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .ok_or("usage: encode_requests <dir>")?,
    );
    std::fs::create_dir_all(&dir)?;
    requests(&dir)?;
    responses(&dir)
}

/// Encodes `$write` into a `$request` with the trace context and saves it as `$name`.
macro_rules! save_request {
    ($dir:expr, $name:literal, $request:ident, |$r:ident| $write:expr) => {{
        let mut message = Builder::new_default();
        let mut root = message.init_root::<conmon::$request::Builder<'_>>();
        {
            let $r = root.reborrow();
            $write;
        }
        map::write(root.init_metadata(1), [TRACEPARENT]);
        save($dir, $name, &message)?;
    }};
}

fn requests(dir: &Path) -> Result<(), Box<dyn Error>> {
    save_request!(
        dir,
        "CreateContainerRequest",
        create_container_request,
        |r| CreateContainer {
            id: "c1".into(),
            bundle: "/run/bundle".into(),
            // Neighbouring flags differ, so a swap of two fields shows in the decoded text.
            terminal: true,
            stdin: false,
            exit_paths: vec!["/run/exit1".into(), "/run/exit2".into()],
            oom_exit_paths: vec!["/run/oom".into()],
            log_drivers: vec![
                driver(LogFormat::Cri, "/logs/c1.log", 1024),
                driver(LogFormat::Json, "/logs/c1.json", 0),
                driver(LogFormat::Journald, "", 0),
            ],
            cleanup_cmd: vec!["rm".into(), "-f".into()],
            global_args: vec!["--debug".into()],
            command_args: vec!["--no-pivot".into()],
            env: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "two".into())]),
            cgroup_manager: CgroupManager::Cgroupfs,
            additional_fds: vec![3, 4],
            leak_fds: vec![5],
        }
        .write(r)?
    );

    save_request!(
        dir,
        "ExecSyncContainerRequest",
        exec_sync_container_request,
        |r| ExecSync {
            id: "c1".into(),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            timeout: Some(Duration::from_millis(1500)),
            terminal: true,
            env: BTreeMap::from([("E".into(), "x".into())]),
            cgroup_manager: CgroupManager::Cgroupfs,
        }
        .write(r)
    );

    save_request!(dir, "AttachRequest", attach_request, |r| Attach {
        id: "c1".into(),
        socket_path: "/run/attach".into(),
        exec_session_id: "e1".into(),
        stop_after_stdin_eof: true,
    }
    .write(r)?);

    save_request!(dir, "SetWindowSizeRequest", set_window_size_request, |r| {
        WindowSize {
            id: "c1".into(),
            width: 132,
            height: 43,
        }
        .write(r)
    });

    save_request!(
        dir,
        "CreateNamespacesRequest",
        create_namespaces_request,
        |r| CreateNamespaces {
            namespaces: vec![
                Namespace::Ipc,
                Namespace::Net,
                Namespace::Pid,
                Namespace::User,
                Namespace::Uts,
            ],
            uid_mappings: vec!["0 100000 65536".into()],
            gid_mappings: vec!["0 200000 65536".into()],
            base_path: "/var/run".into(),
            pod_id: "pod1".into(),
            sysctls: Default::default(),
        }
        .write(r)?
    );

    save_request!(
        dir,
        "ServeExecContainerRequest",
        serve_exec_container_request,
        |r| ServeExec {
            id: "c1".into(),
            command: vec!["sh".into()],
            tty: true,
            stdin: false,
            stdout: true,
            stderr: false,
            cgroup_manager: CgroupManager::Cgroupfs,
        }
        .write(r)
    );

    save_request!(
        dir,
        "ServeAttachContainerRequest",
        serve_attach_container_request,
        |r| ServeAttach {
            id: "c1".into(),
            stdin: true,
            stdout: false,
            stderr: true,
        }
        .write(r)
    );

    save_request!(
        dir,
        "ServePortForwardContainerRequest",
        serve_port_forward_container_request,
        |r| ServePortForward {
            net_ns_path: "/proc/1/ns/net".into(),
        }
        .write(r)?
    );
    Ok(())
}

/// The responses conmond itself encodes with this crate.
fn responses(dir: &Path) -> Result<(), Box<dyn Error>> {
    let mut m = Builder::new_default();
    ExecSyncResult {
        exit_code: -3,
        stdout: b"out\n".to_vec(),
        stderr: b"err\n".to_vec(),
        timed_out: true,
    }
    .write(m.init_root());
    save(dir, "ExecSyncContainerResponse", &m)?;

    let mut m = Builder::new_default();
    VersionInfo {
        process_id: 4242,
        version: "0.1.0".into(),
        tag: "v0.1.0".into(),
        commit: "abc123".into(),
        build_date: "2026-01-02 03:04:05".into(),
        target: "x86_64-unknown-linux-gnu".into(),
        rust_version: "rustc 1.95.0".into(),
        cargo_version: "cargo 1.95.0".into(),
        cargo_tree: "conmon v0.1.0".into(),
    }
    .write(m.init_root());
    save(dir, "VersionResponse", &m)
}

fn driver(format: LogFormat, path: &str, max_size: u64) -> LogDriver {
    LogDriver {
        format,
        path: path.into(),
        max_size,
    }
}

fn save(dir: &Path, name: &str, message: &Builder<HeapAllocator>) -> Result<(), Box<dyn Error>> {
    let mut bytes = Vec::new();
    capnp::serialize::write_message(&mut bytes, message)?;
    std::fs::write(dir.join(format!("{name}.bin")), bytes)?;
    Ok(())
}
