//! `createContainer`: `runtime create` with the container's stdio on pipes (or a terminal),
//! then the pumps that copy its output into its logs and attach clients, and its supervision.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::SystemTime;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Monitor;
use super::registry::Container;
use super::supervise::{self, Supervision};
use crate::error::{MonitorError, error_chain};
use crate::io_hub::ProcessIo;
use crate::logs::{self, LogSet};
use crate::metrics;
use crate::oom::OomWatch;
use crate::runtime::CreateArgs;
use crate::runtime::invocation::{Call, Pipes};
use crate::runtime::pidfile;
use crate::stdio::{self, PipeReader};
use crate::stream::Stream;
use crate::sys;
use crate::terminal::{self, ConsoleSocket};
use crate::validate;
use conmon_proto::types::{CreateContainer, LogFormat};
use conmon_telemetry::propagation;
use opentelemetry::trace::SpanContext;

impl Monitor {
    /// Creates a container through the runtime and supervises it; returns its PID.
    pub async fn create_container(
        self: &Rc<Self>,
        request: CreateContainer,
    ) -> Result<u32, MonitorError> {
        validate::container_id(&request.id)?;
        for path in request.exit_paths.iter().chain(&request.oom_exit_paths) {
            validate::exit_file_dir(path)?;
        }
        for driver in &request.log_drivers {
            if driver.format != LogFormat::Journald {
                validate::absolute("log file", &driver.path)?;
            }
        }
        let reservation = self.registry.reserve(&request.id)?;
        // Taken before anything runs: the container's now, whatever becomes of the create.
        let passed = [request.additional_fds.as_slice(), &request.leak_fds].concat();
        let mut passed_fds = self.fd_socket.take(&passed)?;
        let leaked_fds = passed_fds.split_off(request.additional_fds.len());

        // Only the journal shows the container's name.
        let journald = request
            .log_drivers
            .iter()
            .any(|d| d.format == LogFormat::Journald);
        let name = if journald {
            logs::container_name(&request.bundle).await
        } else {
            None
        };
        let logs = tracing::info_span!("log setup", drivers = request.log_drivers.len())
            .in_scope(|| LogSet::open(&request.id, name.as_deref(), &request.log_drivers))?;
        let (mut pipes, mut stdio) = Pipes::new(request.stdin)?;
        stdio.extra_fds = passed_fds;
        let console = request
            .terminal
            .then(|| self.console_socket())
            .transpose()?;
        let pidfile = request.bundle.join("pidfile");
        let args = self.runtime.create_args(&CreateArgs {
            id: &request.id,
            bundle: &request.bundle,
            pidfile: &pidfile,
            global_args: &request.global_args,
            command_args: &request.command_args,
            cgroup_manager: request.cgroup_manager,
            console_socket: console.as_ref().map(ConsoleSocket::path),
            preserve_fds: request.additional_fds.len(),
        });
        tracing::debug!(container_id = %request.id, ?args, "runtime create");
        let call = Call {
            action: "create",
            args: &args,
            env: &request.env,
            stdio,
        };
        let run = self.runtime.run(&self.reaper, call, console.as_ref()).await;
        let mut invocation = match run {
            Err(err @ MonitorError::RuntimeTimedOut { .. }) => {
                // The runtime may have created the container before it hung.
                self.delete_container(&request.id).await;
                return Err(err);
            }
            run => run?,
        };
        // The container cannot run before `runtime start`: the pipes hold the runtime's output
        // only.
        invocation.output = pipes.runtime_output();
        let invocation = invocation.success()?;
        // A successful runtime's warnings are no container output: log them instead.
        if !invocation.output.is_empty() {
            let output = String::from_utf8_lossy(&invocation.output);
            tracing::warn!(parent: &invocation.span, container_id = %request.id, output = %output.trim_end(), "runtime create wrote to the container's stdio");
        }
        let pid = match pidfile::read(&pidfile) {
            Ok(pid) => pid,
            Err(err) => {
                // The runtime created a container we cannot supervise: do not leave it behind.
                self.delete_container(&request.id).await;
                return Err(err);
            }
        };
        let exit = self.reaper.watch(pid);
        let create_span = propagation::span_context(&tracing::Span::current());
        let oom_watch = OomWatch::start(
            pid,
            supervise::report_oom(&request.id, &request.oom_exit_paths, &create_span),
        );

        let logs = Rc::new(RefCell::new(logs));
        let (pumps, io) = match invocation.terminal {
            // A terminal carries all output and input; the runtime's pipes have served.
            Some(master) => {
                let (reader, io) =
                    terminal::take_over(master, request.stdin).map_err(MonitorError::Console)?;
                let io = Rc::new(io);
                let pump = pump(
                    &request.id,
                    reader,
                    Stream::Stdout,
                    &logs,
                    &io,
                    &create_span,
                );
                (vec![pump], io)
            }
            None => {
                let io = Rc::new(ProcessIo::new(pipes.take_stdin()?, None));
                let pumps = [
                    (pipes.stdout, Stream::Stdout),
                    (pipes.stderr, Stream::Stderr),
                ]
                .map(|(reader, stream)| pump(&request.id, reader, stream, &logs, &io, &create_span))
                .into();
                (pumps, io)
            }
        };
        let (exited_tx, exited) = watch::channel(None);
        let container = Rc::new(Container::new(request.id.clone(), pid, logs, exited, io));
        reservation.fill(container.clone());
        tracing::info!(container_id = %request.id, pid, "container created");

        let supervision = Supervision {
            create_span,
            exit,
            pumps,
            oom_watch,
            exit_paths: request.exit_paths,
            oom_exit_paths: request.oom_exit_paths,
            cleanup_cmd: request.cleanup_cmd,
            exited_tx,
            leaked_fds,
        };
        let monitor = self.clone();
        crate::tasks::spawn_local(async move {
            supervise::supervise(monitor.reaper.clone(), container.clone(), supervision).await;
            monitor.registry.retire(&container);
            drop(container);
            sys::release_free_memory();
        });
        Ok(pid)
    }
}

/// Starts copying one output stream of container `id` into its logs and its I/O hub, until end
/// of file.
fn pump(
    id: &str,
    mut reader: PipeReader,
    stream: Stream,
    logs: &Rc<RefCell<LogSet>>,
    io: &Rc<ProcessIo>,
    create_span: &SpanContext,
) -> JoinHandle<()> {
    let (id, logs, io) = (id.to_owned(), logs.clone(), io.clone());
    // An outage and its end are reported in spans of their own, linked to the create.
    let (origin, container) = (create_span.clone(), id.clone());
    let report = move |name: &'static str| {
        propagation::linked_root(
            &origin,
            || tracing::info_span!(parent: None, "container log", otel.name = name, container.id = %container),
        )
    };
    crate::tasks::spawn_local(async move {
        // Bytes dropped since writing started failing; reported when it starts and ends.
        let mut dropped = 0;
        let result = stdio::read_until_eof(&mut reader, |chunk| {
            let now = SystemTime::now();
            // The pipe is drained whatever happens to the log: the container never blocks.
            metrics::log_chunk(stream, chunk);
            match logs.borrow_mut().write(stream, chunk, now) {
                Ok(()) if dropped > 0 => {
                    report("container log resumed").in_scope(|| {
                        tracing::warn!(container_id = %id, dropped, "container log writing resumed after dropping whole records");
                    });
                    dropped = 0;
                }
                Ok(()) => {}
                Err(err) => {
                    if dropped == 0 {
                        report("container log failing").in_scope(|| {
                            tracing::error!(container_id = %id, error = %error_chain(&err), "container log write failed; dropping whole records until it works again");
                        });
                    }
                    let lost = err.dropped_bytes().unwrap_or(chunk.len());
                    metrics::log_dropped(lost);
                    dropped += lost;
                }
            }
        io.broadcast(stream, chunk);
        })
        .await;
        if let Err(err) = result {
            tracing::error!(container_id = %id, ?stream, error = %err, "read container output");
        }
    })
}
