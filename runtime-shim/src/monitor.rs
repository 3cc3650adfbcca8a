//! Pod monitors: one conmond per pod, found again by its socket, spawned when missing, and
//! shut down when the pod is removed.
//!
//! [`ensure_monitor`] is idempotent and safe across processes: an exclusive lock on
//! `<run dir>/monitor.lock` makes concurrent callers for one pod wait for each other, and a
//! live monitor (one that answers `version`) is reused, never replaced.
//!
//! A new monitor is put where [`MonitorSpec::placement`] says before it is used; cgroup
//! directories made for it are listed in `<run dir>/monitor.cgroups` and removed by
//! [`release_cgroups`] once the pod is gone.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use conmon_telemetry::LogLevel;

use crate::cgroup::{self, Placement};
use crate::config::{Config, MonitorLogDriver, RuntimeHandler};
use crate::error::ShimError;
use crate::handle::MonitorHandle;
use crate::{poll, sys};

/// How long a freshly spawned monitor may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a probe of an existing socket may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a monitor may take to exit after SIGINT before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How to start a pod's monitor: the command line conmon-rs's Go client (CRI-O's client) uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSpec {
    /// The monitor binary (`monitor_path`).
    pub monitor: PathBuf,
    /// The OCI runtime (`runtime_path`).
    pub runtime: PathBuf,
    /// The runtime's `--root` (`runtime_root`).
    pub runtime_root: PathBuf,
    /// The monitor's own log level.
    pub log_level: LogLevel,
    /// The monitor's own log driver.
    pub log_driver: MonitorLogDriver,
    /// OTLP endpoint URL when tracing is on.
    pub tracing_endpoint: Option<String>,
    /// Where the monitor runs (the engine resolves it per pod).
    pub placement: Placement,
}

/// The record of cgroup directories made for a pod's monitors, in its run directory.
const CGROUP_RECORD: &str = "monitor.cgroups";

impl MonitorSpec {
    /// The spec for handler `name` under `config`, as CRI-O derives it: the log driver from
    /// `monitor_env`'s `LOG_DRIVER` (default `none`), the endpoint with an `http://` scheme.
    pub fn for_handler(name: &str, handler: &RuntimeHandler, config: &Config) -> Self {
        Self {
            monitor: handler.monitor_binary(),
            runtime: handler.runtime_binary(name),
            runtime_root: handler.runtime_root(),
            log_level: config.log_level.monitor_level(),
            log_driver: handler.monitor_log_driver,
            tracing_endpoint: config
                .tracing
                .enable_tracing
                .then(|| config.tracing.endpoint_url()),
            placement: Placement::Inherit,
        }
    }

    /// The monitor's arguments for run directory `run_dir`.
    pub fn args(&self, run_dir: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--runtime".into(),
            self.runtime.clone().into(),
            "--runtime-dir".into(),
            run_dir.into(),
            "--runtime-root".into(),
            self.runtime_root.clone().into(),
            "--log-level".into(),
            self.log_level.as_str().into(),
            "--log-driver".into(),
            self.log_driver.as_str().into(),
        ];
        if let Some(endpoint) = &self.tracing_endpoint {
            args.extend([
                "--enable-tracing".into(),
                "--tracing-endpoint".into(),
                endpoint.into(),
            ]);
        }
        args
    }
}

/// A pod's running monitor.
#[derive(Debug, Clone)]
pub struct PodMonitor {
    /// Connection to it.
    pub handle: MonitorHandle,
    /// Its PID.
    pub pid: u32,
    /// Whether this call started it (false: an existing monitor was reused).
    pub spawned: bool,
}

/// The monitor socket of a run directory.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join("conmon.sock")
}

/// Connects to the monitor of `run_dir` if one answers there.
pub async fn probe(run_dir: &Path) -> Option<(MonitorHandle, u32)> {
    let socket = socket_path(run_dir);
    if !socket.exists() {
        return None;
    }
    let attempt = async {
        let handle = MonitorHandle::connect(&socket).await.ok()?;
        let version = handle.version(false).await.ok()?;
        Some((handle, version.process_id))
    };
    tokio::time::timeout(PROBE_TIMEOUT, attempt)
        .await
        .ok()
        .flatten()
}

/// Returns the pod's live monitor, spawning it with `spec` if there is none.
///
/// # Errors
/// Spawn, lock and readiness failures; a half-started monitor is killed.
pub async fn ensure_monitor(spec: &MonitorSpec, run_dir: &Path) -> Result<PodMonitor, ShimError> {
    std::fs::create_dir_all(run_dir).map_err(ShimError::io("create run directory", run_dir))?;
    let lock_path = run_dir.join("monitor.lock");
    let lock = lock_exclusive(lock_path.clone())
        .await
        .map_err(ShimError::io("lock", &lock_path))?;
    if let Some((handle, pid)) = probe(run_dir).await {
        drop(lock);
        return Ok(PodMonitor {
            handle,
            pid,
            spawned: false,
        });
    }
    // Nothing answers: whatever socket or pidfile is there is stale.
    for stale in [socket_path(run_dir), run_dir.join("pidfile")] {
        match std::fs::remove_file(&stale) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(ShimError::io("remove stale", &stale)(err));
            }
            _ => {}
        }
    }
    let pid = spawn(spec, run_dir).await?;
    // Placed before anything uses it: runc, which it runs, starts in its cgroup.
    let ready = match place(&spec.placement, pid, run_dir).await {
        Ok(()) => wait_ready(run_dir).await,
        Err(err) => Err(err),
    };
    match ready {
        Ok(handle) => {
            drop(lock);
            Ok(PodMonitor {
                handle,
                pid,
                spawned: true,
            })
        }
        Err(err) => {
            let _ = sys::kill(pid, libc::SIGKILL);
            Err(err)
        }
    }
}

/// Opens and exclusively locks `path` (waiting for other holders) off the async threads.
async fn lock_exclusive(path: PathBuf) -> std::io::Result<std::fs::File> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(&path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Starts the monitor and waits for it to daemonize; returns the daemon's PID.
async fn spawn(spec: &MonitorSpec, run_dir: &Path) -> Result<u32, ShimError> {
    let spawn_error = |message: String| ShimError::Spawn {
        monitor: spec.monitor.clone(),
        message,
    };
    // The daemon keeps this file as stderr; it holds start-up errors (bad flags, ...).
    let stderr_path = run_dir.join("monitor.stderr");
    let stderr = std::fs::File::create(&stderr_path).map_err(|err| spawn_error(err.to_string()))?;
    let stdout = if spec.log_driver == MonitorLogDriver::Stdout {
        Stdio::from(
            stderr
                .try_clone()
                .map_err(|err| spawn_error(err.to_string()))?,
        )
    } else {
        Stdio::null()
    };
    let mut command = Command::new(&spec.monitor);
    command
        .args(spec.args(run_dir))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // Its own process group: signals aimed at the engine do not reach pod monitors.
        .process_group(0);
    let status = tokio::task::spawn_blocking(move || command.status())
        .await
        .map_err(|err| spawn_error(err.to_string()))?
        .map_err(|err| spawn_error(err.to_string()))?;
    if !status.success() {
        let output = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        return Err(spawn_error(format!("{status}: {}", output.trim())));
    }
    let pidfile = run_dir.join("pidfile");
    let content = std::fs::read_to_string(&pidfile)
        .map_err(|err| spawn_error(format!("read {}: {err}", pidfile.display())))?;
    let pid = content
        .trim()
        .parse()
        .map_err(|_| spawn_error(format!("pidfile holds {content:?}")))?;
    // Like conmon-rs's client: the pidfile is only the hand-over from the forking parent.
    let _ = std::fs::remove_file(&pidfile);
    Ok(pid)
}

/// Moves the new monitor `pid` where `placement` says.
async fn place(placement: &Placement, pid: u32, run_dir: &Path) -> Result<(), ShimError> {
    let placement = placement.clone();
    let record = run_dir.join(CGROUP_RECORD);
    on_blocking_pool("place the monitor of", run_dir, move || match placement {
        Placement::Inherit => Ok(()),
        Placement::Cgroupfs(cgroup) => {
            // A dead monitor's directories stay listed until the pod is removed.
            let mut created = cgroup::fs::load_record(&record)?;
            let moved = cgroup::fs::move_process(&cgroup, pid, &mut created);
            cgroup::fs::save_record(&record, &created)?;
            moved
        }
        Placement::Scope { bus, unit, slice } => {
            cgroup::systemd::start_scope(&cgroup::systemd::Scope {
                bus: &bus,
                unit: &unit,
                slice: &slice,
                pid,
            })
            .map_err(cgroup::CgroupError::from)
        }
    })
    .await
}

/// Removes the cgroup directories made for the pod's monitors (call after they exited);
/// systemd removes its scopes itself.
///
/// # Errors
/// A directory that cannot be removed, or an unreadable record.
pub async fn release_cgroups(run_dir: &Path) -> Result<(), ShimError> {
    let record = run_dir.join(CGROUP_RECORD);
    on_blocking_pool("remove the cgroups of", run_dir, move || {
        cgroup::fs::remove_created(&cgroup::fs::load_record(&record)?)?;
        match std::fs::remove_file(&record) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(ShimError::io("remove", &record)(err))
            }
            _ => Ok(()),
        }
    })
    .await
}

/// Runs `work` (file system work on `run_dir`'s pod, `what` in an error) off the async
/// threads.
async fn on_blocking_pool<E: Into<ShimError> + Send + 'static>(
    what: &'static str,
    run_dir: &Path,
    work: impl FnOnce() -> Result<(), E> + Send + 'static,
) -> Result<(), ShimError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ShimError::Io {
            what,
            path: run_dir.to_owned(),
            source: std::io::Error::other(err),
        })?
        .map_err(Into::into)
}

/// Polls the new monitor until it answers `version`.
async fn wait_ready(run_dir: &Path) -> Result<MonitorHandle, ShimError> {
    let socket = socket_path(run_dir);
    poll::until(READY_TIMEOUT, || async {
        let handle = MonitorHandle::connect(&socket).await.ok()?;
        handle.version(false).await.ok().map(|_| handle)
    })
    .await
    .ok_or(ShimError::Timeout {
        what: "monitor start-up",
        after: READY_TIMEOUT,
    })
}

/// Stops the pod's monitor (after the pod's containers are gone): SIGINT, up to 10 s to exit,
/// then SIGKILL. A pod without a live monitor is already done.
///
/// # Errors
/// Signalling failures, or a monitor that survives SIGKILL.
pub async fn shutdown_monitor(run_dir: &Path) -> Result<(), ShimError> {
    let Some((handle, pid)) = probe(run_dir).await else {
        return Ok(());
    };
    drop(handle);
    sys::kill(pid, libc::SIGINT).map_err(ShimError::io("signal monitor of", run_dir))?;
    if wait_gone(pid, SHUTDOWN_GRACE).await {
        return Ok(());
    }
    sys::kill(pid, libc::SIGKILL).map_err(ShimError::io("signal monitor of", run_dir))?;
    if wait_gone(pid, SHUTDOWN_GRACE).await {
        Ok(())
    } else {
        Err(ShimError::Timeout {
            what: "monitor shutdown",
            after: SHUTDOWN_GRACE * 2,
        })
    }
}

/// Waits until `pid` no longer runs (gone, or a zombie waiting for its reaper).
async fn wait_gone(pid: u32, timeout: Duration) -> bool {
    poll::until(timeout, || async { (!process_running(pid)).then_some(()) })
        .await
        .is_some()
}

/// Whether process `pid` exists and is not a zombie waiting for its reaper.
pub fn process_running(pid: u32) -> bool {
    if !matches!(sys::kill(pid, 0), Ok(true)) {
        return false;
    }
    // A zombie still answers signal 0 but no longer runs.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, CrioLogLevel, RuntimeHandler, RuntimeType};

    #[test]
    fn spec_follows_cri_o_derivation() {
        let mut config = Config::default();
        config.tracing.enable_tracing = true;
        config.log_level = CrioLogLevel::Debug;
        let handler = RuntimeHandler {
            runtime_type: RuntimeType::Pod,
            runtime_path: "/usr/sbin/runc".into(),
            runtime_root: "/run/runc".into(),
            monitor_path: "/usr/local/bin/conmond".into(),
            monitor_log_driver: MonitorLogDriver::Systemd,
            ..RuntimeHandler::default()
        };
        let spec = MonitorSpec::for_handler("runc", &handler, &config);
        let args: Vec<String> = spec
            .args(Path::new("/run/pod1"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--runtime",
                "/usr/sbin/runc",
                "--runtime-dir",
                "/run/pod1",
                "--runtime-root",
                "/run/runc",
                "--log-level",
                "debug",
                "--log-driver",
                "systemd",
                "--enable-tracing",
                "--tracing-endpoint",
                "http://127.0.0.1:4317",
            ]
        );
        assert_eq!(spec.monitor, Path::new("/usr/local/bin/conmond"));
    }

    #[test]
    fn defaults_without_monitor_env_or_tracing() {
        let mut handler = RuntimeHandler {
            runtime_type: RuntimeType::Pod,
            ..RuntimeHandler::default()
        };
        let spec = MonitorSpec::for_handler("runc", &handler, &Config::default());
        assert_eq!(
            (spec.log_driver.as_str(), spec.tracing_endpoint),
            ("none", None)
        );
        assert_eq!(spec.runtime, Path::new("runc"));
        assert_eq!(spec.monitor, Path::new("conmond"));
        handler.runtime_type = RuntimeType::Oci;
        assert_eq!(handler.monitor_binary(), Path::new("conmon"));
    }
}
