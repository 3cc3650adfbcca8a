//! The command line: global options (CRI-O's configuration flags and environment) and one
//! subcommand per engine operation.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use conmon_telemetry::LogLevel;
use runtime_shim::config::Overrides;

const CONFIG_FILE: &str = "/etc/crio/crio.conf";
const CONFIG_DIR: &str = "/etc/crio/crio.conf.d";
const STATE_ROOT: &str = "/run/runtime-shim";

#[derive(Debug, Parser)]
#[command(
    name = "runtime-shim",
    version,
    about = "Run pods and containers under one conmond per pod, as CRI-O does"
)]
pub(crate) struct Args {
    /// CRI-O configuration file.
    #[arg(long, global = true, env = "CONTAINER_CONFIG", default_value = CONFIG_FILE)]
    pub(crate) config: PathBuf,
    /// Directory of configuration drop-ins (`*.conf`, applied in lexical order).
    #[arg(long, global = true, env = "CONTAINER_CONFIG_DIR", default_value = CONFIG_DIR)]
    pub(crate) config_dir: PathBuf,
    /// Where runtime-shim keeps pod and container state.
    #[arg(long, global = true, env = "RUNTIME_SHIM_ROOT", default_value = STATE_ROOT)]
    pub(crate) root: PathBuf,
    /// Runtime handler (`[crio.runtime.runtimes.NAME]`); default: `default_runtime`.
    #[arg(long, global = true, env = "CONTAINER_DEFAULT_RUNTIME")]
    pub(crate) runtime_handler: Option<String>,
    /// Export traces over OTLP.
    #[arg(long, global = true, env = "CONTAINER_ENABLE_TRACING")]
    pub(crate) enable_tracing: Option<bool>,
    /// OTLP gRPC collector, `host:port`.
    #[arg(long, global = true, env = "CONTAINER_TRACING_ENDPOINT")]
    pub(crate) tracing_endpoint: Option<String>,
    /// Share of operations without a parent that are traced, per million.
    #[arg(
        long,
        global = true,
        env = "CONTAINER_TRACING_SAMPLING_RATE_PER_MILLION"
    )]
    pub(crate) tracing_sampling_rate_per_million: Option<u32>,
    /// Log level of runtime-shim's own messages (stderr).
    #[arg(long, global = true, value_enum, default_value = "warn")]
    pub(crate) log_level: LogLevel,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    /// Fetch a trace from Jaeger's query API and draw it as a waterfall.
    Trace {
        /// The trace id (32 hex digits).
        trace_id: String,
        /// Jaeger's query API (its UI port).
        #[arg(long, env = "JAEGER_URL", default_value = runtime_shim::waterfall::jaeger::DEFAULT_URL)]
        jaeger: String,
        /// `text`: a waterfall for the terminal; `json`: the same tree for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: TraceFormat,
    },
    /// Run a pod with a busybox container under tracing and print the trace as a waterfall.
    #[cfg(feature = "demo")]
    Demo,
}

/// How `trace` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum TraceFormat {
    /// A waterfall, coloured on a terminal unless `NO_COLOR` is set.
    Text,
    /// The laid-out tree as JSON.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PodCommand {
    /// Ensure the pod's monitor runs (spawning it if needed).
    Run {
        /// The pod.
        pod: String,
        /// The pod's cgroup parent (CRI's `cgroup_parent`): an absolute cgroup path with
        /// cgroupfs, a slice with systemd. Its busybox containers go under it, and so does its
        /// monitor with `monitor_cgroup = "pod"`. Kept from the pod's first run.
        #[arg(long)]
        cgroup_parent: Option<String>,
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
    pub(crate) fn span_name(&self) -> &'static str {
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
            Self::Trace { .. } => "runtime-shim trace",
            #[cfg(feature = "demo")]
            Self::Demo => "runtime-shim demo",
        }
    }
}

impl Args {
    /// The configuration values given on the command line or in the environment.
    pub(crate) fn overrides(&self) -> Overrides {
        Overrides {
            default_runtime: self.runtime_handler.clone(),
            enable_tracing: self.enable_tracing,
            tracing_endpoint: self.tracing_endpoint.clone(),
            tracing_sampling_rate_per_million: self.tracing_sampling_rate_per_million,
        }
    }
}
