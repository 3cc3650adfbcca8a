//! Applying one configuration file's TOML to a [`Config`], key by key, with errors that name
//! the key and the file.

use std::path::Path;

use toml::{Table, Value};

use crate::cgroup::MonitorCgroup;

use super::{Config, ConfigError, MonitorLogDriver, Named, RuntimeHandler};

/// What applying a table gives: nothing, or the first invalid value.
type Applied = Result<(), ConfigError>;

impl Config {
    /// Applies one file's contents on top of the current state.
    pub(super) fn apply_toml(
        &mut self,
        text: &str,
        path: &Path,
        warnings: &mut Vec<String>,
    ) -> Applied {
        let table: Table = text
            .parse()
            .map_err(|err: toml::de::Error| ConfigError::Parse {
                path: path.to_owned(),
                message: err.message().to_owned(),
            })?;
        let mut file = FileContext { path, warnings };
        for (key, value) in &table {
            match (key.as_str(), value) {
                ("crio", Value::Table(crio)) => self.apply_crio(crio, &mut file)?,
                _ => file.unknown(key),
            }
        }
        Ok(())
    }

    fn apply_crio(&mut self, crio: &Table, file: &mut FileContext<'_>) -> Applied {
        for (key, dotted, value) in keys("crio", crio) {
            match key {
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

    fn apply_runtime(&mut self, runtime: &Table, file: &mut FileContext<'_>) -> Applied {
        for (key, dotted, value) in keys("crio.runtime", runtime) {
            match key {
                "default_runtime" => self.default_runtime = file.string(&dotted, value)?,
                "cgroup_manager" => self.cgroup_manager = file.named(&dotted, value)?,
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
                "log_level" => self.log_level = file.named(&dotted, value)?,
                "runtimes" => {
                    for (name, dotted, handler) in keys(&dotted, file.table(&dotted, value)?) {
                        let handler_table = file.table(&dotted, handler)?;
                        let entry = self.runtimes.entry(name.to_owned()).or_default();
                        apply_handler(entry, handler_table, &dotted, file)?;
                    }
                }
                _ => file.ignored(&dotted),
            }
        }
        Ok(())
    }

    fn apply_tracing(&mut self, tracing: &Table, file: &mut FileContext<'_>) -> Applied {
        for (key, dotted, value) in keys("crio.tracing", tracing) {
            match key {
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
}

fn apply_handler(
    handler: &mut RuntimeHandler,
    table: &Table,
    prefix: &str,
    file: &mut FileContext<'_>,
) -> Applied {
    for (key, dotted, value) in keys(prefix, table) {
        match key {
            "runtime_type" => handler.runtime_type = file.named(&dotted, value)?,
            "runtime_path" => handler.runtime_path = file.string(&dotted, value)?.into(),
            "runtime_root" => handler.runtime_root = file.string(&dotted, value)?.into(),
            "monitor_path" => handler.monitor_path = file.string(&dotted, value)?.into(),
            "monitor_cgroup" => {
                handler.monitor_cgroup = MonitorCgroup::parse(&file.string(&dotted, value)?)
                    .map_err(|message| file.invalid(&dotted, message))?;
            }
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
                handler.monitor_log_driver = match handler.monitor_env_value("LOG_DRIVER") {
                    None => MonitorLogDriver::None,
                    Some(name) => MonitorLogDriver::from_name(name).map_err(|message| {
                        file.invalid(&dotted, format!("LOG_DRIVER: {message}"))
                    })?,
                };
            }
            _ => file.ignored(&dotted),
        }
    }
    Ok(())
}

/// Each key of `table` with its dotted name under `prefix`, and its value.
fn keys<'t>(prefix: &str, table: &'t Table) -> impl Iterator<Item = (&'t str, String, &'t Value)> {
    table
        .iter()
        .map(move |(key, value)| (key.as_str(), format!("{prefix}.{key}"), value))
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

    fn named<T: Named>(&self, key: &str, value: &Value) -> Result<T, ConfigError> {
        T::from_name(&self.string(key, value)?).map_err(|message| self.invalid(key, message))
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
