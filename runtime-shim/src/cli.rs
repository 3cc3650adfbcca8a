//! Command-line surface and the operations behind it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use conmon_telemetry::{ExportSettings, LogLevel, LogOutput, Service, Telemetry, propagation};
use runtime_shim::attach::AttachSocket;
use runtime_shim::client::{
    Attach, CgroupManager, CreateContainer, ExecSync, LogDriver, LogFormat,
};
use runtime_shim::config::{Config, Overrides, RuntimeType};
use runtime_shim::monitor::{self, MonitorSpec, PodMonitor};
use runtime_shim::runtime::OciRuntime;
use tracing::Instrument as _;

/// Exit code when the command line or configuration is wrong.
const EXIT_USAGE: u8 = 2;
/// Exit code of `exec` when the command timed out (like coreutils' timeout).
const EXIT_TIMED_OUT: u8 = 124;

/// This binary's telemetry identity.
const SERVICE: Service = Service {
    name: "runtime-shim",
    crate_name: env!("CARGO_CRATE_NAME"),
    identifier: "runtime-shim",
};

#[derive(Debug, Parser)]
#[command(
    name = "runtime-shim",
    version,
    about = "Run pods and containers under one conmond per pod, as CRI-O does"
)]
pub(crate) struct Args {
    /// CRI-O configuration file.
    #[arg(
        long,
        global = true,
        env = "CONTAINER_CONFIG",
        default_value = "/etc/crio/crio.conf"
    )]
    pub(crate) config: PathBuf,
    /// Directory of configuration drop-ins (`*.conf`, applied in lexical order).
    #[arg(
        long,
        global = true,
        env = "CONTAINER_CONFIG_DIR",
        default_value = "/etc/crio/crio.conf.d"
    )]
    pub(crate) config_dir: PathBuf,
    /// Where runtime-shim keeps pod and container state.
    #[arg(
        long,
        global = true,
        env = "RUNTIME_SHIM_ROOT",
        default_value = "/run/runtime-shim"
    )]
    pub(crate) root: PathBuf,
    /// Runtime handler (`[crio.runtime.runtimes.NAME]`); default: `default_runtime`.
    #[arg(long, global = true, env = "CONTAINER_DEFAULT_RUNTIME")]
    runtime_handler: Option<String>,
    /// Export traces over OTLP.
    #[arg(long, global = true, env = "CONTAINER_ENABLE_TRACING")]
    enable_tracing: Option<bool>,
    /// OTLP gRPC collector, `host:port`.
    #[arg(long, global = true, env = "CONTAINER_TRACING_ENDPOINT")]
    pub(crate) tracing_endpoint: Option<String>,
    /// Share of operations without a parent that are traced, per million.
    #[arg(
        long,
        global = true,
        env = "CONTAINER_TRACING_SAMPLING_RATE_PER_MILLION"
    )]
    tracing_sampling_rate_per_million: Option<u32>,
    /// Log level of runtime-shim's own messages (stderr).
    #[arg(long, global = true, value_enum, default_value = "warn")]
    pub(crate) log_level: LogLevel,
    #[command(subcommand)]
    command: Command,
}

/// How a new container's stdio is set up.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stdio {
    interactive: bool,
    tty: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pods: one monitor each.
    #[command(subcommand)]
    Pod(PodCommand),
    /// Create a container in a pod (from an OCI bundle, or a busybox one running COMMAND).
    Create {
        /// The pod.
        pod: String,
        /// The container.
        id: String,
        /// An existing OCI bundle.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Keep the container's stdin open (for `attach`).
        #[arg(short, long)]
        interactive: bool,
        /// Run the container on a terminal (a busybox bundle gets `process.terminal`).
        #[arg(short, long)]
        tty: bool,
        /// Command of the busybox container (default: sleep forever).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Start a created container.
    Start {
        /// The container.
        id: String,
    },
    /// Run a command in a running container; exits with the command's exit code.
    Exec {
        /// The container.
        id: String,
        /// Seconds before the command is killed (0 = no limit).
        #[arg(long, default_value_t = 0)]
        timeout: u64,
        /// The command.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Attach to a container: its output from now on to stdout/stderr, stdin to its input;
    /// exits with the container's exit code once it exited.
    Attach {
        /// The container.
        id: String,
        /// Send no input.
        #[arg(long)]
        no_stdin: bool,
        /// Close the container's stdin when ours ends.
        #[arg(long)]
        stdin_once: bool,
    },
    /// Print a container's log (content only; `--raw` for the CRI lines).
    Logs {
        /// The container.
        id: String,
        /// Print the CRI log lines as stored.
        #[arg(long)]
        raw: bool,
    },
    /// Stop a container: SIGTERM, then SIGKILL after the grace period.
    Stop {
        /// The container.
        id: String,
        /// Grace period in seconds.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Remove a container (killing it if it runs).
    Rm {
        /// The container.
        id: String,
    },
    /// List containers.
    Ps {
        /// Only this pod's.
        pod: Option<String>,
    },
    /// Run a pod with a busybox container under tracing and print the trace as a tree.
    #[cfg(feature = "demo")]
    Demo,
}

#[derive(Debug, Subcommand)]
enum PodCommand {
    /// Ensure the pod's monitor runs (spawning it if needed).
    Run {
        /// The pod.
        pod: String,
    },
    /// Stop every container of the pod.
    Stop {
        /// The pod.
        pod: String,
    },
    /// Remove the pod: its containers, its monitor and its state.
    Rm {
        /// The pod.
        pod: String,
    },
    /// List pods.
    Ls,
}

impl Command {
    /// The CRI method a command stands for, as CRI-O names its spans.
    fn span_name(&self) -> &'static str {
        match self {
            Self::Pod(PodCommand::Run { .. }) => "/runtime.v1.RuntimeService/RunPodSandbox",
            Self::Pod(PodCommand::Stop { .. }) => "/runtime.v1.RuntimeService/StopPodSandbox",
            Self::Pod(PodCommand::Rm { .. }) => "/runtime.v1.RuntimeService/RemovePodSandbox",
            Self::Pod(PodCommand::Ls) => "/runtime.v1.RuntimeService/ListPodSandbox",
            Self::Create { .. } => "/runtime.v1.RuntimeService/CreateContainer",
            Self::Start { .. } => "/runtime.v1.RuntimeService/StartContainer",
            Self::Exec { .. } => "/runtime.v1.RuntimeService/ExecSync",
            Self::Attach { .. } => "/runtime.v1.RuntimeService/Attach",
            Self::Logs { .. } => "/runtime.v1.RuntimeService/ContainerStatus",
            Self::Stop { .. } => "/runtime.v1.RuntimeService/StopContainer",
            Self::Rm { .. } => "/runtime.v1.RuntimeService/RemoveContainer",
            Self::Ps { .. } => "/runtime.v1.RuntimeService/ListContainers",
            #[cfg(feature = "demo")]
            Self::Demo => "runtime-shim demo",
        }
    }
}

/// Prints an error and returns the failure exit code.
#[allow(clippy::print_stderr, reason = "the CLI reports failures on stderr")]
pub(crate) fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("runtime-shim: {err:#}");
    ExitCode::FAILURE
}

/// Everything a command needs: configuration and paths.
pub(crate) struct Shim {
    pub(crate) config: Config,
    handler_name: String,
    pub(crate) root: PathBuf,
}

pub(crate) async fn run(args: Args) -> ExitCode {
    #[cfg(feature = "demo")]
    if let Command::Demo = args.command {
        return crate::demo::run(args).await;
    }
    let overrides = Overrides {
        default_runtime: args.runtime_handler.clone(),
        enable_tracing: args.enable_tracing,
        tracing_endpoint: args.tracing_endpoint.clone(),
        tracing_sampling_rate_per_million: args.tracing_sampling_rate_per_million,
    };
    let (config, warnings) = match Config::load(&args.config, &args.config_dir, &overrides) {
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
    let shim = Shim {
        handler_name: config.default_runtime.clone(),
        config,
        root: args.root,
    };
    let code = shim.traced(args.command).await;
    telemetry.shutdown();
    code
}

pub(crate) fn init_telemetry(config: &Config, level: LogLevel) -> Telemetry {
    let settings = config.tracing.enable_tracing.then(|| ExportSettings {
        endpoint: endpoint_url(&config.tracing.tracing_endpoint),
        sampling_rate_per_million: config.tracing.tracing_sampling_rate_per_million,
        max_buffered: 16_384,
    });
    conmon_telemetry::init(SERVICE, level, LogOutput::Stderr, settings.as_ref())
}

/// CRI-O's endpoints are `host:port`; OTLP wants a URL.
pub(crate) fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

/// A random operation id (CRI-O attaches one to every request's log lines).
fn operation_id() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut urandom, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A root span for `name`, continuing the caller's trace from `TRACEPARENT` if set.
pub(crate) fn operation_span(name: &'static str) -> tracing::Span {
    let span = tracing::info_span!(
        "operation",
        otel.name = name,
        id = operation_id(),
        name = name
    );
    propagation::set_remote_parent(&span, &propagation::from_env());
    span
}

impl Shim {
    pub(crate) fn new(config: Config, root: PathBuf) -> Self {
        Self {
            handler_name: config.default_runtime.clone(),
            config,
            root,
        }
    }

    async fn traced(&self, command: Command) -> ExitCode {
        let span = operation_span(command.span_name());
        let result = self.dispatch(command).instrument(span.clone()).await;
        match result {
            Ok(code) => code,
            Err(err) => {
                span.in_scope(|| tracing::error!("{err:#}"));
                fail(&err)
            }
        }
    }

    async fn dispatch(&self, command: Command) -> Result<ExitCode> {
        match command {
            Command::Pod(PodCommand::Run { pod }) => match self.pod_run(&pod).await? {
                Some(monitor) => println_out(&format!("pod {pod}: monitor pid {}", monitor.pid)),
                None => println_out(&format!("pod {pod}: one conmon per container")),
            },
            Command::Pod(PodCommand::Stop { pod }) => self.pod_stop(&pod).await?,
            Command::Pod(PodCommand::Rm { pod }) => self.pod_rm(&pod).await?,
            Command::Pod(PodCommand::Ls) => self.pod_ls().await?,
            Command::Create {
                pod,
                id,
                bundle,
                interactive,
                tty,
                command,
            } => {
                let stdio = Stdio { interactive, tty };
                let pid = self.create(&pod, &id, bundle, stdio, &command).await?;
                println_out(&format!("container {id}: pid {pid}"));
            }
            Command::Start { id } => self.start(&id).await?,
            Command::Exec {
                id,
                timeout,
                command,
            } => return self.exec(&id, timeout, command).await,
            Command::Attach {
                id,
                no_stdin,
                stdin_once,
            } => return self.attach(&id, !no_stdin, stdin_once).await,
            Command::Logs { id, raw } => self.logs(&id, raw)?,
            Command::Stop { id, timeout } => {
                let code = self.stop(&id, Duration::from_secs(timeout)).await?;
                println_out(&format!("container {id}: exited with {code}"));
            }
            Command::Rm { id } => self.rm(&id).await?,
            Command::Ps { pod } => self.ps(pod.as_deref()).await?,
            #[cfg(feature = "demo")]
            Command::Demo => bail!("demo runs on its own"),
        }
        Ok(ExitCode::SUCCESS)
    }

    fn handler(&self) -> Result<&runtime_shim::config::RuntimeHandler> {
        let (_, handler) = self
            .config
            .handler(&self.handler_name)
            .with_context(|| format!("no runtime handler '{}'", self.handler_name))?;
        Ok(handler)
    }

    /// Whether the handler runs one monitor per pod (else one conmon per container).
    fn pod_handler(&self) -> Result<bool> {
        Ok(self.handler()?.runtime_type == RuntimeType::Pod)
    }

    fn oci_runtime(&self) -> Result<OciRuntime> {
        let handler = self.handler()?;
        Ok(OciRuntime {
            path: handler.runtime_binary(&self.handler_name),
            root: handler.runtime_root(),
            systemd_cgroup: self.cgroup_manager() == CgroupManager::Systemd,
        })
    }

    /// `[crio.runtime] cgroup_manager` as the runtime and the monitor take it.
    fn cgroup_manager(&self) -> CgroupManager {
        if self.config.cgroup_manager == "systemd" {
            CgroupManager::Systemd
        } else {
            CgroupManager::Cgroupfs
        }
    }

    fn pod_dir(&self, pod: &str) -> PathBuf {
        self.root.join("pods").join(pod)
    }

    fn run_dir(&self, pod: &str) -> PathBuf {
        self.pod_dir(pod).join("run")
    }

    fn container_dir(&self, pod: &str, id: &str) -> PathBuf {
        self.pod_dir(pod).join("containers").join(id)
    }

    fn exit_file(&self, id: &str) -> PathBuf {
        self.root.join("exits").join(id)
    }

    /// The pod a container belongs to.
    fn pod_of(&self, id: &str) -> Result<String> {
        for pod in list_dir(&self.root.join("pods"))? {
            if self.container_dir(&pod, id).exists() {
                return Ok(pod);
            }
        }
        bail!("no container '{id}' under {}", self.root.display())
    }

    pub(crate) async fn pod_run(&self, pod: &str) -> Result<Option<PodMonitor>> {
        validate_name("pod", pod)?;
        if !self.pod_handler()? {
            // Per-container monitors: a pod is just its directory.
            std::fs::create_dir_all(self.pod_dir(pod))?;
            return Ok(None);
        }
        let spec = MonitorSpec::for_handler(&self.handler_name, self.handler()?, &self.config);
        let monitor = monitor::ensure_monitor(&spec, &self.run_dir(pod)).await?;
        if monitor.spawned {
            tracing::info!(pod, pid = monitor.pid, "pod monitor started");
        } else {
            tracing::info!(pod, pid = monitor.pid, "pod monitor already running");
        }
        Ok(Some(monitor))
    }

    pub(crate) async fn create(
        &self,
        pod: &str,
        id: &str,
        bundle: Option<PathBuf>,
        stdio: Stdio,
        command: &[String],
    ) -> Result<u32> {
        validate_name("container", id)?;
        if self.pod_of(id).is_ok() {
            bail!("container '{id}' exists already");
        }
        let monitor = self.pod_run(pod).await?;
        let dir = self.container_dir(pod, id);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::create_dir_all(self.root.join("exits"))?;
        let bundle = match bundle {
            Some(bundle) => bundle,
            None => {
                let args: Vec<&str> = if command.is_empty() {
                    vec!["sleep", "infinity"]
                } else {
                    command.iter().map(String::as_str).collect()
                };
                let runtime = self.handler()?.runtime_binary(&self.handler_name);
                runtime_shim::bundle::busybox_bundle(
                    &dir.join("bundle"),
                    &runtime,
                    &args,
                    |config| {
                        if stdio.tty {
                            config["process"]["terminal"] = true.into();
                        }
                    },
                )?
            }
        };
        let log_size = u64::try_from(self.config.log_size_max).unwrap_or(0);
        let spec = CreateContainer {
            id: id.to_owned(),
            bundle: bundle.clone(),
            exit_paths: vec![self.exit_file(id), dir.join("exit")],
            oom_exit_paths: vec![bundle.join("oom")],
            log_drivers: vec![LogDriver {
                format: LogFormat::Cri,
                path: dir.join("ctr.log"),
                max_size: log_size,
            }],
            cgroup_manager: self.cgroup_manager(),
            stdin: stdio.interactive,
            terminal: stdio.tty,
            ..CreateContainer::default()
        };
        let created = match monitor {
            Some(monitor) => monitor
                .handle
                .create_container(spec)
                .await
                .map_err(anyhow::Error::from),
            None => self.create_under_conmon(id, &bundle, &dir).await,
        };
        match created {
            Ok(pid) => {
                tracing::info!(container_id = id, pid, "container created");
                Ok(pid)
            }
            Err(err) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(err)
            }
        }
    }

    /// `runtime_type = "oci"`: the container gets its own conmon (`monitor_path`).
    async fn create_under_conmon(&self, id: &str, bundle: &Path, dir: &Path) -> Result<u32> {
        let container = runtime_shim::conmon_oci::ConmonContainer {
            id,
            bundle,
            log_path: &dir.join("ctr.log"),
            exit_dir: &self.root.join("exits"),
            state_dir: dir,
        };
        let monitor = self.handler()?.monitor_binary();
        let pid =
            runtime_shim::conmon_oci::create(&monitor, &self.oci_runtime()?, &container).await?;
        tracing::info!(
            container_id = id,
            conmon_pid = pid,
            "container created under conmon"
        );
        Ok(pid)
    }

    /// Attaches through the pod monitor's attach socket (where CRI-O puts it) until the
    /// container's output ends; returns its exit code.
    async fn attach(&self, id: &str, stdin: bool, stdin_once: bool) -> Result<ExitCode> {
        let pod = self.pod_of(id)?;
        let Some(monitor) = self.pod_run(&pod).await? else {
            bail!("attach needs a pod handler (runtime_type = \"pod\")");
        };
        let socket_path = self.run_dir(&pod).join(id).join("attach");
        let spec = Attach {
            id: id.to_owned(),
            socket_path: socket_path.clone(),
            stop_after_stdin_eof: stdin_once,
            ..Attach::default()
        };
        monitor.handle.attach(spec).await?;
        let socket = AttachSocket::connect(&socket_path)
            .with_context(|| format!("connect to {}", socket_path.display()))?;
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
        .await??;
        if !ended {
            bail!("the monitor closed the attach connection");
        }
        // The exit file is written right after the output ended.
        let code =
            runtime_shim::runtime::wait_for_file(&self.exit_file(id), Duration::from_secs(10))
                .await
                .with_context(|| {
                    format!("container '{id}' output ended but it has no exit file")
                })?;
        let code: i32 = code
            .trim()
            .parse()
            .with_context(|| format!("exit file of '{id}' holds {code:?}"))?;
        Ok(process_exit_code(code))
    }

    pub(crate) async fn start(&self, id: &str) -> Result<()> {
        self.pod_of(id)?;
        self.oci_runtime()?.start(id).await?;
        tracing::info!(container_id = id, "container started");
        Ok(())
    }

    pub(crate) async fn exec(
        &self,
        id: &str,
        timeout: u64,
        command: Vec<String>,
    ) -> Result<ExitCode> {
        let pod = self.pod_of(id)?;
        let Some(monitor) = self.pod_run(&pod).await? else {
            bail!(
                "exec needs a pod handler (runtime_type = \"pod\"); this handler runs conmon per container"
            );
        };
        let spec = ExecSync {
            id: id.to_owned(),
            command,
            timeout: (timeout > 0).then(|| Duration::from_secs(timeout)),
            cgroup_manager: self.cgroup_manager(),
            ..ExecSync::default()
        };
        let result = monitor.handle.exec_sync(spec).await?;
        write_out(&result.stdout, &result.stderr);
        if result.timed_out {
            tracing::warn!(container_id = id, "command timed out");
            return Ok(ExitCode::from(EXIT_TIMED_OUT));
        }
        tracing::info!(
            container_id = id,
            exit_code = result.exit_code,
            "exec finished"
        );
        Ok(process_exit_code(result.exit_code))
    }

    fn logs(&self, id: &str, raw: bool) -> Result<()> {
        let pod = self.pod_of(id)?;
        let path = self.container_dir(&pod, id).join("ctr.log");
        let log = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        if raw {
            write_out(&log, b"");
            return Ok(());
        }
        let mut out = Vec::new();
        for line in log.split_inclusive(|&b| b == b'\n') {
            let mut fields = line.splitn(4, |&b| b == b' ');
            let (Some(_), Some(_), Some(tag), Some(content)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let content = if tag == b"P" {
                content.strip_suffix(b"\n").unwrap_or(content)
            } else {
                content
            };
            out.extend_from_slice(content);
        }
        write_out(&out, b"");
        Ok(())
    }

    pub(crate) async fn stop(&self, id: &str, grace: Duration) -> Result<String> {
        self.pod_of(id)?;
        let runtime = self.oci_runtime()?;
        let code = if runtime.state(id).await?.as_deref() == Some("created") {
            // Never started: nothing to signal gracefully.
            runtime.kill(id, "KILL").await?;
            runtime
                .stop(id, &self.exit_file(id), Duration::ZERO)
                .await?
        } else {
            runtime.stop(id, &self.exit_file(id), grace).await?
        };
        tracing::info!(container_id = id, exit_code = %code, "container stopped");
        Ok(code)
    }

    pub(crate) async fn rm(&self, id: &str) -> Result<()> {
        let pod = self.pod_of(id)?;
        self.oci_runtime()?.delete(id).await?;
        let _ = std::fs::remove_file(self.exit_file(id));
        std::fs::remove_dir_all(self.container_dir(&pod, id))?;
        tracing::info!(container_id = id, "container removed");
        Ok(())
    }

    async fn ps(&self, pod: Option<&str>) -> Result<()> {
        let runtime = self.oci_runtime()?;
        let pods = match pod {
            Some(pod) => vec![pod.to_owned()],
            None => list_dir(&self.root.join("pods"))?,
        };
        println_out("POD\tCONTAINER\tSTATE\tEXIT");
        for pod in pods {
            for id in list_dir(&self.pod_dir(&pod).join("containers"))? {
                let state = runtime
                    .state(&id)
                    .await?
                    .unwrap_or_else(|| "unknown".into());
                let exit =
                    std::fs::read_to_string(self.exit_file(&id)).unwrap_or_else(|_| "-".into());
                println_out(&format!("{pod}\t{id}\t{state}\t{exit}"));
            }
        }
        Ok(())
    }

    pub(crate) async fn pod_stop(&self, pod: &str) -> Result<()> {
        for id in list_dir(&self.pod_dir(pod).join("containers"))? {
            self.stop(&id, Duration::from_secs(10)).await?;
        }
        Ok(())
    }

    pub(crate) async fn pod_rm(&self, pod: &str) -> Result<()> {
        for id in list_dir(&self.pod_dir(pod).join("containers"))? {
            self.rm(&id).await?;
        }
        // Only now: a monitor kills whatever it still supervises when signalled.
        monitor::shutdown_monitor(&self.run_dir(pod)).await?;
        let dir = self.pod_dir(pod);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
        }
        tracing::info!(pod, "pod removed");
        Ok(())
    }

    async fn pod_ls(&self) -> Result<()> {
        println_out("POD\tMONITOR\tCONTAINERS");
        for pod in list_dir(&self.root.join("pods"))? {
            let monitor = match monitor::probe(&self.run_dir(&pod)).await {
                Some((_, pid)) => format!("pid {pid}"),
                None => "not running".into(),
            };
            let containers = list_dir(&self.pod_dir(&pod).join("containers"))?.len();
            println_out(&format!("{pod}\t{monitor}\t{containers}"));
        }
        Ok(())
    }
}

/// Names become directory names: keep them plain.
fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if !ok {
        bail!("invalid {what} name '{name}': use letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("list {}", dir.display())),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
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
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(stdout);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(stderr);
}
