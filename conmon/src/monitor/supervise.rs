//! Supervision of a created container: on its exit, drain its output (for a grace period), then
//! write OOM and exit files (last, so an engine that sees one can read the complete log) and
//! run the cleanup command. The monitor then retires the container.

use std::path::PathBuf;
use std::process::Stdio;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::registry::Container;
use crate::error::error_chain;
use crate::oom::{OomOutcome, OomWatch};
use crate::reaper::{ExitStatus, Reaper};
use crate::{atomic_file, metrics};
use conmon_telemetry::propagation;

/// How long output pipes may stay open after the container's init exited (a process that
/// escaped the container can hold them) before exit files are written regardless.
const OUTPUT_DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How long writing an exit file is retried (space may be freed on a full file system).
const EXIT_FILE_RETRY: Duration = Duration::from_secs(60);

/// What happens when a container exits.
#[derive(Debug)]
pub(super) struct Supervision {
    /// The span of the create request (not the span itself, which must end with the request);
    /// the exit span links to it.
    pub(super) create_span: opentelemetry::trace::SpanContext,
    pub(super) exit: oneshot::Receiver<ExitStatus>,
    /// The tasks copying the container's output; done at end of file.
    pub(super) pumps: Vec<JoinHandle<()>>,
    pub(super) oom_watch: OomWatch,
    pub(super) exit_paths: Vec<PathBuf>,
    pub(super) oom_exit_paths: Vec<PathBuf>,
    pub(super) cleanup_cmd: Vec<String>,
    /// Announces the exit code once the exit files are written.
    pub(super) exited_tx: watch::Sender<Option<i32>>,
    /// `leakFds`: held open for the container until it has exited.
    pub(super) leaked_fds: Vec<std::os::fd::OwnedFd>,
}

/// Waits for `container` to exit and sees `supervision` through; `reaper` watches the cleanup
/// command.
pub(super) async fn supervise(
    reaper: Rc<Reaper>,
    container: Rc<Container>,
    supervision: Supervision,
) {
    let id = &container.id;
    let Ok(status) = supervision.exit.await else {
        tracing::error!(container_id = %id, "lost track of container process");
        return;
    };
    let code = status.code();
    // Held for the container's life, which is over.
    drop(supervision.leaked_fds);
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
        let pumps: Vec<_> = supervision
            .pumps
            .iter()
            .map(JoinHandle::abort_handle)
            .collect();
        let drain = futures::future::join_all(supervision.pumps);
        if tokio::time::timeout(OUTPUT_DRAIN_GRACE, drain)
            .await
            .is_err()
        {
            // A process that escaped the container holds the output open: stop reading it, so
            // the pipes and log files are released (its writes then fail with EPIPE).
            tracing::warn!(container_id = %id, "output still open after exit; writing exit files anyway");
            pumps.iter().for_each(tokio::task::AbortHandle::abort);
        }
        // The journald driver holds the start of a line until its end: the output has ended
        // (or was cut off), so what is held goes out now, before the exit files.
        if let Err(err) = container.logs.borrow_mut().finish() {
            tracing::error!(container_id = %id, error = %error_chain(&err), "container log: the last line was not written");
        }
        container.io.finish();
        let oom = supervision.oom_watch.finish().await;
        tracing::Span::current().record("container.oom_killed", oom != OomOutcome::NotKilled);
        metrics::container_exited(status, oom != OomOutcome::NotKilled);
        let files = tracing::info_span!("write exit files");
        match oom {
            OomOutcome::NotKilled => {}
            OomOutcome::Live => {
                tracing::info!(container_id = %id, oom.noticed = "while running", "oom");
            }
            OomOutcome::AtExit => {
                metrics::oom_kill();
                tracing::info!(container_id = %id, oom.noticed = "at exit", "oom");
                write_files(id, &supervision.oom_exit_paths, b"")
                    .instrument(files.clone())
                    .await;
            }
        }
        write_files(id, &supervision.exit_paths, code.to_string().as_bytes())
            .instrument(files)
            .await;
        if !supervision.cleanup_cmd.is_empty() {
            run_cleanup(&reaper, id, &supervision.cleanup_cmd);
        }
    };
    finish.instrument(span).await;
    supervision.exited_tx.send_replace(Some(code));
}

/// What to do the moment container `id` is OOM-killed: write its OOM files, in a span of its
/// own linked to the create (the exit span does not exist yet).
pub(super) fn report_oom(
    id: &str,
    oom_exit_paths: &[PathBuf],
    create_span: &opentelemetry::trace::SpanContext,
) -> impl Future<Output = ()> + 'static {
    let (id, paths, origin) = (id.to_owned(), oom_exit_paths.to_vec(), create_span.clone());
    async move {
        let span = propagation::linked_root(
            &origin,
            || tracing::info_span!(parent: None, "container oom", container.id = %id),
        );
        async {
            metrics::oom_kill();
            tracing::warn!(container_id = %id, "oom");
            write_files(&id, &paths, b"").await;
        }
        .instrument(span)
        .await;
    }
}

/// Writes `contents` atomically to every path, off the monitor's thread (a caller-given path
/// may be slow). A write that fails (a full file system, say) is retried with a growing pause
/// for up to [`EXIT_FILE_RETRY`]; each path's first failure and its final outcome are logged.
/// Returns once every file is visible; they are synced to disk afterwards, in the background.
async fn write_files(id: &str, paths: &[PathBuf], contents: &[u8]) {
    let mut written = Vec::with_capacity(paths.len());
    for path in paths {
        let give_up = tokio::time::Instant::now() + EXIT_FILE_RETRY;
        let mut pause = Duration::from_millis(100);
        let mut failures = 0;
        loop {
            let (target, bytes) = (path.clone(), contents.to_vec());
            let attempt =
                tokio::task::spawn_blocking(move || atomic_file::write_atomic(&target, &bytes))
                    .await
                    .unwrap_or_else(|join| Err(std::io::Error::other(join)));
            match attempt {
                Ok(file) => {
                    if failures > 0 {
                        tracing::warn!(container_id = %id, path = %path.display(), failures, "exit file written after retries");
                    }
                    written.push(file);
                    break;
                }
                Err(err) if tokio::time::Instant::now() + pause > give_up => {
                    tracing::error!(container_id = %id, path = %path.display(), error = %err, "exit file could not be written; giving up");
                    break;
                }
                Err(err) => {
                    if failures == 0 {
                        tracing::error!(container_id = %id, path = %path.display(), error = %err, "write exit file; retrying");
                    }
                    failures += 1;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    if written.is_empty() {
        return;
    }
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || {
        for file in written {
            let path = file.path().to_owned();
            if let Err(err) = file.sync() {
                tracing::warn!(container_id = %id, path = %path.display(), error = %err, "sync exit file");
            }
        }
    });
}

/// Starts the cleanup command without waiting for it; its outcome is logged.
fn run_cleanup(reaper: &Reaper, id: &str, cleanup_cmd: &[String]) {
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
            let exit = reaper.watch(child.id());
            let id = id.to_owned();
            let program = program.clone();
            crate::tasks::spawn_local(async move {
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
