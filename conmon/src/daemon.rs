//! Start-up and the serving loop.
//!
//! Everything that must happen while the process is single-threaded comes first, in this order:
//! close inherited descriptors (before anything of ours is open), set the umask, bind the socket
//! (so clients can connect as soon as the pidfile exists: the kernel queues connections until
//! the daemon accepts), then fork. The parent writes the pidfile and leaves; the daemon becomes
//! child subreaper and only then starts the async runtime, on a single thread.

use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use conmon_proto::{conmon, transport};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Settings;
use crate::gate::Gate;
use crate::monitor::Monitor;
use crate::reaper::{self, Reaper};
use crate::rpc::RpcServer;
use crate::runtime::Runtime;
use crate::streaming::Streaming;
use crate::sys::{self, ForkResult};
use crate::{SERVICE, atomic_file};
use conmon_proto::socket_path::SocketPath;

/// Name of the RPC socket in the runtime directory.
pub const SOCKET_NAME: &str = "conmon.sock";
/// Name of the pidfile in the runtime directory.
pub const PIDFILE_NAME: &str = "pidfile";

/// Why the daemon could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Shedding inherited descriptors failed.
    #[error("close inherited file descriptors (re-executing /proc/self/exe)")]
    CloseFds(#[source] std::io::Error),
    /// The RPC socket could not be bound.
    #[error("bind socket '{}'", path.display())]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Forking the daemon failed.
    #[error("fork daemon")]
    Fork(#[source] std::io::Error),
    /// Becoming child subreaper failed.
    #[error("become child subreaper")]
    Subreaper(#[source] std::io::Error),
    /// The async runtime could not be built or set up.
    #[error("start async runtime")]
    Runtime(#[source] std::io::Error),
}

/// Open RPC connections at most (conmon-rs's Go client opens one per call).
const MAX_RPC_CONNECTIONS: usize = 256;

/// Set (to anything), conmond keeps inherited descriptors instead of re-executing itself to
/// close them: for running it under valgrind.
const NO_REEXEC_ENV: &str = "CONMOND_NO_REEXEC";

/// Starts the daemon and serves until SIGTERM or SIGINT. In the forking mode only the daemon
/// returns from here; the parent exits once the pidfile is written.
///
/// This is the first thing conmond's `main` does: inherited descriptors are shed before
/// anything is opened, and the process still has one thread when it forks.
pub fn start(settings: Settings) -> Result<(), DaemonError> {
    // Under valgrind the re-execution would run valgrind's tool, not conmond, and valgrind's
    // own descriptors are always there; `scripts/hot-functions` profiles conmond that way.
    if std::env::var_os(NO_REEXEC_ENV).is_none() {
        sys::shed_inherited_fds().map_err(DaemonError::CloseFds)?;
    }
    // Executed again through /proc/self/exe, the process would be called `exe` (in ps, and in
    // the journal's _COMM): it keeps the name it was started under.
    if let Some(name) = std::env::args_os().next() {
        sys::set_process_name(Path::new(&name));
    }
    sys::set_umask(0o022);
    // Best effort: the OOM killer should take containers, not their monitor.
    let oom_adjusted = std::fs::write("/proc/self/oom_score_adj", "-1000");
    let socket_path = settings.runtime_dir.join(SOCKET_NAME);
    let listener = bind(&socket_path).map_err(|source| DaemonError::Bind {
        path: socket_path.clone(),
        source,
    })?;

    if !settings.skip_fork {
        // Before any thread exists: the async runtime is built after the fork.
        match sys::fork_single_threaded().map_err(DaemonError::Fork)? {
            ForkResult::Parent(pid) => finish_parent(&settings.runtime_dir, pid),
            ForkResult::Child => {}
        }
    }
    sys::set_child_subreaper().map_err(DaemonError::Subreaper)?;
    let telemetry = conmon_telemetry::init(
        SERVICE,
        settings.log_level,
        settings.log_output(),
        settings.tracing.as_ref(),
    );
    if let Err(err) = oom_adjusted {
        tracing::warn!(error = %err, "cannot adjust OOM score");
    }
    // A panic fails its request only (see `rpc::traced`); where it happened goes to the log.
    std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panic")));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    crate::metrics::observe_process();
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, serve(settings, listener, &socket_path));
    tracing::info!("conmond stopped");
    telemetry.shutdown();
    result
}

/// Logs what the daemon holds (on SIGUSR1), to watch for leaks.
fn log_state(monitor: &Monitor, streaming: &Streaming) {
    let (containers, exec_sessions) = monitor.counts();
    let (pending_streams, active_streams) = streaming.session_counts();
    let tasks = crate::tasks::alive();
    let open_fds = crate::metrics::open_descriptors().unwrap_or(0);
    tracing::info!(
        containers,
        exec_sessions,
        pending_streams,
        active_streams,
        tasks,
        open_fds,
        "state"
    );
}

/// The parent's part of the fork: publish the daemon's PID and leave without running any
/// destructor (the daemon owns the socket now).
fn finish_parent(runtime_dir: &Path, daemon_pid: u32) -> ! {
    let pidfile = runtime_dir.join(PIDFILE_NAME);
    match atomic_file::write_atomic(&pidfile, daemon_pid.to_string().as_bytes()) {
        // Not synced: a pidfile means nothing after the machine went down.
        Ok(_) => sys::exit_immediately(0),
        Err(err) => {
            // Without a pidfile no client can find the daemon: do not leave it running.
            let _ = sys::kill(daemon_pid, libc::SIGKILL);
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("Error: write pidfile '{}': {err}\n", pidfile.display()).as_bytes(),
            );
            sys::exit_immediately(1)
        }
    }
}

async fn serve(
    settings: Settings,
    listener: StdUnixListener,
    socket_path: &Path,
) -> Result<(), DaemonError> {
    // SIGCHLD first: no child may exit unnoticed.
    let sigchld = reaper::sigchld().map_err(DaemonError::Runtime)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Runtime)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Runtime)?;
    let mut sigusr1 = signal(SignalKind::user_defined1()).map_err(DaemonError::Runtime)?;
    // A monitor outlives the session that started it: a hang-up is no reason to stop.
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Runtime)?;
    let reaper = Rc::new(Reaper::default());
    crate::tasks::spawn_local(reaper::run(reaper.clone(), sigchld));

    listener
        .set_nonblocking(true)
        .map_err(DaemonError::Runtime)?;
    let listener = UnixListener::from_std(listener).map_err(DaemonError::Runtime)?;
    let runtime = Runtime::new(
        settings.runtime,
        settings.runtime_root,
        settings.runtime_timeout,
    );
    let monitor = Rc::new(Monitor::new(runtime, settings.runtime_dir, reaper));
    crate::tasks::spawn_local(monitor.release_memory_after_execs());
    let streaming = Streaming::new(monitor.clone(), settings.streaming_url_ttl);
    let client: conmon::Client =
        capnp_rpc::new_client(RpcServer::new(monitor.clone(), streaming.clone()));
    tracing::info!(socket = %socket_path.display(), pid = std::process::id(), "conmond serving");

    let gate = Gate::new("rpc", MAX_RPC_CONNECTIONS);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Some(((stream, _), permit)) = gate.admit(accepted).await {
                    let rpc = transport::serve(stream, &client);
                    crate::tasks::spawn_local(async move {
                        if let Err(err) = rpc.await {
                            tracing::debug!(error = %err, "rpc connection ended");
                        }
                        drop(permit);
                    });
                }
            }
            _ = sigusr1.recv() => log_state(&monitor, &streaming),
            _ = sighup.recv() => tracing::info!("received SIGHUP; ignored"),
            _ = sigterm.recv() => { tracing::info!("received SIGTERM"); break; }
            _ = sigint.recv() => { tracing::info!("received SIGINT"); break; }
        }
    }
    monitor.shutdown().await;
    if let Err(err) = std::fs::remove_file(socket_path) {
        tracing::warn!(error = %err, "remove socket");
    }
    Ok(())
}

/// Binds the RPC socket at `path` (of any length), replacing a stale one.
fn bind(path: &Path) -> std::io::Result<StdUnixListener> {
    StdUnixListener::bind(SocketPath::replacing(path)?.get())
}
