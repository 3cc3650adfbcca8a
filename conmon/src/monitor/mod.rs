//! The monitor: the runtime, the registry of supervised containers and the reaper they share.
//!
//! This file holds the requests on containers that exist (attach, resize, reopen, shutdown);
//! [`create`](self::create) creates them, [`supervise`](self::supervise) sees them through
//! their exit, and [`exec`](self::exec) runs commands in them.

mod create;
mod exec;
mod registry;
mod supervise;

use std::cell::{Cell, OnceCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;

pub(crate) use self::registry::Container;
use self::registry::Registry;
use crate::attach;
use crate::error::MonitorError;
use crate::fd_socket::FdSocket;
use crate::namespaces::PodNamespaces;
use crate::reaper::Reaper;
use crate::runtime::invocation::Call;
use crate::runtime::pidfile::ExecPidfile;
use crate::runtime::{Runtime, RuntimeStdio};
use crate::sys;
use crate::terminal::{self, ConsoleSocket};
use crate::validate;
pub use conmon_proto::types::{Attach, CreateContainer, CreateNamespaces, Namespace};
use conmon_telemetry::propagation;

/// How long shutdown waits for killed containers to be reaped and for `runtime delete`.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The runtime, the registry of supervised containers and the reaper they share.
#[derive(Debug)]
pub struct Monitor {
    runtime: Runtime,
    runtime_dir: PathBuf,
    reaper: Rc<Reaper>,
    registry: Registry,
    next_exec: Cell<u64>,
    /// Where console sockets are bound, once the first terminal was asked for.
    console_dir: OnceCell<PathBuf>,
    /// Exec-syncs running now; memory goes back to the system once they are over.
    execs: Rc<ExecCount>,
    /// Pods' pinned namespaces.
    namespaces: PodNamespaces,
    /// Descriptors handed over for containers.
    fd_socket: FdSocket,
}

/// How long exec-syncs must have been over before freed memory is returned to the system:
/// trimming the heap costs time, so it happens once per busy period and never on the path of a
/// reply.
const TRIM_AFTER: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct ExecCount {
    running: Cell<usize>,
    /// Signalled when the last running exec-sync ended.
    all_ended: Notify,
}

/// One exec-sync running.
#[derive(Debug)]
struct ExecRunning(Rc<ExecCount>);

impl ExecRunning {
    fn start(execs: &Rc<ExecCount>) -> Self {
        execs.running.set(execs.running.get() + 1);
        Self(execs.clone())
    }
}

impl Drop for ExecRunning {
    fn drop(&mut self) {
        let running = &self.0.running;
        running.set(running.get() - 1);
        if running.get() == 0 {
            self.0.all_ended.notify_one();
        }
    }
}

impl Monitor {
    /// A monitor with no containers yet.
    pub fn new(runtime: Runtime, runtime_dir: PathBuf, reaper: Rc<Reaper>) -> Self {
        Self {
            runtime,
            fd_socket: FdSocket::new(&runtime_dir),
            runtime_dir,
            namespaces: PodNamespaces::new(reaper.clone()),

            reaper,
            registry: Registry::default(),
            next_exec: Cell::new(0),
            console_dir: OnceCell::new(),
            execs: Rc::default(),
        }
    }

    /// Returns the memory a burst of exec-syncs freed to the system once the burst has been
    /// over for [`TRIM_AFTER`] (the allocator keeps freed heap memory otherwise). Runs for the
    /// monitor's life.
    pub fn release_memory_after_execs(&self) -> impl Future<Output = ()> + 'static {
        let execs = self.execs.clone();
        async move {
            loop {
                execs.all_ended.notified().await;
                tokio::time::sleep(TRIM_AFTER).await;
                if execs.running.get() == 0 {
                    sys::release_free_memory();
                }
            }
        }
    }

    /// A console socket for a runtime call that creates a terminal.
    fn console_socket(&self) -> Result<ConsoleSocket, MonitorError> {
        let dir = match self.console_dir.get() {
            Some(dir) => dir,
            None => {
                let dir =
                    terminal::console_dir(&self.runtime_dir).map_err(MonitorError::Console)?;
                self.console_dir.get_or_init(|| dir)
            }
        };
        ConsoleSocket::bind(dir).map_err(MonitorError::Console)
    }

    /// The container registered under `id`, unless it was retired after its exit.
    pub(crate) fn container(&self, id: &str) -> Result<Rc<Container>, MonitorError> {
        self.registry.get(id)
    }

    /// The container registered under `id`, if it is still running.
    pub(crate) fn running_container(&self, id: &str) -> Result<Rc<Container>, MonitorError> {
        let container = self.container(id)?;
        match container.exit_code() {
            Some(exit_code) => Err(MonitorError::ContainerExited {
                id: id.to_owned(),
                exit_code,
            }),
            None => Ok(container),
        }
    }

    /// Counts for diagnostics: running containers, and their exec sessions.
    pub fn counts(&self) -> (usize, usize) {
        self.registry.counts()
    }

    /// A fresh pidfile for a `runtime exec`.
    fn exec_pidfile(&self) -> ExecPidfile {
        let n = self.next_exec.get();
        self.next_exec.set(n + 1);
        ExecPidfile::new(self.runtime_dir.join(format!("exec-{n}.pid")))
    }

    /// Serves the stdio of container `request.id` (or of its exec session
    /// `request.exec_session_id`) on a SOCK_SEQPACKET socket at `request.socket_path` until that
    /// process's output ends (the socket is then removed).
    pub fn attach(self: &Rc<Self>, request: &Attach) -> Result<(), MonitorError> {
        validate::absolute("attach socket", &request.socket_path)?;
        let container = self.running_container(&request.id)?;
        let (io, name) = if request.exec_session_id.is_empty() {
            (container.io.clone(), request.id.clone())
        } else {
            let session = container.exec_session(&request.exec_session_id);
            let io = session.ok_or_else(|| MonitorError::UnknownExecSession {
                id: request.id.clone(),
                session: request.exec_session_id.clone(),
            })?;
            (io, format!("{}/{}", request.id, request.exec_session_id))
        };
        let path = &request.socket_path;
        let origin = propagation::span_context(&tracing::Span::current());
        attach::serve_socket(io, path, request.stop_after_stdin_eof, name, origin).map_err(
            |source| MonitorError::AttachSocket {
                path: path.clone(),
                source,
            },
        )?;
        tracing::info!(container_id = %request.id, exec_session_id = %request.exec_session_id, path = %path.display(), "attach socket ready");
        Ok(())
    }

    /// Resizes the terminal of container `id`.
    pub fn set_window_size(&self, id: &str, width: u16, height: u16) -> Result<(), MonitorError> {
        let container = self.running_container(id)?;
        match container.io.resize(width, height) {
            Ok(true) => Ok(()),
            Ok(false) => Err(MonitorError::NoTerminal(id.to_owned())),
            Err(err) => Err(MonitorError::Resize(err)),
        }
    }

    /// Reopens the log files of container `id` (log rotation).
    pub fn reopen_log(&self, id: &str) -> Result<(), MonitorError> {
        let container = self.container(id)?;
        container.logs.borrow_mut().reopen()?;
        Ok(())
    }

    /// Kills every running container, waits until their exit files are written, and deletes
    /// them from the runtime, so a stopped monitor leaves no container behind.
    pub async fn shutdown(&self) {
        // Runtime calls in flight (a create, say) finish first, or are killed.
        self.runtime.calls.finish(SHUTDOWN_WAIT).await;
        let containers = self.registry.created();
        for container in &containers {
            if container.exit_code().is_none() {
                tracing::info!(container_id = %container.id, pid = container.pid, "killing container");
                if let Err(err) = sys::kill(container.pid, libc::SIGKILL) {
                    tracing::warn!(container_id = %container.id, error = %err, "kill container");
                }
            }
        }
        for container in &containers {
            let mut exited = container.exited.clone();
            if tokio::time::timeout(SHUTDOWN_WAIT, exited.wait_for(Option::is_some))
                .await
                .is_err()
            {
                tracing::warn!(container_id = %container.id, "container not reaped in time");
            }
        }
        // Exited containers too: the runtime keeps their state until it is deleted.
        let ids = containers.iter().map(|c| c.id.clone());
        for id in ids.chain(self.registry.retired()) {
            self.delete_container(&id).await;
        }
        if let Some(dir) = self.console_dir.get() {
            // Best effort: it is empty once no runtime call is in flight.
            let _ = std::fs::remove_dir(dir);
        }
        // Last: no container of the pod is left to need them.
        self.namespaces.release_all();
        self.fd_socket.remove();
    }

    /// Starts the fd socket (`startFdSocket`); returns its path.
    ///
    /// # Errors
    /// The socket could not be bound.
    pub fn start_fd_socket(&self) -> Result<PathBuf, MonitorError> {
        self.fd_socket.start()
    }

    /// Creates and pins a pod's namespaces (`createNamespaces`).
    ///
    /// # Errors
    /// An invalid request, or a step of creating or pinning that failed.
    pub async fn create_namespaces(
        &self,
        request: CreateNamespaces,
    ) -> Result<Vec<(Namespace, PathBuf)>, MonitorError> {
        Ok(self.namespaces.create(request).await?)
    }

    /// Removes a container from the runtime (`delete --force`); failures are logged.
    async fn delete_container(&self, id: &str) {
        let args = self.runtime.delete_args(id);
        let call = Call {
            action: "delete",
            args: &args,
            env: &BTreeMap::new(),
            stdio: RuntimeStdio::null(),
        };
        let delete = self.runtime.run(&self.reaper, call, None);
        match tokio::time::timeout(SHUTDOWN_WAIT, delete).await {
            Ok(Ok(invocation)) if invocation.succeeded() => {}
            Ok(Ok(invocation)) => {
                tracing::warn!(parent: &invocation.span, container_id = %id, status = ?invocation.status, "runtime delete failed");
            }
            Ok(Err(err)) => tracing::warn!(container_id = %id, error = %err, "runtime delete"),
            Err(_) => tracing::warn!(container_id = %id, "runtime delete timed out"),
        }
    }
}
