//! Test fixtures (a dev-only crate): integration tests that run real containers with runc under conmond.
//!
//! Each test gets a [`Pod`]: its own temporary runtime directory, runc state root and conmond
//! daemon, all torn down on drop (containers deleted, daemon killed), so a failing test leaks
//! nothing. Tests need root, runc and a static busybox; without them they fail loudly.
//! The journald tests get a private `systemd-journald` of their own ([`journal`]).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

pub mod journal;
pub mod k8s;
mod pod;
mod shim;
pub mod spdy;

pub use pod::{Pod, with_pod};
pub use shim::{ShimEnv, shim_binary};

pub use conmon_telemetry::receiver as otlp;
pub use runtime_shim::attach::{AttachSocket, Packet};
pub use runtime_shim::client::{
    Attach, CgroupManager, CreateContainer, CreateNamespaces, ExecSync, LogDriver, LogFormat,
    MonitorClient, Namespace, ServeAttach, ServeExec, WindowSize,
};

/// The runtime the tests drive.
pub const RUNC: &str = "/usr/sbin/runc";
pub use runtime_shim::bundle::BUSYBOX;
use runtime_shim::cri_log::{self, Stream};

/// Panics with instructions unless the tests can run real containers here.
pub fn require_privileged() {
    // SAFETY-free check: geteuid through the procfs status file keeps tests free of unsafe code.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0");
    assert!(
        root,
        "integration tests run real containers and need root (run as root)"
    );
    for tool in [RUNC, BUSYBOX] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: apt-get install runc busybox-static"
        );
    }
}

/// Path of the conmond binary under test: `$CONMOND_BINARY`, or the workspace's debug build.
pub fn conmond_binary() -> PathBuf {
    let path = std::env::var_os("CONMOND_BINARY").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/conmond"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "conmond not found at {}: build it first (cargo build --workspace) or set CONMOND_BINARY",
        path.display()
    );
    path
}

/// A name unique to this test process and call.
pub fn unique_id(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs an async test body on a multi-threaded runtime (the engine's `Send` futures).
pub fn run_multi_thread<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build tokio runtime")
        .block_on(future)
}

/// Container IDs runc knows under `root`.
pub fn runc_list(root: &Path) -> Result<Vec<String>> {
    let output = Command::new(RUNC)
        .arg("--root")
        .arg(root)
        .args(["list", "-q"])
        .output()?;
    if !output.status.success() {
        bail!(
            "runc list failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// Leaves nothing behind a test: kills every process whose command line mentions `dir` (its
/// monitors), deletes every container runc knows under `runc_root`, and detaches mounts left
/// under `dir` (pinned namespaces of a monitor that failed to clean up).
pub fn teardown(dir: &Path, runc_root: &Path) {
    // Monitors first, so they do not race the deletes below.
    for pid in processes_mentioning(&dir.display().to_string()) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    for id in runc_list(runc_root).unwrap_or_default() {
        let _ = Command::new(RUNC)
            .arg("--root")
            .arg(runc_root)
            .args(["delete", "--force", &id])
            .status();
    }
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for mount_point in table.lines().filter_map(|line| line.split(' ').nth(4)) {
        if Path::new(mount_point).starts_with(dir) {
            let _ = Command::new("umount").args(["-l", mount_point]).status();
        }
    }
}

/// Runs an async test body on a current-thread runtime with a `LocalSet` (capnp is `!Send`).
pub fn run_local<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build tokio runtime");
    tokio::task::LocalSet::new().block_on(&runtime, future)
}

/// Polls `check` every 10 ms until it returns `Some`, failing after `timeout`.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    wait_for_async(what, timeout, async || check()).await
}

/// Like [`wait_for`], with a check that awaits (an RPC, say).
pub async fn wait_for_async<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The message of the error `result` was expected to hold.
pub fn error_text<T: std::fmt::Debug, E: std::fmt::Display>(result: Result<T, E>) -> String {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(err) => err.to_string(),
    }
}

/// Waits until the file at `path` contains `needle` and returns its contents.
pub async fn wait_for_text(path: &Path, needle: &str, timeout: Duration) -> Result<String> {
    wait_for(
        &format!("'{needle}' in {}", path.display()),
        timeout,
        || {
            std::fs::read_to_string(path)
                .ok()
                .filter(|text| text.contains(needle))
        },
    )
    .await
}

/// Waits until `path` exists and returns its contents.
pub async fn wait_for_file(path: &Path, timeout: Duration) -> Result<String> {
    wait_for(&format!("file {}", path.display()), timeout, || {
        std::fs::read_to_string(path).ok()
    })
    .await
}

/// Creates an OCI bundle at `dir` with a busybox rootfs running `args`; `edit` may adjust the
/// generated config.
pub fn busybox_bundle(
    dir: &Path,
    args: &[&str],
    edit: impl FnOnce(&mut serde_json::Value),
) -> Result<PathBuf> {
    Ok(runtime_shim::bundle::busybox_bundle(
        dir,
        Path::new(RUNC),
        args,
        edit,
    )?)
}

/// An exec-sync request for `command` in container `id` (cgroupfs manager, no timeout).
pub fn exec_request(id: &str, command: &[&str]) -> ExecSync {
    ExecSync {
        id: id.to_owned(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        cgroup_manager: CgroupManager::Cgroupfs,
        ..ExecSync::default()
    }
}

/// A single log driver writing `format` to `path`, with a size limit (0 = none).
pub fn log_to(format: LogFormat, path: &Path, max_size: u64) -> Vec<LogDriver> {
    vec![LogDriver {
        format,
        path: path.to_owned(),
        max_size,
    }]
}

/// Reassembles the byte stream of `stream` (`stdout` or `stderr`) from CRI log text.
pub fn cri_stream(log: &[u8], stream: &str) -> Result<Vec<u8>> {
    let stream = match stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        other => bail!("no CRI stream {other:?}"),
    };
    Ok(cri_log::reassemble(log, Some(stream))?)
}

/// PIDs of processes whose command line mentions `needle` (e.g. a unique run directory).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let running = runtime_shim::monitor::process_running(*pid);
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            running && String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

/// A pod run directory and runc root for runtime-shim tests; on drop, monitors started for it
/// are killed and its containers deleted.
#[derive(Debug)]
pub struct ShimPod {
    /// Holds everything.
    pub dir: tempfile::TempDir,
    /// The pod's run directory (monitor socket).
    pub run_dir: PathBuf,
    /// runc's root.
    pub runc_root: PathBuf,
}

impl ShimPod {
    /// Fresh directories.
    pub fn new() -> Result<Self> {
        require_privileged();
        let dir = tempfile::Builder::new().prefix("shim-it").tempdir()?;
        let run_dir = dir.path().join("pod-run");
        let runc_root = dir.path().join("runc");
        Ok(Self {
            dir,
            run_dir,
            runc_root,
        })
    }

    /// A monitor spec for conmond under test with runc and this pod's root.
    pub fn spec(&self) -> runtime_shim::monitor::MonitorSpec {
        runtime_shim::monitor::MonitorSpec {
            monitor: conmond_binary(),
            runtime: RUNC.into(),
            runtime_root: self.runc_root.clone(),
            log_level: conmon_telemetry::LogLevel::Debug,
            log_driver: runtime_shim::config::MonitorLogDriver::Stdout,
            tracing_endpoint: None,
            placement: runtime_shim::cgroup::Placement::Inherit,
        }
    }

    /// Live processes started for this pod's run directory.
    pub fn monitors(&self) -> Vec<u32> {
        processes_mentioning(&self.run_dir.display().to_string())
    }
}

impl Drop for ShimPod {
    fn drop(&mut self) {
        teardown(self.dir.path(), &self.runc_root);
    }
}

/// Connects to an attach socket, with reads failing after 10 s instead of hanging a test.
pub fn seqpacket_connect(path: &Path) -> Result<AttachSocket> {
    let socket =
        AttachSocket::connect(path).with_context(|| format!("connect {}", path.display()))?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(socket)
}

/// Reads attach packets until `done(stdout, stderr)` holds, the end packet arrives (`true`
/// in the result) or the socket closes.
pub fn read_attach(
    socket: &AttachSocket,
    done: impl Fn(&[u8], &[u8]) -> bool,
) -> Result<(Vec<u8>, Vec<u8>, bool)> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 8192];
    while !done(&out, &err) {
        match socket.receive(&mut buf).context("read attach packet")? {
            Packet::Stdout(data) => out.extend_from_slice(data),
            Packet::Stderr(data) => err.extend_from_slice(data),
            Packet::Done => return Ok((out, err, true)),
            Packet::Closed => return Ok((out, err, false)),
        }
    }
    Ok((out, err, false))
}
