//! The container registry and the supervision of each container: create through the runtime,
//! pump output into the log drivers, and on exit write OOM and exit files, then run the cleanup
//! command.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use tokio::net::unix::pipe;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::atomic_file;
use crate::attach;
use crate::error::MonitorError;
use crate::logs::{LogSet, Stream};
use crate::oom::OomWatch;
use crate::reaper::{ExitStatus, Reaper};
use crate::runtime::{CreateArgs, Runtime, RuntimeStdio};
use crate::stdio::{self, PipeReader};
use crate::sys;
use crate::terminal::{self, ConsoleSocket};
pub use conmon_proto::types::{Attach, CreateContainer};
use conmon_telemetry::propagation;

/// How long output pipes may stay open after the container's init exited (a process that
/// escaped the container can hold them) before exit files are written regardless.
const OUTPUT_DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How long a terminal master may trail the runtime's exit.
const CONSOLE_GRACE: Duration = Duration::from_secs(5);

/// How long shutdown waits for killed containers to be reaped and for `runtime delete`.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The runtime, the registry of supervised containers and the reaper they share.
#[derive(Debug)]
pub struct Monitor {
    pub(crate) runtime: Runtime,
    pub(crate) runtime_dir: PathBuf,
    pub(crate) reaper: Rc<Reaper>,
    containers: RefCell<HashMap<String, Slot>>,
    next_exec: Cell<u64>,
}

#[derive(Debug)]
enum Slot {
    /// `runtime create` is in progress for this ID.
    Creating,
    Created(Rc<Container>),
}

/// A container created by this monitor.
#[derive(Debug)]
pub(crate) struct Container {
    pub(crate) id: String,
    pub(crate) pid: u32,
    logs: Rc<RefCell<LogSet>>,
    /// `Some(code)` once the container exited and its exit files were written.
    exited: watch::Receiver<Option<i32>>,
    /// The container's stdio, for attach clients.
    pub(crate) io: Rc<attach::Endpoint>,
    /// Running exec sessions (streaming execs), by session ID: they can be attached to.
    exec_sessions: RefCell<HashMap<String, Rc<attach::Endpoint>>>,
}

impl Container {
    pub(crate) fn exit_code(&self) -> Option<i32> {
        *self.exited.borrow()
    }

    /// Makes an exec session's stdio attachable under `session_id` until it is removed.
    pub(crate) fn add_exec_session(&self, session_id: &str, io: Rc<attach::Endpoint>) {
        self.exec_sessions
            .borrow_mut()
            .insert(session_id.to_owned(), io);
    }

    pub(crate) fn remove_exec_session(&self, session_id: &str) {
        self.exec_sessions.borrow_mut().remove(session_id);
    }
}

/// Removes a `Creating` reservation unless the create succeeded.
struct Reservation<'a> {
    monitor: &'a Monitor,
    id: &'a str,
    done: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.monitor.containers.borrow_mut().remove(self.id);
        }
    }
}

impl Monitor {
    /// A monitor with no containers yet.
    pub fn new(runtime: Runtime, runtime_dir: PathBuf, reaper: Rc<Reaper>) -> Self {
        Self {
            runtime,
            runtime_dir,
            reaper,
            containers: RefCell::default(),
            next_exec: Cell::new(0),
        }
    }

    /// The live or exited container registered under `id`.
    pub(crate) fn container(&self, id: &str) -> Result<Rc<Container>, MonitorError> {
        match self.containers.borrow().get(id) {
            Some(Slot::Created(container)) => Ok(container.clone()),
            Some(Slot::Creating) | None => Err(MonitorError::UnknownContainer(id.to_owned())),
        }
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
        let containers = self.containers.borrow();
        let running = containers.values().filter_map(|slot| match slot {
            Slot::Created(container) if container.exit_code().is_none() => Some(container),
            _ => None,
        });
        running.fold((0, 0), |(containers, sessions), container| {
            (
                containers + 1,
                sessions + container.exec_sessions.borrow().len(),
            )
        })
    }

    /// A fresh path for an exec's runtime pidfile.
    pub(crate) fn exec_pidfile(&self) -> PathBuf {
        let n = self.next_exec.get();
        self.next_exec.set(n + 1);
        self.runtime_dir.join(format!("exec-{n}.pid"))
    }

    /// Creates a container through the runtime and supervises it; returns its PID.
    pub async fn create_container(
        self: &Rc<Self>,
        request: CreateContainer,
    ) -> Result<u32, MonitorError> {
        if request.id.is_empty() {
            return Err(MonitorError::InvalidRequest("container id is empty".into()));
        }
        if !request.additional_fds.is_empty() || !request.leak_fds.is_empty() {
            return Err(MonitorError::NotImplemented("file descriptor passing"));
        }
        self.reserve(&request.id)?;
        let mut reservation = Reservation {
            monitor: self,
            id: &request.id,
            done: false,
        };

        let logs = tracing::info_span!("log setup", drivers = request.log_drivers.len())
            .in_scope(|| LogSet::open(&request.id, &request.log_drivers))?;
        let (stdout, stdout_w) = stdio::output_pipe().map_err(MonitorError::Pipe)?;
        let (stderr, stderr_w) = stdio::output_pipe().map_err(MonitorError::Pipe)?;
        let mut runtime_stdio = RuntimeStdio::piped_output(stdout_w, stderr_w);
        let stdin = if request.stdin {
            let (read, write) = sys::pipe().map_err(MonitorError::Pipe)?;
            runtime_stdio.stdin = Stdio::from(read);
            Some(write)
        } else {
            None
        };

        let console = match request.terminal {
            true => Some(ConsoleSocket::bind().map_err(MonitorError::Console)?),
            false => None,
        };
        let pidfile = request.bundle.join("pidfile");
        let args = self.runtime.create_args(&CreateArgs {
            id: &request.id,
            bundle: &request.bundle,
            pidfile: &pidfile,
            global_args: &request.global_args,
            command_args: &request.command_args,
            cgroup_manager: request.cgroup_manager,
            console_socket: console.as_ref().map(ConsoleSocket::path),
        });
        tracing::debug!(container_id = %request.id, ?args, "runtime create");
        let (span, status, master) = self
            .run_with_console(
                "create",
                &args,
                &request.env,
                runtime_stdio,
                console.as_ref(),
            )
            .await?;
        // The container cannot run before `runtime start`: the pipes hold the runtime's output
        // only.
        let runtime_output = runtime_output(&stdout, &stderr);
        if status != ExitStatus::Exited(0) {
            return Err(runtime_error(&span, "create", status, &runtime_output));
        }
        // A successful runtime's warnings are no container output: log them instead.
        if !runtime_output.is_empty() {
            let output = String::from_utf8_lossy(&runtime_output);
            tracing::warn!(parent: &span, container_id = %request.id, output = %output.trim_end(), "runtime create wrote to the container's stdio");
        }
        let pid = match read_pidfile(&pidfile) {
            Ok(pid) => pid,
            Err(err) => {
                // The runtime created a container we cannot supervise: do not leave it behind.
                self.delete_container(&request.id).await;
                return Err(err);
            }
        };
        let exit = self.reaper.watch(pid);
        let oom_watch = OomWatch::start(pid);

        let logs = Rc::new(RefCell::new(logs));
        let (pumps, io) = match master {
            // A terminal carries all output and input; the runtime's pipes have served.
            Some(master) => {
                let (reader, io) =
                    terminal::take_over(master, request.stdin).map_err(MonitorError::Console)?;
                let io = Rc::new(io);
                let sinks = Sinks {
                    logs: logs.clone(),
                    io: io.clone(),
                };
                let pump = pump(request.id.clone(), reader, Stream::Stdout, sinks);
                (vec![tokio::task::spawn_local(pump)], io)
            }
            None => {
                let input = stdin
                    .map(pipe::Sender::from_owned_fd)
                    .transpose()
                    .map_err(MonitorError::Pipe)?;
                let io = Rc::new(attach::Endpoint::new(input, None));
                let pumps = [(stdout, Stream::Stdout), (stderr, Stream::Stderr)]
                    .map(|(reader, stream)| {
                        let sinks = Sinks {
                            logs: logs.clone(),
                            io: io.clone(),
                        };
                        tokio::task::spawn_local(pump(request.id.clone(), reader, stream, sinks))
                    })
                    .into();
                (pumps, io)
            }
        };
        let (exited_tx, exited) = watch::channel(None);
        let container = Rc::new(Container {
            id: request.id.clone(),
            pid,
            logs,
            exited,
            io,
            exec_sessions: RefCell::default(),
        });
        self.containers
            .borrow_mut()
            .insert(request.id.clone(), Slot::Created(container.clone()));
        reservation.done = true;
        tracing::info!(container_id = %request.id, pid, "container created");

        let supervision = Supervision {
            create_span: propagation::span_context(&tracing::Span::current()),
            exit,
            pumps,
            oom_watch,
            exit_paths: request.exit_paths,
            oom_exit_paths: request.oom_exit_paths,
            cleanup_cmd: request.cleanup_cmd,
            exited_tx,
        };
        tokio::task::spawn_local(supervise(self.clone(), container, supervision));
        Ok(pid)
    }

    fn reserve(&self, id: &str) -> Result<(), MonitorError> {
        let mut containers = self.containers.borrow_mut();
        match containers.get(id) {
            Some(Slot::Creating) => Err(MonitorError::ContainerExists(id.to_owned())),
            Some(Slot::Created(container)) if container.exit_code().is_none() => {
                Err(MonitorError::ContainerExists(id.to_owned()))
            }
            // An exited container's ID may be reused; the runtime decides whether that works.
            _ => {
                containers.insert(id.to_owned(), Slot::Creating);
                Ok(())
            }
        }
    }

    /// Starts `runtime <action>` in a child span of the current one (its context also goes to
    /// the runtime as `TRACEPARENT`). Returns the span, to finish with [`finish_runtime`], and
    /// the runtime's exit status.
    pub(crate) fn spawn_runtime(
        &self,
        action: &'static str,
        args: &[OsString],
        env: &BTreeMap<String, String>,
        stdio: RuntimeStdio,
    ) -> Result<(tracing::Span, oneshot::Receiver<ExitStatus>), MonitorError> {
        let span = tracing::info_span!(
            "runtime",
            otel.name = format!("runtime {action}"),
            runtime.path = %self.runtime.path.display(),
            runtime.args = ?args,
            runtime.exit_code = tracing::field::Empty,
        );
        let pid = span
            .in_scope(|| self.runtime.spawn(args, env, stdio))
            .map_err(|source| MonitorError::SpawnRuntime {
                runtime: self.runtime.path.clone(),
                source,
            })?;
        Ok((span, self.reaper.watch(pid)))
    }

    /// Runs `runtime <action>`; when given a `console`, also receives the terminal master the
    /// runtime sends there (never waiting on it past the runtime's exit plus a grace).
    pub(crate) async fn run_with_console(
        &self,
        action: &'static str,
        args: &[OsString],
        env: &BTreeMap<String, String>,
        stdio: RuntimeStdio,
        console: Option<&ConsoleSocket>,
    ) -> Result<(tracing::Span, ExitStatus, Option<std::os::fd::OwnedFd>), MonitorError> {
        let Some(console) = console else {
            let (span, status) = self.run_runtime(action, args, env, stdio).await?;
            return Ok((span, status, None));
        };
        let (span, exit) = self.spawn_runtime(action, args, env, stdio)?;
        let mut exit = std::pin::pin!(exit.instrument(span.clone()));
        let mut receive = std::pin::pin!(console.receive());
        let mut master = None;
        let status = loop {
            tokio::select! {
                fd = &mut receive, if master.is_none() => master = Some(fd.map_err(MonitorError::Console)?),
                status = &mut exit => break status.map_err(|_| MonitorError::ShuttingDown)?,
            }
        };
        finish_runtime(&span, status);
        if status == ExitStatus::Exited(0) && master.is_none() {
            // The runtime sends the master before it exits; allow for the order of our reads.
            let received = tokio::time::timeout(CONSOLE_GRACE, receive)
                .await
                .map_err(|_| {
                    MonitorError::Console(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the runtime exited without sending a terminal",
                    ))
                })?;
            master = Some(received.map_err(MonitorError::Console)?);
        }
        Ok((span, status, master))
    }

    /// Serves the stdio of container `request.id` (or of its exec session
    /// `request.exec_session_id`) on a SOCK_SEQPACKET socket at `request.socket_path` until that
    /// process's output ends (the socket is then removed).
    pub fn attach(self: &Rc<Self>, request: &Attach) -> Result<(), MonitorError> {
        let container = self.running_container(&request.id)?;
        let (io, name) = if request.exec_session_id.is_empty() {
            (container.io.clone(), request.id.clone())
        } else {
            let session = container
                .exec_sessions
                .borrow()
                .get(&request.exec_session_id)
                .cloned();
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

    /// Runs `runtime <action>` to completion in its own span and returns how it exited.
    pub(crate) async fn run_runtime(
        &self,
        action: &'static str,
        args: &[OsString],
        env: &BTreeMap<String, String>,
        stdio: RuntimeStdio,
    ) -> Result<(tracing::Span, ExitStatus), MonitorError> {
        let (span, exit) = self.spawn_runtime(action, args, env, stdio)?;
        let status = exit
            .instrument(span.clone())
            .await
            .map_err(|_| MonitorError::ShuttingDown)?;
        finish_runtime(&span, status);
        Ok((span, status))
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
        let containers: Vec<Rc<Container>> = self
            .containers
            .borrow()
            .values()
            .filter_map(|slot| match slot {
                Slot::Created(container) => Some(container.clone()),
                Slot::Creating => None,
            })
            .collect();
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
        for container in &containers {
            self.delete_container(&container.id).await;
        }
    }

    /// Removes a container from the runtime (`delete --force`); failures are logged.
    async fn delete_container(&self, id: &str) {
        let args = self.runtime.delete_args(id);
        let no_env = BTreeMap::new();
        let delete = self.run_runtime("delete", &args, &no_env, RuntimeStdio::null());
        match tokio::time::timeout(SHUTDOWN_WAIT, delete).await {
            Ok(Ok((_, ExitStatus::Exited(0)))) => {}
            Ok(Ok((span, status))) => {
                tracing::warn!(parent: &span, container_id = %id, ?status, "runtime delete failed");
            }
            Ok(Err(err)) => tracing::warn!(container_id = %id, error = %err, "runtime delete"),
            Err(_) => tracing::warn!(container_id = %id, "runtime delete timed out"),
        }
    }
}

/// What a runtime that has exited wrote to its pipes (all of it is there by then).
pub(crate) fn runtime_output(stdout: &PipeReader, stderr: &PipeReader) -> Vec<u8> {
    let mut output = stdio::read_available(stderr);
    output.extend(stdio::read_available(stdout));
    output
}

/// The error of a failed runtime, with its `output`, reported on its span.
pub(crate) fn runtime_error(
    span: &tracing::Span,
    action: &'static str,
    status: ExitStatus,
    output: &[u8],
) -> MonitorError {
    let err = MonitorError::RuntimeFailed {
        action,
        status,
        stderr: String::from_utf8_lossy(output).into_owned(),
    };
    runtime_failed(span, &err);
    err
}

/// Records the runtime's exit on its span.
pub(crate) fn finish_runtime(span: &tracing::Span, status: ExitStatus) {
    span.record("runtime.exit_code", status.code());
}

/// Reports a runtime failure, with the runtime's own error output, on its span.
pub(crate) fn runtime_failed(span: &tracing::Span, err: &MonitorError) {
    tracing::error!(parent: span, error = %err, "runtime failed");
}

/// Reads a PID written by the runtime (surrounding whitespace is tolerated).
pub(crate) fn read_pidfile(path: &Path) -> Result<u32, MonitorError> {
    let content = std::fs::read_to_string(path).map_err(|source| MonitorError::ReadPidfile {
        path: path.to_owned(),
        source,
    })?;
    content
        .trim()
        .parse()
        .map_err(|_| MonitorError::ParsePidfile {
            path: path.to_owned(),
            content,
        })
}

/// Where a container's output goes: its log drivers and its attach clients.
#[derive(Debug)]
struct Sinks {
    logs: Rc<RefCell<LogSet>>,
    io: Rc<attach::Endpoint>,
}

/// Copies one output stream of a container into its logs and attach clients until end of file.
async fn pump(id: String, reader: PipeReader, stream: Stream, sinks: Sinks) {
    let mut failing = false;
    let result = stdio::read_until_eof(&reader, |chunk| {
        let now = SystemTime::now();
        match sinks.logs.borrow_mut().write(stream, chunk, now) {
            Ok(()) => failing = false,
            // Keep draining so the container never blocks on a full pipe; report each outage once.
            Err(err) if !failing => {
                failing = true;
                tracing::error!(container_id = %id, error = %crate::error::error_chain(&err), "container log write failed");
            }
            Err(_) => {}
        }
        sinks.io.attachments.broadcast(stream, chunk);
    })
    .await;
    if let Err(err) = result {
        tracing::error!(container_id = %id, ?stream, error = %err, "read container output");
    }
}

/// What happens when a container exits.
struct Supervision {
    /// The span of the create request (not the span itself, which must end with the request);
    /// the exit span links to it.
    create_span: opentelemetry::trace::SpanContext,
    exit: oneshot::Receiver<ExitStatus>,
    pumps: Vec<JoinHandle<()>>,
    oom_watch: Option<OomWatch>,
    exit_paths: Vec<PathBuf>,
    oom_exit_paths: Vec<PathBuf>,
    cleanup_cmd: Vec<String>,
    exited_tx: watch::Sender<Option<i32>>,
}

async fn supervise(monitor: Rc<Monitor>, container: Rc<Container>, supervision: Supervision) {
    let id = &container.id;
    let Ok(status) = supervision.exit.await else {
        tracing::error!(container_id = %id, "lost track of container process");
        return;
    };
    let code = status.code();
    // The exit happens long after the create request returned: it gets its own span, linked to
    // the create span, and is traced exactly when the create was.
    let span = propagation::linked_root(&supervision.create_span, || {
        tracing::info_span!(
            parent: None,
            "container exit",
            container.id = %id,
            container.exit_code = code,
            container.oom_killed = tracing::field::Empty,
        )
    });
    let finish = async {
        tracing::info!(container_id = %id, pid = container.pid, exit_code = code, "container exited");

        // Exit files come last, so an engine that sees one can read the complete log.
        let drain = futures::future::join_all(supervision.pumps);
        if tokio::time::timeout(OUTPUT_DRAIN_GRACE, drain)
            .await
            .is_err()
        {
            tracing::warn!(container_id = %id, "output still open after exit; writing exit files anyway");
        }
        container.io.finish();
        let oom_killed = supervision
            .oom_watch
            .is_some_and(|watch| watch.oom_killed());
        tracing::Span::current().record("container.oom_killed", oom_killed);
        let _files = tracing::info_span!("write exit files").entered();
        if oom_killed {
            tracing::info!(container_id = %id, "container was OOM-killed");
            write_files(id, &supervision.oom_exit_paths, b"");
        }
        write_files(id, &supervision.exit_paths, code.to_string().as_bytes());
        drop(_files);
        if !supervision.cleanup_cmd.is_empty() {
            run_cleanup(&monitor, id, &supervision.cleanup_cmd);
        }
    };
    finish.instrument(span).await;
    supervision.exited_tx.send_replace(Some(code));
}

/// Writes `contents` atomically to every path; failures are logged with the path.
fn write_files(id: &str, paths: &[PathBuf], contents: &[u8]) {
    for path in paths {
        if let Err(err) = atomic_file::write_atomic(path, contents) {
            tracing::error!(container_id = %id, path = %path.display(), error = %err, "write exit file");
        }
    }
}

/// Starts the cleanup command without waiting for it; its outcome is logged.
fn run_cleanup(monitor: &Monitor, id: &str, cleanup_cmd: &[String]) {
    let Some((program, args)) = cleanup_cmd.split_first() else {
        return;
    };
    let _span = tracing::info_span!("cleanup command", command = ?cleanup_cmd).entered();
    let spawned = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => {
            let exit = monitor.reaper.watch(child.id());
            let id = id.to_owned();
            let program = program.clone();
            tokio::task::spawn_local(async move {
                match exit.await {
                    Ok(ExitStatus::Exited(0)) => {
                        tracing::debug!(container_id = %id, "cleanup command done")
                    }
                    Ok(status) => {
                        tracing::warn!(container_id = %id, %program, ?status, "cleanup command failed")
                    }
                    Err(_) => {}
                }
            });
        }
        Err(err) => {
            tracing::warn!(container_id = %id, %program, error = %err, "spawn cleanup command")
        }
    }
}
