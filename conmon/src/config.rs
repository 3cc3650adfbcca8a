//! conmond's command line; every flag can also be set through a `CONMON_*` environment variable,
//! as conmon-rs's clients expect.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

pub use conmon_telemetry::LogLevel;
use conmon_telemetry::{ExportSettings, LogOutput};

/// How much `--version`/`--version-json` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VersionVerbosity {
    /// Build information.
    Default,
    /// Build information and the dependency tree.
    Full,
}

/// Where conmond's own log messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogDriver {
    /// Nowhere.
    None,
    /// Standard output.
    Stdout,
    /// The systemd journal; where journald does not run, `conmond.log` in the runtime dir
    /// (rotated at 1 MiB to `conmond.log.1`).
    Systemd,
}

/// Command line of conmond.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "conmond",
    about = "A per-pod container monitor",
    disable_version_flag = true
)]
pub struct Config {
    /// Print build information and exit.
    #[arg(short = 'v', long, env = "CONMON_VERSION", num_args = 0..=1, default_missing_value = "default", value_enum)]
    pub version: Option<VersionVerbosity>,

    /// Print build information as one JSON line and exit.
    #[arg(short = 'j', long, visible_alias = "vj", env = "CONMON_VERSION_JSON", num_args = 0..=1, default_missing_value = "default", value_enum)]
    pub version_json: Option<VersionVerbosity>,

    /// Minimum level of conmond's own log messages.
    #[arg(
        short = 'l',
        long,
        env = "CONMON_LOG_LEVEL",
        value_enum,
        default_value = "info"
    )]
    pub log_level: LogLevel,

    /// Where conmond's own log messages go.
    #[arg(
        short = 'd',
        long,
        env = "CONMON_LOG_DRIVER",
        value_enum,
        default_value = "systemd"
    )]
    pub log_driver: LogDriver,

    /// Path of the OCI runtime binary (runc).
    #[arg(short = 'r', long, env = "CONMON_RUNTIME", value_name = "PATH")]
    pub runtime: Option<PathBuf>,

    /// Directory for conmond's socket and pidfile; created if missing.
    #[arg(long, env = "CONMON_RUNTIME_DIR", value_name = "PATH")]
    pub runtime_dir: Option<PathBuf>,

    /// State directory passed to the runtime as `--root`.
    #[arg(long, env = "CONMON_RUNTIME_ROOT", value_name = "PATH")]
    pub runtime_root: Option<PathBuf>,

    /// Stay in the foreground and write no pidfile.
    #[arg(long, env = "CONMON_SKIP_FORK")]
    pub skip_fork: bool,

    /// Export spans and logs over OTLP.
    #[arg(short = 'e', long, env = "CONMON_ENABLE_TRACING")]
    pub enable_tracing: bool,

    /// OTLP gRPC endpoint for `--enable-tracing`.
    #[arg(
        short = 't',
        long,
        env = "CONMON_TRACING_ENDPOINT",
        value_name = "URL",
        default_value = "http://127.0.0.1:4317"
    )]
    pub tracing_endpoint: String,

    /// Share of requests without a trace parent that are traced, per million; requests
    /// carrying a parent follow the parent's sampling decision.
    #[arg(long, env = "CONMON_TRACING_SAMPLING_RATE_PER_MILLION", value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub tracing_sampling_rate_per_million: u32,

    /// Spans (and as many log records) kept while the collector is unreachable; beyond that
    /// the oldest are dropped.
    #[arg(long, env = "CONMON_TRACING_MAX_BUFFERED", value_name = "N", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..))]
    pub tracing_max_buffered: u32,

    /// Export no metrics with `--enable-tracing` (they are on by default, to the same endpoint).
    #[arg(long, env = "CONMON_DISABLE_METRICS")]
    pub disable_metrics: bool,

    /// How often metrics are exported, in milliseconds (the OpenTelemetry SDK's default is a
    /// minute); a final export happens at shutdown.
    #[arg(long, env = "CONMON_METRICS_INTERVAL_MS", value_name = "MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    pub metrics_interval_ms: u64,

    /// How long a streaming URL (exec, attach, port-forward) may wait to be opened, in
    /// milliseconds (at most one day).
    #[arg(long, env = "CONMON_STREAMING_URL_TTL_MS", value_name = "MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub streaming_url_ttl_ms: u64,

    /// How long one runtime call (create, delete, `exec -d`) may take, in seconds, before the
    /// runtime and what it started are killed; a timed-out create is also deleted and its ID
    /// released. CRI-O's default create timeout is 240 s.
    #[arg(long, env = "CONMON_RUNTIME_TIMEOUT", value_name = "SECS", default_value_t = 240, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub runtime_timeout: u64,

    /// Accepted for conmon-rs v0.x clients and ignored: the cgroup manager comes with each request.
    #[arg(short = 'c', long, hide = true, value_name = "MANAGER")]
    pub cgroup_manager: Option<String>,
}

/// A configuration that cannot work; each names the flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required flag is missing.
    #[error("{0} flag not set")]
    Missing(&'static str),
    /// The runtime binary does not exist.
    #[error("--runtime '{}' does not exist", .0.display())]
    RuntimeMissing(PathBuf),
    /// A directory could not be created.
    #[error("{flag} '{}' cannot be created", path.display())]
    CreateDir {
        /// The flag naming it.
        flag: &'static str,
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A path that must be a directory is something else.
    #[error("{flag} '{}' is not a directory", path.display())]
    NotADirectory {
        /// The flag naming it.
        flag: &'static str,
        /// The path.
        path: PathBuf,
    },
}

/// The settings the daemon runs with, after validation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Runtime binary.
    pub runtime: PathBuf,
    /// Directory of the socket and pidfile.
    pub runtime_dir: PathBuf,
    /// Runtime state directory.
    pub runtime_root: Option<PathBuf>,
    /// Own log level.
    pub log_level: LogLevel,
    /// Own log destination.
    pub log_driver: LogDriver,
    /// Whether to stay in the foreground.
    pub skip_fork: bool,
    /// OTLP export, when enabled.
    pub tracing: Option<ExportSettings>,
    /// How long a streaming URL stays valid.
    pub streaming_url_ttl: std::time::Duration,
    /// Deadline of one runtime call.
    pub runtime_timeout: std::time::Duration,
}

/// conmond's own log file where journald does not run, in its runtime dir.
pub const FALLBACK_LOG_NAME: &str = "conmond.log";

impl Settings {
    /// Where conmond's own log lines go.
    pub fn log_output(&self) -> LogOutput {
        match self.log_driver {
            LogDriver::None => LogOutput::None,
            LogDriver::Stdout => LogOutput::Stdout,
            LogDriver::Systemd => LogOutput::Journald {
                fallback: Some(self.runtime_dir.join(FALLBACK_LOG_NAME)),
            },
        }
    }
}

impl Config {
    /// Checks the flags and creates the directories they name.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let runtime = non_empty(self.runtime.as_ref()).ok_or(ConfigError::Missing("--runtime"))?;
        let runtime_dir =
            non_empty(self.runtime_dir.as_ref()).ok_or(ConfigError::Missing("--runtime-dir"))?;
        if !runtime.exists() {
            return Err(ConfigError::RuntimeMissing(runtime));
        }
        ensure_dir("--runtime-dir", &runtime_dir)?;
        let runtime_root = non_empty(self.runtime_root.as_ref());
        if let Some(root) = &runtime_root {
            ensure_dir("--runtime-root", root)?;
        }
        Ok(Settings {
            runtime,
            runtime_dir,
            runtime_root,
            log_level: self.log_level,
            log_driver: self.log_driver,
            skip_fork: self.skip_fork,
            tracing: self.enable_tracing.then(|| ExportSettings {
                endpoint: self.tracing_endpoint.clone(),
                sampling_rate_per_million: self.tracing_sampling_rate_per_million,
                max_buffered: self.tracing_max_buffered as usize,
                metrics_interval: (!self.disable_metrics)
                    .then(|| std::time::Duration::from_millis(self.metrics_interval_ms)),
            }),
            streaming_url_ttl: std::time::Duration::from_millis(self.streaming_url_ttl_ms),
            runtime_timeout: std::time::Duration::from_secs(self.runtime_timeout),
        })
    }
}

fn non_empty(path: Option<&PathBuf>) -> Option<PathBuf> {
    path.filter(|p| !p.as_os_str().to_string_lossy().trim().is_empty())
        .cloned()
}

fn ensure_dir(flag: &'static str, path: &std::path::Path) -> Result<(), ConfigError> {
    std::fs::create_dir_all(path).map_err(|source| ConfigError::CreateDir {
        flag,
        path: path.to_owned(),
        source,
    })?;
    if !path.is_dir() {
        return Err(ConfigError::NotADirectory {
            flag,
            path: path.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("conmond").chain(args.iter().copied()))
    }

    #[test]
    fn go_client_argv_parses() {
        let config = parse(&[
            "--runtime",
            "/usr/sbin/runc",
            "--runtime-dir",
            "/run/p",
            "--runtime-root",
            "/run/runc",
            "--log-level",
            "debug",
            "--log-driver",
            "stdout",
            "--enable-tracing",
            "--tracing-endpoint",
            "http://127.0.0.1:4317",
        ])
        .unwrap();
        assert_eq!(config.log_level, LogLevel::Debug);
        assert_eq!(config.log_driver, LogDriver::Stdout);
        assert!(config.enable_tracing);
        assert_eq!(config.tracing_sampling_rate_per_million, 1_000_000);
        assert_eq!(config.runtime_root, Some(PathBuf::from("/run/runc")));
    }

    #[test]
    fn bad_values_and_flags_name_themselves() {
        let err = parse(&["--log-level", "loud"]).unwrap_err().to_string();
        assert!(
            err.contains("'loud'") && err.contains("--log-level"),
            "{err}"
        );
        let err = parse(&["--frobnicate"]).unwrap_err().to_string();
        assert!(err.contains("--frobnicate"), "{err}");
    }

    #[test]
    fn sampling_rate_is_bounded() {
        let err = parse(&["--tracing-sampling-rate-per-million", "2000000"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--tracing-sampling-rate-per-million"), "{err}");
    }

    #[test]
    fn version_flag_takes_an_optional_value() {
        assert_eq!(
            parse(&["--version"]).unwrap().version,
            Some(VersionVerbosity::Default)
        );
        assert_eq!(
            parse(&["-v", "full"]).unwrap().version,
            Some(VersionVerbosity::Full)
        );
        assert_eq!(
            parse(&["--vj"]).unwrap().version_json,
            Some(VersionVerbosity::Default)
        );
    }

    #[test]
    fn old_clients_cgroup_manager_flag_is_accepted() {
        assert!(parse(&["--cgroup-manager", "cgroupfs", "--runtime", "/bin/true"]).is_ok());
    }

    #[test]
    fn validation_names_missing_flags() {
        let err = parse(&["--runtime-dir", "/tmp/x"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.to_string(), "--runtime flag not set");
        let err = parse(&["--runtime", "/bin/true"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.to_string(), "--runtime-dir flag not set");
        let err = parse(&["--runtime", "/nonexistent/runc", "--runtime-dir", "/tmp/x"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--runtime '/nonexistent/runc' does not exist"
        );
    }
}
