//! Attach, window size and the streaming-server requests.

use std::path::PathBuf;

use super::{
    CgroupManager, EncodeError, path_text, read_cgroup_manager, read_strings, wire_cgroup_manager,
    write_strings,
};
use crate::conmon;

/// `attachContainer`: serve the container's stdio on a SOCK_SEQPACKET socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attach {
    /// Container ID.
    pub id: String,
    /// Where the attach socket is created.
    pub socket_path: PathBuf,
    /// Exec session to attach to, if any.
    pub exec_session_id: String,
    /// End the attach session when the client closes stdin.
    pub stop_after_stdin_eof: bool,
}

/// `setWindowSizeContainer`: resize a terminal container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowSize {
    /// Container ID.
    pub id: String,
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// `serveExecContainer`: a one-shot streaming URL for an exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeExec {
    /// Container ID.
    pub id: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Run on a terminal.
    pub tty: bool,
    /// Streams to connect.
    pub stdin: bool,
    /// Streams to connect.
    pub stdout: bool,
    /// Streams to connect.
    pub stderr: bool,
    /// Cgroup manager for the runtime.
    pub cgroup_manager: CgroupManager,
}

/// `serveAttachContainer`: a one-shot streaming URL for an attach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeAttach {
    /// Container ID.
    pub id: String,
    /// Streams to connect.
    pub stdin: bool,
    /// Streams to connect.
    pub stdout: bool,
    /// Streams to connect.
    pub stderr: bool,
}

impl Attach {
    /// Decodes a request.
    ///
    /// # Errors
    /// Malformed messages and non-UTF-8 text.
    pub fn read(r: conmon::attach_request::Reader<'_>) -> capnp::Result<Self> {
        Ok(Self {
            id: r.get_id()?.to_string()?,
            socket_path: PathBuf::from(r.get_socket_path()?.to_string()?),
            exec_session_id: r.get_exec_session_id()?.to_string()?,
            stop_after_stdin_eof: r.get_stop_after_stdin_eof(),
        })
    }

    /// Encodes the request into `r`.
    ///
    /// # Errors
    /// A socket path that is not UTF-8.
    pub fn write(&self, mut r: conmon::attach_request::Builder<'_>) -> Result<(), EncodeError> {
        r.set_id(&self.id);
        r.set_socket_path(path_text(&self.socket_path)?);
        r.set_exec_session_id(&self.exec_session_id);
        r.set_stop_after_stdin_eof(self.stop_after_stdin_eof);
        Ok(())
    }
}

impl WindowSize {
    /// Decodes a request.
    ///
    /// # Errors
    /// Malformed messages and non-UTF-8 text.
    pub fn read(r: conmon::set_window_size_request::Reader<'_>) -> capnp::Result<Self> {
        Ok(Self {
            id: r.get_id()?.to_string()?,
            width: r.get_width(),
            height: r.get_height(),
        })
    }

    /// Encodes the request into `r`.
    pub fn write(&self, mut r: conmon::set_window_size_request::Builder<'_>) {
        r.set_id(&self.id);
        r.set_width(self.width);
        r.set_height(self.height);
    }
}

impl ServeExec {
    /// Decodes a request.
    ///
    /// # Errors
    /// Malformed messages and non-UTF-8 text.
    pub fn read(r: conmon::serve_exec_container_request::Reader<'_>) -> capnp::Result<Self> {
        Ok(Self {
            id: r.get_id()?.to_string()?,
            command: read_strings(r.get_command()?)?,
            tty: r.get_tty(),
            stdin: r.get_stdin(),
            stdout: r.get_stdout(),
            stderr: r.get_stderr(),
            cgroup_manager: read_cgroup_manager(r.get_cgroup_manager())?,
        })
    }

    /// Encodes the request into `r`.
    pub fn write(&self, mut r: conmon::serve_exec_container_request::Builder<'_>) {
        r.set_id(&self.id);
        write_strings(
            |n| r.reborrow().init_command(n),
            self.command.iter().map(String::as_str),
        );
        r.set_tty(self.tty);
        r.set_stdin(self.stdin);
        r.set_stdout(self.stdout);
        r.set_stderr(self.stderr);
        r.set_cgroup_manager(wire_cgroup_manager(self.cgroup_manager));
    }
}

impl ServeAttach {
    /// Decodes a request.
    ///
    /// # Errors
    /// Malformed messages and non-UTF-8 text.
    pub fn read(r: conmon::serve_attach_container_request::Reader<'_>) -> capnp::Result<Self> {
        Ok(Self {
            id: r.get_id()?.to_string()?,
            stdin: r.get_stdin(),
            stdout: r.get_stdout(),
            stderr: r.get_stderr(),
        })
    }

    /// Encodes the request into `r`.
    pub fn write(&self, mut r: conmon::serve_attach_container_request::Builder<'_>) {
        r.set_id(&self.id);
        r.set_stdin(self.stdin);
        r.set_stdout(self.stdout);
        r.set_stderr(self.stderr);
    }
}

/// `servePortForwardContainer`: a one-shot streaming URL forwarding ports in a network
/// namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServePortForward {
    /// The network namespace to connect in.
    pub net_ns_path: PathBuf,
}

impl ServePortForward {
    /// Decodes a request.
    ///
    /// # Errors
    /// Malformed messages and non-UTF-8 text.
    pub fn read(
        r: conmon::serve_port_forward_container_request::Reader<'_>,
    ) -> capnp::Result<Self> {
        Ok(Self {
            net_ns_path: PathBuf::from(r.get_net_ns_path()?.to_string()?),
        })
    }

    /// Encodes the request into `r`.
    ///
    /// # Errors
    /// A namespace path that is not UTF-8.
    pub fn write(
        &self,
        mut r: conmon::serve_port_forward_container_request::Builder<'_>,
    ) -> Result<(), EncodeError> {
        r.set_net_ns_path(path_text(&self.net_ns_path)?);
        Ok(())
    }
}
