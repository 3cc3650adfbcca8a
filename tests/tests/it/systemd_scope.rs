//! `cgroup_manager = "systemd"`: the monitor's transient scope, made by a real systemd
//! (a user manager with its own D-Bus bus, in a test cgroup of the name=systemd and unified
//! hierarchies), and the errors when there is no bus or no systemd on it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, Result, ensure};
use testkit::*;

use super::WAIT;
use super::monitor_cgroup::{TestCgroup, cgroups_of, number_after};

const SYSTEMD: &str = "/lib/systemd/systemd";

/// A bus address naming a socket in `dir`.
fn bus_in(dir: &Path) -> String {
    format!("unix:path={}", dir.join("bus").display())
}

/// `systemd --user` as the manager of a test cgroup, with its bus (`dbus.socket`) in a private
/// runtime directory. systemd only runs on a host booted with it: a private mount namespace
/// gives it `/run/systemd/system`.
struct UserSystemd {
    child: Child,
    runtime_dir: tempfile::TempDir,
    cgroup: TestCgroup,
}

impl UserSystemd {
    fn start() -> Result<Self> {
        require_privileged();
        ensure!(
            Path::new(SYSTEMD).exists(),
            "{SYSTEMD} missing: apt-get install systemd"
        );
        let cgroup = TestCgroup::new("shim-systemd");
        let runtime_dir = tempfile::Builder::new().prefix("shim-systemd").tempdir()?;
        let script = format!(
            "mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system && \
             for h in systemd unified; do mkdir /sys/fs/cgroup/$h/{cg} && \
             echo $$ > /sys/fs/cgroup/$h/{cg}/cgroup.procs || exit 1; done && \
             exec {SYSTEMD} --user",
            cg = cgroup.0
        );
        let log = std::fs::File::create(runtime_dir.path().join("systemd.log"))?;
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("XDG_RUNTIME_DIR", runtime_dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("unshare (util-linux)")?;
        let systemd = Self {
            child,
            runtime_dir,
            cgroup,
        };
        // Ready once systemd answers on its bus.
        let bus = systemd.bus();
        run_local(wait_for("systemd --user on its bus", WAIT, || {
            let ping = Command::new("busctl")
                .args(["--address", &bus, "call", "org.freedesktop.systemd1"])
                .args([
                    "/org/freedesktop/systemd1",
                    "org.freedesktop.DBus.Peer",
                    "Ping",
                ])
                .output()
                .ok()?;
            ping.status.success().then_some(())
        }))
        .with_context(|| systemd.log())?;
        Ok(systemd)
    }

    fn bus(&self) -> String {
        bus_in(self.runtime_dir.path())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.runtime_dir.path().join("systemd.log")).unwrap_or_default()
    }

    /// A unit's directory in the unified hierarchy.
    fn unit_dir(&self, slice: &str, unit: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup/unified")
            .join(&self.cgroup.0)
            .join(slice)
            .join(unit)
    }
}

impl Drop for UserSystemd {
    fn drop(&mut self) {
        // SIGTERM: the manager stops its units (its bus among them) and exits.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn systemd_puts_the_monitor_in_a_transient_scope_of_the_slice() -> Result<()> {
    let systemd = UserSystemd::start()?;
    let env = ShimEnv::with_monitor_cgroup("systemd", "")?;
    let pod = unique_id("sdpod");
    let with_bus = |args: &[&str]| -> Result<String> {
        let output = env
            .command(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", systemd.bus())
            .output()?;
        ensure!(
            output.status.success(),
            "runtime-shim {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    };
    let monitor = number_after(&with_bus(&["pod", "run", &pod])?, "monitor pid ")?;
    let unit = format!("crio-conmon-{pod}.scope");
    // `monitor_cgroup = ""` is CRI-O's default slice; the manager's root is the test cgroup.
    let scope = format!("/{}/system.slice/{unit}", systemd.cgroup.0);
    let cgroups = cgroups_of(monitor)?;
    assert_eq!(cgroups["name=systemd"], scope, "{cgroups:?}");
    assert_eq!(cgroups[""], scope, "{cgroups:?}");
    let show = Command::new("busctl")
        .args([
            "--address",
            &systemd.bus(),
            "get-property",
            "org.freedesktop.systemd1",
        ])
        .arg(format!(
            "/org/freedesktop/systemd1/unit/crio_2dconmon_2d{}_2escope",
            pod.replace('-', "_2d")
        ))
        .args(["org.freedesktop.systemd1.Scope", "KillSignal"])
        .output()?;
    assert_eq!(
        String::from_utf8_lossy(&show.stdout).trim(),
        "i 13",
        "{show:?}"
    );

    with_bus(&["pod", "rm", &pod])?;
    // systemd drops the scope once its process is gone.
    let dir = systemd.unit_dir("system.slice", &unit);
    run_local(wait_for("the scope removed", WAIT, || {
        (!dir.exists()).then_some(())
    }))?;
    Ok(())
}

#[test]
fn systemd_manager_without_a_bus_or_without_systemd_says_so() -> Result<()> {
    let env = ShimEnv::with_monitor_cgroup("systemd", "")?;
    let missing = bus_in(&env.dir().join("no-such-dir"));
    let output = env
        .command(&["pod", "run", "nobus"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &missing)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(!output.status.success(), "pod run without a bus succeeded");
    assert!(
        stderr.contains("needs systemd and its D-Bus system bus") && stderr.contains(&missing),
        "{stderr}"
    );

    // A bus of its own with nothing on it (no service directories, so no activation).
    let config = env.dir().join("bus.conf");
    let bus = bus_in(env.dir());
    std::fs::write(
        &config,
        format!(
            "<busconfig><type>session</type><listen>{bus}</listen><auth>EXTERNAL</auth>\
             <policy context=\"default\"><allow send_destination=\"*\"/>\
             <allow receive_sender=\"*\"/><allow own=\"*\"/></policy></busconfig>"
        ),
    )?;
    let mut daemon = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .arg("--nofork")
        .stderr(std::fs::File::create(env.dir().join("dbus-daemon.log"))?)
        .spawn()
        .context("dbus-daemon (apt-get install dbus-daemon)")?;
    let socket = env.dir().join("bus");
    let ready = run_local(wait_for("dbus-daemon socket", WAIT, || {
        socket.exists().then_some(())
    }));
    let output = ready.and_then(|()| {
        Ok(env
            .command(&["pod", "run", "nosystemd"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus)
            .output()?)
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    let output = output?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success(),
        "pod run without systemd succeeded"
    );
    assert!(
        stderr.contains("org.freedesktop.systemd1 is not on the bus") && stderr.contains(&bus),
        "{stderr}"
    );
    // The monitor that could not be placed is gone.
    let left = processes_mentioning(&env.root().display().to_string());
    assert!(left.is_empty(), "monitors left: {left:?}");
    Ok(())
}
