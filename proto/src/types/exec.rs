//! `execSyncContainer` and its result.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    CgroupManager, count, read_cgroup_manager, read_strings, wire_cgroup_manager, write_strings,
};
use crate::conmon;
use crate::map;
/// `execSyncContainer`: run a command in a running container and return its output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSync {
    /// Container ID.
    pub id: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Deadline for the whole exec; `None` waits indefinitely. Sent in whole seconds.
    pub timeout: Option<Duration>,
    /// Whether the command runs on a terminal.
    pub terminal: bool,
    /// Environment added to the runtime's.
    pub env: BTreeMap<String, String>,
    /// Cgroup manager for the runtime.
    pub cgroup_manager: CgroupManager,
}

/// What an exec produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSyncResult {
    /// The command's exit code (128+N after signal N; -3 when killed at the deadline).
    pub exit_code: i32,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// Whether the deadline was reached.
    pub timed_out: bool,
}

impl ExecSync {
    /// Decodes a request.
    ///
    /// # Errors
    /// Malformed messages, non-UTF-8 text and unknown enum values.
    pub fn read(r: conmon::exec_sync_container_request::Reader<'_>) -> capnp::Result<Self> {
        let timeout_sec = r.get_timeout_sec();
        Ok(Self {
            id: r.get_id()?.to_string()?,
            command: read_strings(r.get_command()?)?,
            timeout: (timeout_sec > 0).then(|| Duration::from_secs(timeout_sec)),
            terminal: r.get_terminal(),
            env: map::read(r.get_env_vars()?)?,
            cgroup_manager: read_cgroup_manager(r.get_cgroup_manager())?,
        })
    }

    /// Encodes the request into `r`; a timeout is rounded up to whole seconds.
    pub fn write(&self, mut r: conmon::exec_sync_container_request::Builder<'_>) {
        r.set_id(&self.id);
        let timeout_sec = self.timeout.map_or(0, |t| {
            t.as_secs().saturating_add(u64::from(t.subsec_nanos() > 0))
        });
        r.set_timeout_sec(timeout_sec);
        write_strings(
            |n| r.reborrow().init_command(n),
            self.command.iter().map(String::as_str),
        );
        r.set_terminal(self.terminal);
        map::write(
            r.reborrow().init_env_vars(count(self.env.len())),
            self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        r.set_cgroup_manager(wire_cgroup_manager(self.cgroup_manager));
    }
}

impl ExecSyncResult {
    /// Decodes a response.
    ///
    /// # Errors
    /// Malformed messages.
    pub fn read(r: conmon::exec_sync_container_response::Reader<'_>) -> capnp::Result<Self> {
        Ok(Self {
            exit_code: r.get_exit_code(),
            stdout: r.get_stdout()?.to_vec(),
            stderr: r.get_stderr()?.to_vec(),
            timed_out: r.get_timed_out(),
        })
    }

    /// Encodes the response into `r`.
    pub fn write(&self, mut r: conmon::exec_sync_container_response::Builder<'_>) {
        r.set_exit_code(self.exit_code);
        r.set_stdout(&self.stdout);
        r.set_stderr(&self.stderr);
        r.set_timed_out(self.timed_out);
    }
}
