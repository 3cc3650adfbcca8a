//! CRI-O's configuration format: `crio.conf` plus `crio.conf.d/*.conf` drop-ins applied in
//! lexical order (later files override, key by key), then command-line/environment overrides.
//!
//! Understood: `[crio.runtime] default_runtime`, `cgroup_manager`, `log_size_max`,
//! `container_exits_dir`, `container_attach_socket_dir`, `log_level`;
//! `[crio.runtime.runtimes.NAME] runtime_type, runtime_path, runtime_root, monitor_path,
//! monitor_env, monitor_cgroup`; `[crio.tracing] enable_tracing, tracing_endpoint,
//! tracing_sampling_rate_per_million`. Other CRI-O keys are accepted with a warning; invalid
//! values are errors naming the key and the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use conmon_proto::types::CgroupManager;
use conmon_telemetry::LogLevel;

use crate::cgroup::{self, MonitorCgroup};

/// How a runtime handler runs containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeType {
    /// One monitor process per container (C conmon's CLI); CRI-O's default.
    #[default]
    Oci,
    /// One monitor per pod, driven over Cap'n Proto (conmond, conmon-rs).
    Pod,
}

/// A configuration value spelled as one of a fixed set of names.
trait Named: Copy + 'static {
    /// Every accepted spelling and its value.
    const NAMES: &'static [(&'static str, Self)];

    /// The value spelled `name`, or an error listing the accepted spellings.
    fn from_name(name: &str) -> Result<Self, String> {
        let found = Self::NAMES.iter().find(|(known, _)| *known == name);
        found.map(|(_, value)| *value).ok_or_else(|| {
            let names: Vec<&str> = Self::NAMES
                .iter()
                .map(|(known, _)| *known)
                .filter(|known| !known.is_empty())
                .collect();
            format!("'{name}' is not one of {}", names.join(", "))
        })
    }
}

impl Named for RuntimeType {
    const NAMES: &'static [(&'static str, Self)] =
        &[("oci", Self::Oci), ("pod", Self::Pod), ("", Self::Oci)];
}

impl Named for CgroupManager {
    const NAMES: &'static [(&'static str, Self)] =
        &[("systemd", Self::Systemd), ("cgroupfs", Self::Cgroupfs)];
}

/// One `[crio.runtime.runtimes.NAME]` table; the default is an empty table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeHandler {
    /// `runtime_type`.
    pub runtime_type: RuntimeType,
    /// `runtime_path`; empty means the handler's name looked up in `$PATH`.
    pub runtime_path: PathBuf,
    /// `runtime_root`; the runtime's `--root`.
    pub runtime_root: PathBuf,
    /// `monitor_path`; empty means `conmond` (pod) or `conmon` (oci) in `$PATH`.
    pub monitor_path: PathBuf,
    /// `monitor_env`: `KEY=VALUE` entries (for pod runtimes, `LOG_DRIVER=` selects the
    /// monitor's log driver).
    pub monitor_env: Vec<String>,
    /// `monitor_cgroup`: where the pod monitor runs (see [`crate::cgroup`]).
    pub monitor_cgroup: MonitorCgroup,
    /// The monitor's own log driver, from `LOG_DRIVER=` in `monitor_env` (default `none`).
    pub monitor_log_driver: MonitorLogDriver,
}

/// Where a pod monitor's own log lines go (its `--log-driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MonitorLogDriver {
    /// Nowhere (CRI-O's default for conmon-rs).
    #[default]
    None,
    /// The monitor's standard output.
    Stdout,
    /// The systemd journal.
    Systemd,
}

impl Named for MonitorLogDriver {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("none", Self::None),
        ("stdout", Self::Stdout),
        ("systemd", Self::Systemd),
    ];
}

impl MonitorLogDriver {
    /// The value of the monitor's `--log-driver`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Stdout => "stdout",
            Self::Systemd => "systemd",
        }
    }
}

/// `[crio.runtime] log_level`: CRI-O's levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrioLogLevel {
    /// `trace`.
    Trace,
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
    /// `fatal`.
    Fatal,
    /// `panic`.
    Panic,
}

impl Named for CrioLogLevel {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("trace", Self::Trace),
        ("debug", Self::Debug),
        ("info", Self::Info),
        ("warn", Self::Warn),
        ("error", Self::Error),
        ("fatal", Self::Fatal),
        ("panic", Self::Panic),
    ];
}

impl CrioLogLevel {
    /// The level a monitor logs at: CRI-O's `fatal` and `panic` have no counterpart, and a
    /// monitor never aborts on a log line, so they silence it.
    pub fn monitor_level(self) -> LogLevel {
        match self {
            Self::Trace => LogLevel::Trace,
            Self::Debug => LogLevel::Debug,
            Self::Info => LogLevel::Info,
            Self::Warn => LogLevel::Warn,
            Self::Error => LogLevel::Error,
            Self::Fatal | Self::Panic => LogLevel::Off,
        }
    }
}

impl RuntimeHandler {
    /// The runtime binary: `runtime_path`, or `name` (resolved through `$PATH` when run).
    pub fn runtime_binary(&self, name: &str) -> PathBuf {
        if self.runtime_path.as_os_str().is_empty() {
            PathBuf::from(name)
        } else {
            self.runtime_path.clone()
        }
    }

    /// The runtime's state directory: `runtime_root`, or CRI-O's default `/run/crun`.
    pub fn runtime_root(&self) -> PathBuf {
        if self.runtime_root.as_os_str().is_empty() {
            PathBuf::from(DEFAULT_RUNTIME_ROOT)
        } else {
            self.runtime_root.clone()
        }
    }

    /// The monitor binary: `monitor_path`, or the default for the runtime type.
    pub fn monitor_binary(&self) -> PathBuf {
        if !self.monitor_path.as_os_str().is_empty() {
            return self.monitor_path.clone();
        }
        PathBuf::from(match self.runtime_type {
            RuntimeType::Pod => "conmond",
            RuntimeType::Oci => "conmon",
        })
    }

    /// The value of `KEY=` in `monitor_env`, if present.
    pub fn monitor_env_value(&self, key: &str) -> Option<&str> {
        self.monitor_env
            .iter()
            .find_map(|entry| entry.strip_prefix(key)?.strip_prefix('='))
    }
}

/// `[crio.tracing]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingConfig {
    /// `enable_tracing`.
    pub enable_tracing: bool,
    /// `tracing_endpoint`: `host:port` of an OTLP gRPC collector.
    pub tracing_endpoint: String,
    /// `tracing_sampling_rate_per_million`: roots sampled at rate/1 000 000; children follow
    /// their parent.
    pub tracing_sampling_rate_per_million: u32,
}

impl TracingConfig {
    /// The endpoint as an OTLP URL: CRI-O's endpoints are `host:port`.
    pub fn endpoint_url(&self) -> String {
        if self.tracing_endpoint.contains("://") {
            self.tracing_endpoint.clone()
        } else {
            format!("http://{}", self.tracing_endpoint)
        }
    }
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[crio.runtime] default_runtime`.
    pub default_runtime: String,
    /// `[crio.runtime] cgroup_manager`.
    pub cgroup_manager: CgroupManager,
    /// `[crio.runtime] log_size_max`; -1 is unlimited.
    pub log_size_max: i64,
    /// `[crio.runtime] container_exits_dir`.
    pub container_exits_dir: PathBuf,
    /// `[crio.runtime] container_attach_socket_dir`.
    pub container_attach_socket_dir: PathBuf,
    /// `[crio.runtime] log_level`.
    pub log_level: CrioLogLevel,
    /// `[crio.runtime.runtimes.*]`.
    pub runtimes: BTreeMap<String, RuntimeHandler>,
    /// `[crio.tracing]`.
    pub tracing: TracingConfig,
}

/// CRI-O's default runtime state directory (used for every handler without `runtime_root`).
pub const DEFAULT_RUNTIME_ROOT: &str = "/run/crun";

impl Default for Config {
    fn default() -> Self {
        let mut runtimes = BTreeMap::new();
        runtimes.insert("crun".to_owned(), RuntimeHandler::default());
        Self {
            default_runtime: "crun".to_owned(),
            cgroup_manager: CgroupManager::Systemd,
            log_size_max: -1,
            container_exits_dir: PathBuf::from("/var/run/crio/exits"),
            container_attach_socket_dir: PathBuf::from("/var/run/crio"),
            log_level: CrioLogLevel::Info,
            runtimes,
            tracing: TracingConfig {
                enable_tracing: false,
                tracing_endpoint: "127.0.0.1:4317".to_owned(),
                tracing_sampling_rate_per_million: 0,
            },
        }
    }
}

/// Why a configuration was rejected; each names what was wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("read config file '{}'", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid TOML.
    #[error("parse config file '{}': {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A key has a value of the wrong type or out of range.
    #[error("invalid value for {key} in '{}': {message}", path.display())]
    Invalid {
        /// The dotted key, e.g. `crio.runtime.runtimes.runc.runtime_type`.
        key: String,
        /// The file (or `command line` for overrides).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A handler's `monitor_cgroup` that the cgroup manager cannot place a monitor in.
    #[error(
        "crio.runtime.runtimes.{handler}.monitor_cgroup = '{value}' does not work with \
         cgroup_manager = \"{manager}\": cgroupfs takes \"\", \"pod\" or an absolute cgroup path, \
         systemd \"\", \"pod\" or a slice (NAME.slice)"
    )]
    MonitorCgroup {
        /// The handler.
        handler: String,
        /// Its `monitor_cgroup`.
        value: MonitorCgroup,
        /// `cgroup_manager`.
        manager: &'static str,
    },
    /// `default_runtime` names no handler.
    #[error("default_runtime '{0}' has no [crio.runtime.runtimes.{0}] table")]
    MissingDefaultRuntime(String),
}

/// Values from CRI-O's flags or `CONTAINER_*` environment variables; set ones win over files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--default-runtime` / `CONTAINER_DEFAULT_RUNTIME`.
    pub default_runtime: Option<String>,
    /// `--enable-tracing` / `CONTAINER_ENABLE_TRACING`.
    pub enable_tracing: Option<bool>,
    /// `--tracing-endpoint` / `CONTAINER_TRACING_ENDPOINT`.
    pub tracing_endpoint: Option<String>,
    /// `--tracing-sampling-rate-per-million` / `CONTAINER_TRACING_SAMPLING_RATE_PER_MILLION`.
    pub tracing_sampling_rate_per_million: Option<u32>,
}

impl Config {
    /// Loads `main` (if it exists) and then every `*.conf` in `drop_in_dir` in lexical order,
    /// applies `overrides`, and validates. Returns the configuration and warnings (unknown or
    /// ignored keys).
    ///
    /// # Errors
    /// Unreadable or malformed files and invalid values, naming the key and file.
    pub fn load(
        main: &Path,
        drop_in_dir: &Path,
        overrides: &Overrides,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let mut files = Vec::new();
        if main.exists() {
            files.push(main.to_owned());
        }
        if let Ok(entries) = std::fs::read_dir(drop_in_dir) {
            let mut drop_ins: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "conf"))
                .collect();
            drop_ins.sort();
            files.extend(drop_ins);
        }
        let mut config = Self::default();
        let mut warnings = Vec::new();
        for path in &files {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            config.apply_toml(&text, path, &mut warnings)?;
        }
        config.apply_overrides(overrides);
        config.validate()?;
        Ok((config, warnings))
    }

    fn apply_overrides(&mut self, overrides: &Overrides) {
        if let Some(runtime) = &overrides.default_runtime {
            self.default_runtime.clone_from(runtime);
        }
        if let Some(enable) = overrides.enable_tracing {
            self.tracing.enable_tracing = enable;
        }
        if let Some(endpoint) = &overrides.tracing_endpoint {
            self.tracing.tracing_endpoint.clone_from(endpoint);
        }
        if let Some(rate) = overrides.tracing_sampling_rate_per_million {
            self.tracing.tracing_sampling_rate_per_million = rate;
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.runtimes.contains_key(&self.default_runtime) {
            return Err(ConfigError::MissingDefaultRuntime(
                self.default_runtime.clone(),
            ));
        }
        // Checked once every file is applied: the manager may come from a later one.
        for (name, handler) in &self.runtimes {
            if !handler.monitor_cgroup.works_with(self.cgroup_manager) {
                return Err(ConfigError::MonitorCgroup {
                    handler: name.clone(),
                    value: handler.monitor_cgroup.clone(),
                    manager: cgroup::manager_name(self.cgroup_manager),
                });
            }
        }
        Ok(())
    }

    /// The handler for `name`, or the default handler for an empty name.
    pub fn handler(&self, name: &str) -> Option<(&str, &RuntimeHandler)> {
        let name = if name.is_empty() {
            self.default_runtime.as_str()
        } else {
            name
        };
        self.runtimes
            .get_key_value(name)
            .map(|(name, handler)| (name.as_str(), handler))
    }
}

mod parse;

#[cfg(test)]
mod tests;
