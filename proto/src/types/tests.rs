//! Round trips through the codec; `proto/tests/golden/` checks it against upstream bytes.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

/// What a `write` returns: nothing, or whether the request could be encoded.
trait Written {
    fn expect_written(self);
}

impl Written for () {
    fn expect_written(self) {}
}

impl Written for Result<(), EncodeError> {
    fn expect_written(self) {
        self.expect("the request encodes");
    }
}

/// Writes `$value` as a `$request` message and reads it back with `$read`, also giving the
/// message reader to `$check`.
macro_rules! round_trip {
    ($value:expr, $request:ident, $read:path) => {
        round_trip!($value, $request, $read, |_reader| ())
    };
    ($value:expr, $request:ident, $read:path, |$reader:ident| $check:expr) => {{
        let mut message = capnp::message::Builder::new_default();
        $value
            .write(message.init_root::<conmon::$request::Builder<'_>>())
            .expect_written();
        let $reader = message
            .get_root_as_reader::<conmon::$request::Reader<'_>>()
            .unwrap();
        $check;
        $read($reader).unwrap()
    }};
}

#[test]
fn create_request_round_trips() {
    let request = CreateContainer {
        id: "c1".into(),
        bundle: "/b".into(),
        stdin: true,
        exit_paths: vec!["/e1".into(), "/e2".into()],
        oom_exit_paths: vec!["/oom".into()],
        log_drivers: vec![LogDriver {
            format: LogFormat::Json,
            path: "/l".into(),
            max_size: 9,
        }],
        cleanup_cmd: vec!["rm".into(), "-f".into()],
        global_args: vec!["--debug".into()],
        command_args: vec!["--no-pivot".into()],
        env: BTreeMap::from([("K".into(), "V".into())]),
        cgroup_manager: CgroupManager::Cgroupfs,
        additional_fds: vec![1, 2],
        leak_fds: vec![3],
        ..CreateContainer::default()
    };
    let decoded = round_trip!(request, create_container_request, CreateContainer::read);
    assert_eq!(decoded, request);
}

#[test]
fn unset_cgroup_manager_reads_as_systemd_and_timeout_rounds_up() {
    let exec = ExecSync {
        id: "c1".into(),
        command: vec!["true".into()],
        timeout: Some(Duration::from_millis(1500)),
        ..ExecSync::default()
    };
    let decoded = round_trip!(
        exec,
        exec_sync_container_request,
        ExecSync::read,
        |reader| { assert_eq!(reader.get_timeout_sec(), 2) }
    );
    assert_eq!(decoded.cgroup_manager, CgroupManager::Systemd);
    assert_eq!(decoded.timeout, Some(Duration::from_secs(2)));
}

#[test]
fn non_utf8_path_is_refused_with_its_name() {
    use std::os::unix::ffi::OsStrExt;
    let bad = PathBuf::from(std::ffi::OsStr::from_bytes(b"/logs/\xff.log"));
    let request = CreateContainer {
        id: "c1".into(),
        bundle: "/b".into(),
        log_drivers: vec![LogDriver {
            format: LogFormat::Cri,
            path: bad.clone(),
            max_size: 0,
        }],
        ..CreateContainer::default()
    };
    let mut message = capnp::message::Builder::new_default();
    let err = request
        .write(message.init_root::<conmon::create_container_request::Builder<'_>>())
        .unwrap_err();
    assert!(matches!(&err, EncodeError::NonUtf8Path { path } if *path == bad));
    assert_eq!(
        err.to_string(),
        "path '/logs/\u{FFFD}.log' is not valid UTF-8"
    );
}

#[test]
fn serve_requests_round_trip() {
    let exec = ServeExec {
        id: "c1".into(),
        command: vec!["sh".into(), "-c".into(), "exit 3".into()],
        tty: true,
        stdin: true,
        stdout: true,
        stderr: false,
        cgroup_manager: CgroupManager::Cgroupfs,
    };
    let decoded = round_trip!(exec, serve_exec_container_request, ServeExec::read);
    assert_eq!(decoded, exec);

    let attach = ServeAttach {
        id: "c1".into(),
        stdin: true,
        stdout: false,
        stderr: true,
    };
    let decoded = round_trip!(attach, serve_attach_container_request, ServeAttach::read);
    assert_eq!(decoded, attach);

    let forward = ServePortForward {
        net_ns_path: "/proc/1/ns/net".into(),
    };
    let decoded = round_trip!(
        forward,
        serve_port_forward_container_request,
        ServePortForward::read
    );
    assert_eq!(decoded, forward);
}
