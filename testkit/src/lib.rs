//! Test fixtures (a dev-only crate): integration tests that run real containers with runc under conmond.
//!
//! Each test gets a [`Pod`]: its own temporary runtime directory, runc state root and conmond
//! daemon, all torn down on drop (containers deleted, daemon killed), so a failing test leaks
//! nothing. Tests need root, runc and a static busybox; without them they fail loudly.

use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

pub mod k8s;
mod shim;

pub use shim::{ShimEnv, shim_binary};

pub use conmon_telemetry::receiver as otlp;
pub use runtime_shim::attach::{AttachSocket, Packet};
pub use runtime_shim::client::{
    Attach, CgroupManager, CreateContainer, ExecSync, LogDriver, LogFormat, MonitorClient,
    ServeAttach, ServeExec, WindowSize,
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
/// monitors), then deletes every container runc knows under `runc_root`.
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
}

/// Runs an async test body on a current-thread runtime with a `LocalSet` (capnp is `!Send`).
pub fn run_local<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build tokio runtime");
    tokio::task::LocalSet::new().block_on(&runtime, future)
}

/// Starts a monitor and runs `test` with a client of it on a `LocalSet`; the pod is torn down
/// afterwards whatever the outcome.
pub fn with_pod(test: impl AsyncFnOnce(&Pod, &MonitorClient) -> Result<()>) -> Result<()> {
    let pod = Pod::start()?;
    run_local(async {
        let client = pod.client().await?;
        test(&pod, &client).await
    })
}

/// Polls `check` every 10 ms until it returns `Some`, failing after `timeout`.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `path` exists and returns its contents.
pub async fn wait_for_file(path: &Path, timeout: Duration) -> Result<String> {
    wait_for(&format!("file {}", path.display()), timeout, || {
        std::fs::read_to_string(path).ok()
    })
    .await
}

/// One conmond with its own directories.
#[derive(Debug)]
pub struct Pod {
    /// Temporary directory holding everything below.
    pub dir: tempfile::TempDir,
    /// conmond's `--runtime-dir`.
    pub runtime_dir: PathBuf,
    /// runc's `--root`.
    pub runc_root: PathBuf,
    /// The daemon's PID (from its pidfile).
    pub pid: u32,
}

impl Pod {
    /// Starts conmond as an engine would (forking, pidfile) with a fresh runtime directory.
    pub fn start() -> Result<Self> {
        Self::start_with(None, &[])
    }

    /// Starts conmond exporting telemetry to `endpoint`, plus `extra` flags.
    pub fn start_traced(endpoint: &str, extra: &[&str]) -> Result<Self> {
        let mut args = vec!["--enable-tracing", "--tracing-endpoint", endpoint];
        args.extend_from_slice(extra);
        Self::start_with(None, &args)
    }

    /// Starts conmond with its runtime directory at `runtime_dir` (relative to a fresh temp dir)
    /// and `extra` flags.
    pub fn start_with(runtime_dir: Option<&str>, extra: &[&str]) -> Result<Self> {
        Self::start_via(&[], runtime_dir, extra)
    }

    /// Like [`Pod::start_with`], but conmond's command line is appended to `launcher` (a
    /// program and its arguments) and run by it, as an engine's wrapper would.
    pub fn start_via(
        launcher: &[&OsStr],
        runtime_dir: Option<&str>,
        extra: &[&str],
    ) -> Result<Self> {
        require_privileged();
        let dir = tempfile::Builder::new().prefix("conmond-it").tempdir()?;
        let runtime_dir = dir.path().join(runtime_dir.unwrap_or("run"));
        let runc_root = dir.path().join("runc");
        std::fs::create_dir_all(dir.path())?;
        let log = std::fs::File::create(dir.path().join("conmond.log"))?;
        // Defaults, unless `extra` sets the flag itself.
        let defaults = [
            ("--runtime", RUNC),
            ("--log-level", "debug"),
            ("--log-driver", "stdout"),
        ];
        let defaults: Vec<&str> = defaults
            .iter()
            .filter(|(flag, _)| !extra.contains(flag))
            .flat_map(|(flag, value)| [*flag, *value])
            .collect();
        let mut command = match launcher {
            [program, args @ ..] => {
                let mut command = Command::new(program);
                command.args(args).arg(conmond_binary());
                command
            }
            [] => Command::new(conmond_binary()),
        };
        let status = command
            .args(&defaults)
            .arg("--runtime-dir")
            .arg(&runtime_dir)
            .arg("--runtime-root")
            .arg(&runc_root)
            .args(extra)
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .context("run conmond")?;
        if !status.success() {
            bail!("conmond exited with {status}");
        }
        let pid = std::fs::read_to_string(runtime_dir.join("pidfile"))
            .context("read conmond pidfile")?
            .parse()
            .context("parse conmond pidfile")?;
        Ok(Self {
            dir,
            runtime_dir,
            runc_root,
            pid,
        })
    }

    /// The RPC socket.
    pub fn socket(&self) -> PathBuf {
        self.runtime_dir.join("conmon.sock")
    }

    /// Connects a client (within [`run_local`]).
    pub async fn client(&self) -> Result<MonitorClient> {
        Ok(MonitorClient::connect(&self.socket()).await?)
    }

    /// Builds a busybox bundle named `name` whose process runs `args`.
    pub fn bundle(&self, name: &str, args: &[&str]) -> Result<PathBuf> {
        busybox_bundle(&self.dir.path().join("bundles").join(name), args, |_| {})
    }

    /// Like [`Pod::bundle`], with `edit` applied to the OCI config.
    pub fn bundle_with(
        &self,
        name: &str,
        args: &[&str],
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Result<PathBuf> {
        busybox_bundle(&self.dir.path().join("bundles").join(name), args, edit)
    }

    /// A path for a test file (exit file, log) under the pod's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A create request for container `id` with the cgroupfs manager and one exit file.
    pub fn create_request(&self, id: &str, bundle: PathBuf) -> CreateContainer {
        CreateContainer {
            id: id.to_owned(),
            bundle,
            exit_paths: vec![self.path(&format!("{id}.exit"))],
            cgroup_manager: CgroupManager::Cgroupfs,
            ..CreateContainer::default()
        }
    }

    /// Runs `runc --root <pod root> ARGS`, failing with runc's stderr.
    pub fn runc(&self, args: &[&str]) -> Result<String> {
        let output = Command::new(RUNC)
            .arg("--root")
            .arg(&self.runc_root)
            .args(args)
            .output()?;
        if !output.status.success() {
            bail!(
                "runc {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Container IDs runc still knows in this pod's root.
    pub fn runc_containers(&self) -> Result<Vec<String>> {
        runc_list(&self.runc_root)
    }

    /// What the daemon holds, from the `state` line it logs on SIGUSR1 (`containers`,
    /// `exec_sessions`, `pending_streams`, `active_streams`, `tasks`, `open_fds`).
    pub async fn state(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let log = self.dir.path().join("conmond.log");
        let lines = || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter(|line| line.contains(" state ") && line.contains("open_fds="))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let before = lines().len();
        let status = Command::new("kill")
            .args(["-USR1", &self.pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -USR1 {} failed", self.pid);
        }
        let line = wait_for("state line", Duration::from_secs(10), || {
            lines().get(before).cloned()
        })
        .await?;
        Ok(line
            .split_whitespace()
            .filter_map(|field| field.split_once('='))
            .filter_map(|(key, value)| Some((key.to_owned(), value.parse().ok()?)))
            .collect())
    }

    /// Whether the daemon process still exists (and is not a zombie).
    pub fn daemon_alive(&self) -> bool {
        runtime_shim::monitor::process_running(self.pid)
    }
}

impl Drop for Pod {
    #[allow(
        clippy::print_stdout,
        reason = "libtest shows captured output of failing tests only"
    )]
    fn drop(&mut self) {
        let log = std::fs::read_to_string(self.dir.path().join("conmond.log")).unwrap_or_default();
        println!("--- conmond log ---\n{log}");
        teardown(self.dir.path(), &self.runc_root);
    }
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
