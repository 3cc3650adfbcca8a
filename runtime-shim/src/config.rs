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

use toml::{Table, Value};

/// How a runtime handler runs containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeType {
    /// One monitor process per container (C conmon's CLI).
    Oci,
    /// One monitor per pod, driven over Cap'n Proto (conmond, conmon-rs).
    Pod,
}

/// One `[crio.runtime.runtimes.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// `monitor_cgroup`.
    pub monitor_cgroup: String,
}

impl RuntimeHandler {
    fn new() -> Self {
        Self {
            runtime_type: RuntimeType::Oci,
            runtime_path: PathBuf::new(),
            runtime_root: PathBuf::new(),
            monitor_path: PathBuf::new(),
            monitor_env: Vec::new(),
            monitor_cgroup: String::new(),
        }
    }

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

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[crio.runtime] default_runtime`.
    pub default_runtime: String,
    /// `[crio.runtime] cgroup_manager` (`systemd` or `cgroupfs`).
    pub cgroup_manager: String,
    /// `[crio.runtime] log_size_max`; -1 is unlimited.
    pub log_size_max: i64,
    /// `[crio.runtime] container_exits_dir`.
    pub container_exits_dir: PathBuf,
    /// `[crio.runtime] container_attach_socket_dir`.
    pub container_attach_socket_dir: PathBuf,
    /// `[crio.runtime] log_level`.
    pub log_level: String,
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
        runtimes.insert("crun".to_owned(), RuntimeHandler::new());
        Self {
            default_runtime: "crun".to_owned(),
            cgroup_manager: "systemd".to_owned(),
            log_size_max: -1,
            container_exits_dir: PathBuf::from("/var/run/crio/exits"),
            container_attach_socket_dir: PathBuf::from("/var/run/crio"),
            log_level: "info".to_owned(),
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

    /// Applies one file's contents on top of the current state.
    fn apply_toml(
        &mut self,
        text: &str,
        path: &Path,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let table: Table = text
            .parse()
            .map_err(|err: toml::de::Error| ConfigError::Parse {
                path: path.to_owned(),
                message: err.message().to_owned(),
            })?;
        let file = FileContext { path, warnings };
        let mut file = file;
        for (key, value) in &table {
            match (key.as_str(), value) {
                ("crio", Value::Table(crio)) => self.apply_crio(crio, &mut file)?,
                _ => file.unknown(key),
            }
        }
        Ok(())
    }

    fn apply_crio(&mut self, crio: &Table, file: &mut FileContext<'_>) -> Result<(), ConfigError> {
        for (key, value) in crio {
            let dotted = format!("crio.{key}");
            match key.as_str() {
                "runtime" => self.apply_runtime(file.table(&dotted, value)?, file)?,
                "tracing" => self.apply_tracing(file.table(&dotted, value)?, file)?,
                // Sections CRI-O has and this shim does not use.
                "api" | "image" | "network" | "metrics" | "stats" | "nri" => {
                    file.ignored(&dotted);
                }
                _ => file.unknown(&dotted),
            }
        }
        Ok(())
    }

    fn apply_runtime(
        &mut self,
        runtime: &Table,
        file: &mut FileContext<'_>,
    ) -> Result<(), ConfigError> {
        for (key, value) in runtime {
            let dotted = format!("crio.runtime.{key}");
            match key.as_str() {
                "default_runtime" => self.default_runtime = file.string(&dotted, value)?,
                "cgroup_manager" => {
                    let manager = file.string(&dotted, value)?;
                    if manager != "systemd" && manager != "cgroupfs" {
                        return Err(file
                            .invalid(&dotted, format!("'{manager}' is not systemd or cgroupfs")));
                    }
                    self.cgroup_manager = manager;
                }
                "log_size_max" => {
                    let size = file.integer(&dotted, value)?;
                    if size != -1 && size < 8192 {
                        return Err(file.invalid(
                            &dotted,
                            format!("{size} is neither -1 (unlimited) nor at least 8192"),
                        ));
                    }
                    self.log_size_max = size;
                }
                "container_exits_dir" => {
                    self.container_exits_dir = file.string(&dotted, value)?.into()
                }
                "container_attach_socket_dir" => {
                    self.container_attach_socket_dir = file.string(&dotted, value)?.into();
                }
                "log_level" => {
                    let level = file.string(&dotted, value)?;
                    const LEVELS: [&str; 7] =
                        ["trace", "debug", "info", "warn", "error", "fatal", "panic"];
                    if !LEVELS.contains(&level.as_str()) {
                        return Err(file.invalid(
                            &dotted,
                            format!("'{level}' is not one of {}", LEVELS.join(", ")),
                        ));
                    }
                    self.log_level = level;
                }
                "runtimes" => {
                    for (name, handler) in file.table(&dotted, value)? {
                        let dotted = format!("crio.runtime.runtimes.{name}");
                        let handler_table = file.table(&dotted, handler)?;
                        let entry = self
                            .runtimes
                            .entry(name.clone())
                            .or_insert_with(RuntimeHandler::new);
                        apply_handler(entry, handler_table, &dotted, file)?;
                    }
                }
                _ => file.ignored(&dotted),
            }
        }
        Ok(())
    }

    fn apply_tracing(
        &mut self,
        tracing: &Table,
        file: &mut FileContext<'_>,
    ) -> Result<(), ConfigError> {
        for (key, value) in tracing {
            let dotted = format!("crio.tracing.{key}");
            match key.as_str() {
                "enable_tracing" => self.tracing.enable_tracing = file.boolean(&dotted, value)?,
                "tracing_endpoint" => {
                    self.tracing.tracing_endpoint = file.string(&dotted, value)?
                }
                "tracing_sampling_rate_per_million" => {
                    let rate = file.integer(&dotted, value)?;
                    self.tracing.tracing_sampling_rate_per_million = u32::try_from(rate)
                        .ok()
                        .filter(|rate| *rate <= 1_000_000)
                        .ok_or_else(|| {
                            file.invalid(&dotted, format!("{rate} is not within 0..=1000000"))
                        })?;
                }
                _ => file.unknown(&dotted),
            }
        }
        Ok(())
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

fn apply_handler(
    handler: &mut RuntimeHandler,
    table: &Table,
    prefix: &str,
    file: &mut FileContext<'_>,
) -> Result<(), ConfigError> {
    for (key, value) in table {
        let dotted = format!("{prefix}.{key}");
        match key.as_str() {
            "runtime_type" => {
                handler.runtime_type = match file.string(&dotted, value)?.as_str() {
                    "" | "oci" => RuntimeType::Oci,
                    "pod" => RuntimeType::Pod,
                    other => {
                        return Err(file.invalid(
                            &dotted,
                            format!("'{other}' is not supported (use \"oci\" or \"pod\")"),
                        ));
                    }
                };
            }
            "runtime_path" => handler.runtime_path = file.string(&dotted, value)?.into(),
            "runtime_root" => handler.runtime_root = file.string(&dotted, value)?.into(),
            "monitor_path" => handler.monitor_path = file.string(&dotted, value)?.into(),
            "monitor_cgroup" => handler.monitor_cgroup = file.string(&dotted, value)?,
            "monitor_env" => {
                let Value::Array(entries) = value else {
                    return Err(
                        file.invalid(&dotted, "expected an array of \"KEY=VALUE\" strings".into())
                    );
                };
                handler.monitor_env = entries
                    .iter()
                    .map(|entry| match entry.as_str() {
                        Some(text) if text.contains('=') => Ok(text.to_owned()),
                        _ => {
                            Err(file
                                .invalid(&dotted, format!("{entry} is not a \"KEY=VALUE\" string")))
                        }
                    })
                    .collect::<Result<_, _>>()?;
            }
            _ => file.ignored(&dotted),
        }
    }
    Ok(())
}

/// The file being applied, for error messages and warnings.
struct FileContext<'a> {
    path: &'a Path,
    warnings: &'a mut Vec<String>,
}

impl FileContext<'_> {
    fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_owned(),
            path: self.path.to_owned(),
            message,
        }
    }

    fn unknown(&mut self, key: &str) {
        self.warnings
            .push(format!("unknown key {key} in '{}'", self.path.display()));
    }

    fn ignored(&mut self, key: &str) {
        self.warnings.push(format!(
            "key {key} in '{}' is not used by runtime-shim",
            self.path.display()
        ));
    }

    fn table<'v>(&self, key: &str, value: &'v Value) -> Result<&'v Table, ConfigError> {
        value.as_table().ok_or_else(|| {
            self.invalid(key, format!("expected a table, found {}", value.type_str()))
        })
    }

    fn string(&self, key: &str, value: &Value) -> Result<String, ConfigError> {
        value.as_str().map(str::to_owned).ok_or_else(|| {
            self.invalid(
                key,
                format!("expected a string, found {}", value.type_str()),
            )
        })
    }

    fn boolean(&self, key: &str, value: &Value) -> Result<bool, ConfigError> {
        value.as_bool().ok_or_else(|| {
            self.invalid(
                key,
                format!("expected true or false, found {}", value.type_str()),
            )
        })
    }

    fn integer(&self, key: &str, value: &Value) -> Result<i64, ConfigError> {
        value.as_integer().ok_or_else(|| {
            self.invalid(
                key,
                format!("expected an integer, found {}", value.type_str()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        files: &[(&str, &str)],
        overrides: &Overrides,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let drop_ins = dir.path().join("crio.conf.d");
        std::fs::create_dir(&drop_ins).unwrap();
        for (name, text) in files {
            let path = if *name == "crio.conf" {
                dir.path().join(name)
            } else {
                drop_ins.join(name)
            };
            std::fs::write(path, text).unwrap();
        }
        Config::load(&dir.path().join("crio.conf"), &drop_ins, overrides)
    }

    #[test]
    fn defaults_match_cri_o() {
        let (config, warnings) = load(&[], &Overrides::default()).unwrap();
        assert_eq!(config, Config::default());
        assert!(warnings.is_empty());
        assert_eq!(config.tracing.tracing_endpoint, "127.0.0.1:4317");
        assert_eq!(config.tracing.tracing_sampling_rate_per_million, 0);
        let (name, handler) = config.handler("").unwrap();
        assert_eq!((name, handler.runtime_type), ("crun", RuntimeType::Oci));
        assert_eq!(handler.runtime_root(), Path::new("/run/crun"));
        assert_eq!(handler.monitor_binary(), Path::new("conmon"));
    }

    #[test]
    fn drop_ins_apply_in_lexical_order_key_by_key() {
        let main = r#"
            [crio.runtime]
            default_runtime = "runc"
            [crio.runtime.runtimes.runc]
            runtime_path = "/usr/sbin/runc"
            runtime_type = "oci"
        "#;
        let first = r#"
            [crio.runtime.runtimes.runc]
            runtime_type = "pod"
            monitor_path = "/usr/local/bin/conmond"
            monitor_env = ["LOG_DRIVER=systemd"]
            [crio.tracing]
            enable_tracing = true
            tracing_sampling_rate_per_million = 10
        "#;
        let second = r#"
            [crio.runtime.runtimes.runc]
            monitor_path = "/opt/conmond"
            [crio.tracing]
            tracing_sampling_rate_per_million = 1000000
        "#;
        // Named so that lexical order differs from creation order.
        let (config, _) = load(
            &[
                ("crio.conf", main),
                ("20-b.conf", second),
                ("10-a.conf", first),
            ],
            &Overrides::default(),
        )
        .unwrap();
        let handler = &config.runtimes["runc"];
        assert_eq!(handler.runtime_type, RuntimeType::Pod);
        assert_eq!(handler.runtime_path, Path::new("/usr/sbin/runc"));
        assert_eq!(handler.monitor_path, Path::new("/opt/conmond"));
        assert_eq!(handler.monitor_env_value("LOG_DRIVER"), Some("systemd"));
        assert!(config.tracing.enable_tracing);
        assert_eq!(config.tracing.tracing_sampling_rate_per_million, 1_000_000);
        assert_eq!(config.handler("").unwrap().0, "runc");
    }

    #[test]
    fn overrides_win_over_files() {
        let file = "[crio.tracing]\nenable_tracing = false\ntracing_endpoint = \"10.0.0.1:4317\"\n";
        let overrides = Overrides {
            enable_tracing: Some(true),
            tracing_endpoint: Some("127.0.0.1:14317".into()),
            tracing_sampling_rate_per_million: Some(5),
            default_runtime: None,
        };
        let (config, _) = load(&[("crio.conf", file)], &overrides).unwrap();
        assert!(config.tracing.enable_tracing);
        assert_eq!(config.tracing.tracing_endpoint, "127.0.0.1:14317");
        assert_eq!(config.tracing.tracing_sampling_rate_per_million, 5);
    }

    #[test]
    fn invalid_values_name_the_key_and_the_file() {
        let err = load(
            &[(
                "10-x.conf",
                "[crio.runtime.runtimes.vm]\nruntime_type = \"vm\"\n",
            )],
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("crio.runtime.runtimes.vm.runtime_type") && err.contains("10-x.conf"),
            "{err}"
        );
        assert!(err.contains("'vm' is not supported"), "{err}");

        let err = load(
            &[("crio.conf", "[crio.tracing]\nenable_tracing = \"yes\"\n")],
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("crio.tracing.enable_tracing") && err.contains("expected true or false"),
            "{err}"
        );

        let err = load(
            &[(
                "crio.conf",
                "[crio.tracing]\ntracing_sampling_rate_per_million = -1\n",
            )],
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tracing_sampling_rate_per_million"), "{err}");

        let err = load(&[("crio.conf", "[crio.runtime\n")], &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("parse config file"), "{err}");

        let err = load(
            &[("crio.conf", "[crio.runtime]\ndefault_runtime = \"ghost\"\n")],
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("ghost"), "{err}");
    }

    #[test]
    fn unknown_keys_are_warned_about() {
        let file = "[crio.runtime]\nfrobnicate = 1\n[crio.tracing]\nsparkle = true\n[crio.image]\npause_image = \"x\"\n";
        let (_, warnings) = load(&[("crio.conf", file)], &Overrides::default()).unwrap();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("unknown key crio.tracing.sparkle"))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("crio.runtime.frobnicate"))
        );
    }
}
