//! One conmond per test, with its own directories, torn down on drop.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    CgroupManager, CreateContainer, MonitorClient, RUNC, busybox_bundle, conmond_binary,
    require_privileged, run_local, runc_list, teardown, wait_for,
};

/// Starts a monitor and runs `test` with a client of it on a `LocalSet`; the pod is torn down
/// afterwards whatever the outcome.
pub fn with_pod(test: impl AsyncFnOnce(&Pod, &MonitorClient) -> Result<()>) -> Result<()> {
    let pod = Pod::start()?;
    run_local(async {
        let client = pod.client().await?;
        test(&pod, &client).await
    })
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

    /// What each descriptor conmond holds open refers to (`/proc/<pid>/fd` links).
    pub fn fd_targets(&self) -> Result<Vec<PathBuf>> {
        let entries = std::fs::read_dir(format!("/proc/{}/fd", self.pid))?;
        Ok(entries
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .collect())
    }

    /// Anonymous memory of conmond in KiB (`RssAnon` of `/proc/<pid>/status`).
    pub fn anonymous_rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("RssAnon:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no RssAnon in /proc/<pid>/status")
    }

    /// A create request for container `id` running the shell script `script`.
    pub fn script_request(&self, id: &str, script: &str) -> Result<CreateContainer> {
        Ok(self.create_request(id, self.bundle(id, &["sh", "-c", script])?))
    }

    /// Creates the container of `request` through `client` and starts it; returns its PID.
    pub async fn start_container(
        &self,
        client: &MonitorClient,
        request: &CreateContainer,
    ) -> Result<u32> {
        let pid = client.create_container(request).await?;
        self.runc(&["start", &request.id])?;
        Ok(pid)
    }

    /// Starts container `id` running busybox's `httpd` on port 8080 of its own network
    /// namespace, serving `page` as `/index.html`; returns its PID once the server answers.
    pub async fn start_web_server(
        &self,
        client: &MonitorClient,
        id: &str,
        page: &str,
    ) -> Result<u32> {
        let bundle = self.bundle(id, &["httpd", "-f", "-p", "8080", "-h", "/www"])?;
        std::fs::create_dir_all(bundle.join("rootfs/www"))?;
        std::fs::write(bundle.join("rootfs/www/index.html"), page)?;
        let pid = self
            .start_container(client, &self.create_request(id, bundle))
            .await?;
        let probe = crate::exec_request(id, &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while client.exec_sync(&probe).await?.exit_code != 0 {
            ensure!(std::time::Instant::now() < deadline, "httpd never listened");
        }
        Ok(pid)
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

    /// What conmond has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("conmond.log")).unwrap_or_default()
    }

    /// CPU time conmond has used, in clock ticks (user plus system).
    pub fn cpu_ticks(&self) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // Fields after the command name (which may hold spaces): state is field 3, utime 14.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("malformed /proc/<pid>/stat")?
            .1
            .split_whitespace()
            .collect();
        let tick = |n: usize| -> Result<u64> {
            Ok(fields
                .get(n - 3)
                .context("short /proc/<pid>/stat")?
                .parse()?)
        };
        Ok(tick(14)? + tick(15)?)
    }

    /// Sets conmond's soft limit on open descriptors.
    pub fn set_fd_limit(&self, limit: usize) -> Result<()> {
        let status = Command::new("prlimit")
            .arg(format!("--pid={}", self.pid))
            .arg(format!("--nofile={limit}:"))
            .status()?;
        if !status.success() {
            bail!("prlimit --nofile={limit}: {status}");
        }
        Ok(())
    }

    /// Whether the daemon process still exists (and is not a zombie).
    pub fn daemon_alive(&self) -> bool {
        runtime_shim::monitor::process_running(self.pid)
    }

    /// Sends the daemon SIGTERM and waits up to `timeout` for it to exit.
    pub async fn terminate(&self, timeout: Duration) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {}: {status}", self.pid);
        }
        wait_for("conmond to exit", timeout, || {
            (!self.daemon_alive()).then_some(())
        })
        .await
    }
}

impl Drop for Pod {
    #[allow(
        clippy::print_stdout,
        reason = "libtest shows captured output of failing tests only"
    )]
    fn drop(&mut self) {
        let log = self.log_text();
        println!("--- conmond log ---\n{log}");
        teardown(self.dir.path(), &self.runc_root);
    }
}
