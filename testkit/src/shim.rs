//! runtime-shim fixtures: a CRI-O configuration with one runtime handler and a state root,
//! driven through the library ([`ShimEnv::engine`]) or the binary ([`ShimEnv::command`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context as _, Result, ensure};
use runtime_shim::config::{Config, Overrides};
use runtime_shim::engine::Engine;

use crate::{RUNC, conmond_binary, require_privileged, runc_list, teardown};

/// The runtime-shim binary of this build.
pub fn shim_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/runtime-shim");
    assert!(
        path.exists(),
        "runtime-shim not built at {}: cargo build --workspace",
        path.display()
    );
    path
}

/// A CRI-O configuration (`crio.conf` and an empty `crio.conf.d`) with handler `runc-pod`,
/// its runc root and runtime-shim's state root, in one temporary directory; every process
/// and container started under it is removed on drop.
#[derive(Debug)]
pub struct ShimEnv {
    dir: tempfile::TempDir,
}

impl ShimEnv {
    /// A pod handler with conmond as its monitor; `tracing` is appended to the configuration
    /// (e.g. a `[crio.tracing]` table).
    pub fn new(tracing: &str) -> Result<Self> {
        Self::with_handler("pod", &conmond_binary(), tracing)
    }

    /// A handler of `runtime_type` with `monitor` as its `monitor_path`.
    pub fn with_handler(runtime_type: &str, monitor: &Path, tracing: &str) -> Result<Self> {
        Self::build(runtime_type, monitor, "cgroupfs", "", tracing)
    }

    /// A pod handler with `monitor_cgroup` under `cgroup_manager`.
    pub fn with_monitor_cgroup(cgroup_manager: &str, monitor_cgroup: &str) -> Result<Self> {
        let handler_keys = format!("monitor_cgroup = \"{monitor_cgroup}\"\n");
        Self::build("pod", &conmond_binary(), cgroup_manager, &handler_keys, "")
    }

    fn build(
        runtime_type: &str,
        monitor: &Path,
        cgroup_manager: &str,
        handler_keys: &str,
        tracing: &str,
    ) -> Result<Self> {
        require_privileged();
        let dir = tempfile::Builder::new().prefix("shim-env").tempdir()?;
        let config = format!(
            "[crio.runtime]\ndefault_runtime = \"runc-pod\"\ncgroup_manager = \"{cgroup_manager}\"\n\
             [crio.runtime.runtimes.runc-pod]\nruntime_type = \"{runtime_type}\"\nruntime_path = \"{RUNC}\"\n\
             runtime_root = \"{}\"\nmonitor_path = \"{}\"\nmonitor_env = [\"LOG_DRIVER=stdout\"]\n\
             {handler_keys}{tracing}",
            dir.path().join("runc").display(),
            monitor.display(),
        );
        std::fs::write(dir.path().join("crio.conf"), config)?;
        std::fs::create_dir(dir.path().join("crio.conf.d"))?;
        Ok(Self { dir })
    }

    /// The temporary directory holding everything.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// runtime-shim's `--root`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The handler's runc `--root`.
    pub fn runc_root(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    /// The engine on this configuration, as the binary builds it.
    pub fn engine(&self) -> Result<Engine> {
        let (config, _) = Config::load(
            &self.dir.path().join("crio.conf"),
            &self.dir.path().join("crio.conf.d"),
            &Overrides::default(),
        )?;
        Ok(Engine::new(config, self.root())?)
    }

    /// `runtime-shim ARGS` on this configuration (without an inherited `TRACEPARENT`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(shim_binary());
        command
            .arg("--config")
            .arg(self.dir.path().join("crio.conf"))
            .arg("--config-dir")
            .arg(self.dir.path().join("crio.conf.d"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env_remove("TRACEPARENT");
        command
    }

    /// Runs `runtime-shim ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        Ok(self.command(args).output()?)
    }

    /// Runs `runtime-shim ARGS` and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let output = self.run(args)?;
        ensure!(
            output.status.success(),
            "runtime-shim {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).context("runtime-shim output")
    }

    /// Containers runc still knows under the handler's root.
    pub fn runc_containers(&self) -> Result<Vec<String>> {
        runc_list(&self.runc_root())
    }
}

impl Drop for ShimEnv {
    fn drop(&mut self) {
        teardown(self.dir.path(), &self.runc_root());
    }
}
