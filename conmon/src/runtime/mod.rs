//! The OCI runtime driver: renders runc command lines in one place and spawns them.
//! [`invocation`] runs them (span, exit, output, terminal), [`pidfile`] reads what they report.
//!
//! Argument order follows conmon-rs v1.0 so runtimes see what they would see under it, minus its
//! duplicated `--root`/`--systemd-cgroup` pair.

pub(crate) mod invocation;
pub(crate) mod pidfile;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use conmon_proto::types::CgroupManager;

/// The runtime binary and the options every invocation shares.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Path of the runtime binary (runc).
    pub path: PathBuf,
    /// The runtime's state directory (`--root`), if not its default.
    pub root: Option<PathBuf>,
    /// How long one runtime call (create, delete, `exec -d`) may take before its process group
    /// is killed.
    pub timeout: std::time::Duration,
    /// The runtime processes running now.
    pub(crate) calls: std::rc::Rc<invocation::Calls>,
}

impl Runtime {
    /// The runtime at `path` with its state under `root` (its default if `None`).
    pub fn new(path: PathBuf, root: Option<PathBuf>, timeout: std::time::Duration) -> Self {
        Self {
            path,
            root,
            timeout,
            calls: std::rc::Rc::default(),
        }
    }
}

/// What a `create` needs beyond the shared options.
#[derive(Debug, Clone, Copy)]
pub struct CreateArgs<'a> {
    /// Container ID.
    pub id: &'a str,
    /// OCI bundle directory.
    pub bundle: &'a Path,
    /// Where the runtime writes the container's PID.
    pub pidfile: &'a Path,
    /// Arguments placed before the `create` subcommand.
    pub global_args: &'a [String],
    /// Arguments placed after `--pid-file <file>`.
    pub command_args: &'a [String],
    /// Cgroup manager requested for this container.
    pub cgroup_manager: CgroupManager,
    /// Where the runtime sends the terminal master, for terminal containers.
    pub console_socket: Option<&'a Path>,
    /// Descriptors passed beyond stdio, for `--preserve-fds`.
    pub preserve_fds: usize,
}

impl Runtime {
    fn global_args(&self, cgroup_manager: CgroupManager) -> Vec<OsString> {
        let mut args = Vec::new();
        if let Some(root) = &self.root {
            let mut arg = OsString::from("--root=");
            arg.push(root);
            args.push(arg);
        }
        if cgroup_manager == CgroupManager::Systemd {
            args.push("--systemd-cgroup".into());
        }
        args
    }

    /// `[--root=R] [--systemd-cgroup] GLOBAL… create --bundle B --pid-file P COMMAND…
    /// [--console-socket S] ID`
    pub fn create_args(&self, create: &CreateArgs<'_>) -> Vec<OsString> {
        let mut args = self.global_args(create.cgroup_manager);
        args.extend(create.global_args.iter().map(OsString::from));
        args.extend(["create".into(), "--bundle".into(), create.bundle.into()]);
        args.extend(["--pid-file".into(), create.pidfile.into()]);
        // Unless the caller already says how many (as conmon-rs's callers must).
        let caller_preserves = create
            .command_args
            .iter()
            .any(|arg| arg.starts_with("--preserve-fds"));
        if create.preserve_fds > 0 && !caller_preserves {
            args.extend([
                "--preserve-fds".into(),
                create.preserve_fds.to_string().into(),
            ]);
        }
        args.extend(create.command_args.iter().map(OsString::from));
        if let Some(socket) = create.console_socket {
            args.extend(["--console-socket".into(), socket.into()]);
        }
        args.push(create.id.into());
        args
    }

    /// `[--root=R] [--systemd-cgroup] exec -d [--tty --console-socket S] --pid-file=P ID
    /// COMMAND…`
    pub fn exec_args(
        &self,
        id: &str,
        pidfile: &Path,
        command: &[String],
        cgroup_manager: CgroupManager,
        console_socket: Option<&Path>,
    ) -> Vec<OsString> {
        let mut args = self.global_args(cgroup_manager);
        args.extend(["exec".into(), "-d".into()]);
        if let Some(socket) = console_socket {
            args.extend(["--tty".into(), "--console-socket".into(), socket.into()]);
        }
        let mut pidfile_arg = OsString::from("--pid-file=");
        pidfile_arg.push(pidfile);
        args.push(pidfile_arg);
        args.push(id.into());
        args.extend(command.iter().map(OsString::from));
        args
    }

    /// `[--root=R] delete --force ID`
    pub fn delete_args(&self, id: &str) -> Vec<OsString> {
        // Deleting needs no cgroup driver: runc reads it from the container's state.
        let mut args = self.global_args(CgroupManager::Cgroupfs);
        args.extend(["delete".into(), "--force".into(), id.into()]);
        args
    }

    /// Spawns the runtime with `args`, the monitor's environment plus `env`, and the given
    /// stdio. Returns the runtime's PID; the caller watches it through the reaper before
    /// yielding, so its exit cannot be missed.
    pub fn spawn(
        &self,
        args: &[OsString],
        env: &BTreeMap<String, String>,
        stdio: RuntimeStdio,
    ) -> std::io::Result<u32> {
        // Its own process group: at a deadline the runtime and what it started are killed
        // together.
        let mut child = Command::new(&self.path);
        child
            .process_group(0)
            .args(args)
            .envs(env)
            .envs(conmon_telemetry::propagation::to_env())
            .stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr);
        let extra: Vec<BorrowedFd<'_>> = stdio.extra_fds.iter().map(AsFd::as_fd).collect();
        crate::sys::map_fds_at_exec(&mut child, &extra);
        let child = child.spawn()?;
        // `stdio` goes now: the passed descriptors are the child's alone.
        // The reaper, not `Child::wait`, collects the exit status.
        Ok(child.id())
    }
}

/// Standard streams for a runtime process.
#[derive(Debug)]
pub struct RuntimeStdio {
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
    /// Descriptors the runtime gets as 3, 4, …; closed here once it runs.
    pub extra_fds: Vec<OwnedFd>,
}

impl RuntimeStdio {
    /// Stdin from /dev/null and the two given pipe ends for output.
    pub fn piped_output(stdout: OwnedFd, stderr: OwnedFd) -> Self {
        Self {
            stdin: Stdio::null(),
            stdout: stdout.into(),
            stderr: stderr.into(),
            extra_fds: Vec::new(),
        }
    }

    /// All three streams on /dev/null.
    pub fn null() -> Self {
        Self {
            stdin: Stdio::null(),
            stdout: Stdio::null(),
            stderr: Stdio::null(),
            extra_fds: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<&str> {
        args.iter().map(|a| a.to_str().unwrap()).collect()
    }

    fn runc(root: Option<&str>) -> Runtime {
        Runtime {
            timeout: std::time::Duration::from_secs(240),
            calls: std::rc::Rc::default(),
            path: "/usr/sbin/runc".into(),
            root: root.map(PathBuf::from),
        }
    }

    #[test]
    fn create_args_with_cgroupfs_have_no_systemd_flag() {
        let args = runc(Some("/run/r")).create_args(&CreateArgs {
            id: "c1",
            bundle: Path::new("/b"),
            pidfile: Path::new("/b/pidfile"),
            global_args: &["--debug".into()],
            command_args: &["--no-pivot".into()],
            cgroup_manager: CgroupManager::Cgroupfs,
            preserve_fds: 0,
            console_socket: Some(Path::new("/tmp/c.sock")),
        });
        assert_eq!(
            strings(&args),
            [
                "--root=/run/r",
                "--debug",
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/b/pidfile",
                "--no-pivot",
                "--console-socket",
                "/tmp/c.sock",
                "c1"
            ]
        );
    }

    #[test]
    fn systemd_manager_adds_the_flag_once() {
        let args = runc(None).create_args(&CreateArgs {
            id: "c1",
            bundle: Path::new("/b"),
            pidfile: Path::new("/b/pidfile"),
            global_args: &[],
            command_args: &[],
            cgroup_manager: CgroupManager::Systemd,
            console_socket: None,
            preserve_fds: 0,
        });
        assert_eq!(
            strings(&args),
            [
                "--systemd-cgroup",
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/b/pidfile",
                "c1"
            ]
        );
    }

    #[test]
    fn passed_fds_are_preserved_unless_the_caller_says_so() {
        let args = |command_args: &[String]| {
            let args = runc(None).create_args(&CreateArgs {
                id: "c1",
                bundle: Path::new("/b"),
                pidfile: Path::new("/b/pidfile"),
                global_args: &[],
                command_args,
                cgroup_manager: CgroupManager::Cgroupfs,
                console_socket: None,
                preserve_fds: 2,
            });
            strings(&args).join(" ")
        };
        assert!(args(&[]).ends_with("--pid-file /b/pidfile --preserve-fds 2 c1"));
        let own = args(&["--preserve-fds=3".into()]);
        assert!(
            own.ends_with("--pid-file /b/pidfile --preserve-fds=3 c1"),
            "{own}"
        );
    }

    #[test]
    fn exec_args_detach_and_put_the_command_last() {
        let command = ["sh".to_owned(), "-c".to_owned(), "echo hi".to_owned()];
        let args = runc(Some("/r")).exec_args(
            "c1",
            Path::new("/d/e.pid"),
            &command,
            CgroupManager::Cgroupfs,
            None,
        );
        assert_eq!(
            strings(&args),
            [
                "--root=/r",
                "exec",
                "-d",
                "--pid-file=/d/e.pid",
                "c1",
                "sh",
                "-c",
                "echo hi"
            ]
        );
    }

    #[test]
    fn terminal_exec_args_ask_for_a_tty_on_the_console_socket() {
        let args = runc(None).exec_args(
            "c1",
            Path::new("/d/e.pid"),
            &["sh".to_owned()],
            CgroupManager::Cgroupfs,
            Some(Path::new("/tmp/t.sock")),
        );
        assert_eq!(
            strings(&args),
            [
                "exec",
                "-d",
                "--tty",
                "--console-socket",
                "/tmp/t.sock",
                "--pid-file=/d/e.pid",
                "c1",
                "sh"
            ]
        );
    }

    #[test]
    fn delete_is_forced() {
        assert_eq!(
            strings(&runc(Some("/r")).delete_args("c1")),
            ["--root=/r", "delete", "--force", "c1"]
        );
    }
}
