//! Runs one command: loads the configuration, sets up telemetry, calls the engine inside a span
//! named after the CRI method the command stands for, and prints the result.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use conmon_telemetry::{ExportSettings, LogLevel, LogOutput, Service, Telemetry, propagation};
use runtime_shim::config::Config;
use runtime_shim::cri_log;
use runtime_shim::engine::{BundleSource, Engine, Stdio};
use tracing::Instrument as _;

use crate::args::{Args, Command, PodCommand};

/// Exit code when the command line or configuration is wrong.
const EXIT_USAGE: u8 = 2;
/// Exit code of `exec` when the command timed out (like coreutils' timeout).
const EXIT_TIMED_OUT: u8 = 124;

/// How often a long-running command (`demo`, `attach`) exports its metrics; the OpenTelemetry
/// SDK's default.
const METRICS_INTERVAL: Duration = Duration::from_secs(60);

/// This binary's telemetry identity.
const SERVICE: Service = Service {
    name: "runtime-shim",
    crate_name: env!("CARGO_CRATE_NAME"),
    identifier: "runtime-shim",
};

/// Prints an error and returns the failure exit code.
#[allow(clippy::print_stderr, reason = "the CLI reports failures on stderr")]
pub(crate) fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("runtime-shim: {err:#}");
    ExitCode::FAILURE
}

/// Runs the command of `args`.
pub(crate) async fn run(args: Args) -> ExitCode {
    let (config, warnings) = match Config::load(&args.config, &args.config_dir, &args.overrides()) {
        Ok(loaded) => loaded,
        Err(err) => {
            fail(&anyhow::Error::from(err));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let telemetry = init_telemetry(&config, args.log_level);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let code = match Engine::new(config, args.root) {
        Ok(engine) => traced(&engine, args.command).await,
        Err(err) => fail(&err.into()),
    };
    telemetry.shutdown();
    code
}

/// Installs this process's telemetry as `config`'s `[crio.tracing]` asks.
pub(crate) fn init_telemetry(config: &Config, level: LogLevel) -> Telemetry {
    let settings = config.tracing.enable_tracing.then(|| ExportSettings {
        endpoint: config.tracing.endpoint_url(),
        sampling_rate_per_million: config.tracing.tracing_sampling_rate_per_million,
        max_buffered: 16_384,
        // A command's process is short-lived: its metrics go out with the final export.
        metrics_interval: Some(METRICS_INTERVAL),
    });
    conmon_telemetry::init(SERVICE, level, LogOutput::Stderr, settings.as_ref())
}

/// A span for one operation, as CRI-O makes one per CRI request: named after the CRI method,
/// with a random operation id.
pub(crate) fn operation_span(name: &'static str) -> tracing::Span {
    let id = conmon_telemetry::ids::random_hex(16).unwrap_or_else(|err| {
        tracing::warn!(error = %err, "no operation id");
        String::new()
    });
    tracing::info_span!("operation", otel.name = name, id, name)
}

/// Runs `work`, operation `name`, in its own span, timed in the operation metrics.
pub(crate) async fn operation<T, E>(
    name: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    runtime_shim::metrics::operation(name, work)
        .instrument(operation_span(name))
        .await
}

/// Runs `command` in its operation span, continuing the caller's trace from `TRACEPARENT`.
async fn traced(engine: &Engine, command: Command) -> ExitCode {
    let name = command.span_name();
    let span = operation_span(name);
    propagation::set_remote_parent(&span, &propagation::from_env());
    let work = runtime_shim::metrics::operation(name, dispatch(engine, command));
    match work.instrument(span.clone()).await {
        Ok(code) => code,
        Err(err) => {
            span.in_scope(|| tracing::error!("{err:#}"));
            fail(&err)
        }
    }
}

async fn dispatch(engine: &Engine, command: Command) -> Result<ExitCode> {
    match command {
        Command::Pod(PodCommand::Run { pod, cgroup_parent }) => {
            match engine.pod_run_in(&pod, cgroup_parent.as_deref()).await? {
                Some(monitor) => println_out(&format!("pod {pod}: monitor pid {}", monitor.pid)),
                None => println_out(&format!("pod {pod}: one conmon per container")),
            }
        }
        Command::Pod(PodCommand::Stop { pod }) => engine.pod_stop(&pod).await?,
        Command::Pod(PodCommand::Rm { pod }) => engine.pod_rm(&pod).await?,
        Command::Pod(PodCommand::Ls) => {
            println_out("POD\tMONITOR\tCONTAINERS");
            for pod in engine.pod_list().await? {
                let monitor = pod
                    .monitor_pid
                    .map_or_else(|| "not running".to_owned(), |pid| format!("pid {pid}"));
                println_out(&format!("{}\t{monitor}\t{}", pod.name, pod.containers));
            }
        }
        Command::Create {
            pod,
            id,
            bundle,
            interactive,
            tty,
            command,
        } => {
            let bundle = bundle.map_or(BundleSource::Busybox(command), BundleSource::Path);
            let stdio = Stdio { interactive, tty };
            let pid = engine.create(&pod, &id, bundle, stdio).await?;
            println_out(&format!("container {id}: pid {pid}"));
        }
        Command::Start { id } => engine.start(&id).await?,
        Command::Exec {
            id,
            timeout,
            command,
        } => {
            let timeout = (timeout > 0).then(|| Duration::from_secs(timeout));
            let result = engine.exec(&id, timeout, command).await?;
            write_out(&result.stdout, &result.stderr);
            if result.timed_out {
                return Ok(ExitCode::from(EXIT_TIMED_OUT));
            }
            return Ok(process_exit_code(result.exit_code));
        }
        Command::Attach {
            id,
            no_stdin,
            stdin_once,
        } => {
            return attach(engine, &id, !no_stdin, stdin_once).await;
        }
        Command::Logs { id, raw } => {
            let log = engine.log(&id)?;
            if raw {
                write_out(&log, b"");
            } else {
                write_out(&cri_log::reassemble(&log, None)?, b"");
            }
        }
        Command::Stop { id, timeout } => {
            let code = engine.stop(&id, Duration::from_secs(timeout)).await?;
            println_out(&format!("container {id}: exited with {code}"));
        }
        Command::Rm { id } => engine.remove(&id).await?,
        Command::Ps { pod } => {
            println_out("POD\tCONTAINER\tSTATE\tEXIT");
            for container in engine.list(pod.as_deref()).await? {
                let state = container
                    .status
                    .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
                let exit = container
                    .exit_code
                    .map_or_else(|| "-".to_owned(), |c| c.to_string());
                println_out(&format!(
                    "{}\t{}\t{state}\t{exit}",
                    container.pod, container.id
                ));
            }
        }
        Command::Trace { .. } => bail!("trace runs on its own"),
        #[cfg(feature = "demo")]
        Command::Demo => bail!("demo runs on its own"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Streams the container's output to ours and our input to it through its attach socket until
/// its output ends; exits with its exit code.
async fn attach(engine: &Engine, id: &str, stdin: bool, stdin_once: bool) -> Result<ExitCode> {
    let socket = engine.attach(id, stdin_once).await?;
    let ended = tokio::task::spawn_blocking(move || -> Result<bool> {
        if stdin {
            let input = socket.try_clone()?;
            // Detached: it may sit in a read of our stdin after the output ended.
            std::thread::spawn(move || input.copy_input(std::io::stdin().lock()));
        }
        let ended =
            socket.copy_output(&mut std::io::stdout().lock(), &mut std::io::stderr().lock())?;
        Ok(ended)
    })
    .await
    .context("attach stream")??;
    if !ended {
        bail!("the monitor closed the attach connection");
    }
    Ok(process_exit_code(engine.exit_code_after_output(id).await?))
}

#[allow(clippy::print_stdout, reason = "command output")]
pub(crate) fn println_out(line: &str) {
    println!("{line}");
}

/// Exits as the container process did (codes outside 0–255 are clamped).
fn process_exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(u8::MAX))
}

fn write_out(stdout: &[u8], stderr: &[u8]) {
    // Output that cannot be written (a closed pipe) has nowhere else to go.
    let _ = std::io::stdout().write_all(stdout);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(stderr);
}
